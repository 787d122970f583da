//! The `host-device` plugin: moves a device of the namespace the plugin runs in (the host)
//! into the container under CNI_IFNAME, its original name kept in the link's alias, addresses
//! from the IPAM plugin if one is configured; DEL moves it back under its original name, as
//! the reference plugin does.
//!
//! The device is found by `device` (name), `hwaddr` (MAC) or `kernelpath` (the first network
//! device under `<kernelpath>/net`). `pciBusID` and `runtimeConfig.deviceID` (PCI devices,
//! DPDK drivers) are refused with code 2 naming them: podnet has no PCI device to test them on.

use super::bridge::{add_address, container_route, open_container};
use super::check;
use super::error::{CHECK_FAILED, CniError, CniErrorExt, KERNEL, UNSUPPORTED_FIELD};
use super::ptp::settle_addresses;
use podnet_cni::{Args, CniResult, Interface, IpCfg, Plugin, PluginConf, invoke};
use podnet_links::{Handle, Link, LinkSysctl, MacAddr};
use podnet_netns::{NetNs, NetNsError};

/// The `host-device` plugin.
pub struct HostDevice;

/// How the device is named in the config.
enum Selector {
    Name(String),
    Mac(MacAddr),
    KernelPath(String),
}

struct Conf {
    base: PluginConf,
    device: Selector,
}

fn parse(stdin: &[u8], supported: &[&str]) -> Result<Conf, CniError> {
    let base = PluginConf::parse(stdin, supported)?;
    let nonempty = |k: &str| -> Result<Option<String>, CniError> {
        Ok(base.str(k)?.filter(|v| !v.is_empty()).map(str::to_owned))
    };
    let device_id = base
        .runtime_config
        .get("deviceID")
        .and_then(serde_json::Value::as_str)
        .filter(|v| !v.is_empty());
    if let Some(id) = device_id {
        return Err(CniError::new(
            UNSUPPORTED_FIELD,
            format!(
                "runtimeConfig.deviceID {id:?} (a PCI device) is not supported by podnet's \
                 host-device: name the device with \"device\", \"hwaddr\" or \"kernelpath\""
            ),
        ));
    }
    let (device, hwaddr, kernelpath, pci) = (
        nonempty("device")?,
        nonempty("hwaddr")?,
        nonempty("kernelpath")?,
        nonempty("pciBusID")?,
    );
    if let Some(p) = pci {
        return Err(CniError::new(
            UNSUPPORTED_FIELD,
            format!(
                "pciBusID {p:?} is not supported by podnet's host-device (PCI devices and DPDK \
                 drivers): name the device with \"device\", \"hwaddr\" or \"kernelpath\""
            ),
        ));
    }
    let selector = if let Some(d) = device {
        Selector::Name(d)
    } else if let Some(m) = hwaddr {
        Selector::Mac(m.parse().map_err(|_| {
            CniError::invalid(
                "hwaddr",
                format!("failed to find host device: failed to parse MAC address {m:?}"),
            )
        })?)
    } else if let Some(k) = kernelpath {
        Selector::KernelPath(k)
    } else {
        return Err(CniError::invalid(
            "device",
            r#"specify either "device", "hwaddr", "kernelpath" or "pciBusID""#,
        ));
    };
    Ok(Conf {
        base,
        device: selector,
    })
}

fn host() -> Result<Handle, CniError> {
    Handle::new().map_err(|e| CniError::kernel("netlink socket", e))
}

fn not_found(what: String) -> CniError {
    CniError::invalid("device", format!("failed to find host device: {what}"))
}

/// The host's device the config names.
fn find_device(host: &Handle, sel: &Selector) -> Result<Link, CniError> {
    match sel {
        Selector::Name(n) => host.link().get(n.as_str()).map_err(|e| {
            if e.is_not_found() {
                not_found(format!("no interface {n:?}"))
            } else {
                CniError::kernel(format!("failed to find host device {n:?}"), e)
            }
        }),
        Selector::Mac(m) => host
            .link()
            .list()
            .map_err(|e| CniError::kernel("failed to list node links", e))?
            .into_iter()
            .find(|l| l.mac == Some(*m))
            .ok_or_else(|| not_found(format!("no interface has MAC {m}"))),
        Selector::KernelPath(k) => {
            if !k.starts_with("/sys/devices/") {
                return Err(not_found(format!(
                    "kernel device path {k:?} must be absolute and begin with /sys/devices/"
                )));
            }
            let dir = std::path::Path::new(k).join("net");
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .map_err(|_| not_found(format!("failed to find network devices at {:?}", dir)))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let links = host
                .link()
                .list()
                .map_err(|e| CniError::kernel("failed to list node links", e))?;
            names
                .iter()
                .find_map(|n| links.iter().find(|l| &l.name == n).cloned())
                .ok_or_else(|| not_found(format!("no interface of this namespace under {dir:?}")))
        }
    }
}

/// Moves `dev` into the container: there down, its name kept as its alias, renamed to
/// `ifname`, up. Returns the container's view of it.
fn move_in(host: &Handle, dev: &Link, netns: &NetNs, ifname: &str) -> Result<Link, CniError> {
    host.link()
        .set(dev.index)
        .netns(netns)
        .apply()
        .map_err(|e| CniError::kernel(format!("failed to move link {:?}", dev.name), e))?;
    let container = Handle::in_ns(netns)
        .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
    let steps = || -> Result<Link, CniError> {
        let l = container
            .link()
            .get(dev.name.as_str())
            .map_err(|e| CniError::kernel(format!("failed to find {:?}", dev.name), e))?;
        container
            .link()
            .set(l.index)
            .down()
            .apply()
            .map_err(|e| CniError::kernel(format!("failed to set {:?} down", dev.name), e))?;
        container
            .link()
            .set(l.index)
            .alias(dev.name.clone())
            .name(ifname)
            .apply()
            .map_err(|e| {
                CniError::kernel(
                    format!("failed to rename device {:?} to {ifname:?}", dev.name),
                    e,
                )
            })?;
        container
            .link()
            .set(l.index)
            .up()
            .apply()
            .map_err(|e| CniError::kernel(format!("failed to set {ifname:?} up"), e))?;
        container
            .link()
            .get(l.index)
            .map_err(|e| CniError::kernel(format!("failed to find {ifname:?}"), e))
    };
    steps().inspect_err(|_| {
        // Back to the host under its own name, as it was.
        let _ = move_out(netns, dev.name.as_str());
    })
}

/// Moves the container's `ifname` back to the namespace this runs in, renamed to the name in
/// its alias. `Ok(false)` when the container has no such interface.
fn move_out(netns: &NetNs, ifname: &str) -> Result<bool, CniError> {
    let here =
        NetNs::current().map_err(|e| CniError::new(KERNEL, format!("this namespace: {e}")))?;
    let container = Handle::in_ns(netns)
        .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
    let dev = match container.link().get(ifname) {
        Ok(l) => l,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => return Err(CniError::kernel(format!("failed to find {ifname:?}"), e)),
    };
    let original = dev
        .alias
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| ifname.to_owned());
    container
        .link()
        .set(dev.index)
        .down()
        .apply()
        .map_err(|e| CniError::kernel(format!("failed to set {ifname:?} down"), e))?;
    let moved = container
        .link()
        .set(dev.index)
        .name(original.clone())
        .apply()
        .and_then(|()| container.link().set(dev.index).netns(&here).apply());
    if let Err(e) = moved {
        // As it was, so that DEL can be retried.
        let _ = container.link().set(dev.index).name(ifname).apply();
        if dev.is_up() {
            let _ = container.link().set(dev.index).up().apply();
        }
        return Err(CniError::kernel(
            format!("failed to move {ifname:?} back to the host as {original:?}"),
            e,
        ));
    }
    Ok(true)
}

/// The IPAM result on the container's interface, as the reference's `ipam.ConfigureIface`:
/// IPv6 on (lo and the interface) when there is an IPv6 address, the addresses, up, duplicate
/// address detection settled, the routes.
pub(crate) fn configure_iface(
    container: &Handle,
    ifname: &str,
    result: &CniResult,
) -> Result<(), CniError> {
    let link = container
        .link()
        .get(ifname)
        .map_err(|e| CniError::kernel(format!("failed to lookup {ifname:?}"), e))?;
    let v6 = result.ips.iter().any(|i| i.address.addr().is_ipv6());
    if v6 {
        for dev in ["lo", ifname] {
            let _ = container.sysctl().set(dev, LinkSysctl::DisableIpv6, 0);
        }
    }
    for ip in &result.ips {
        add_address(container, link.index, ip.address).map_err(|e| {
            CniError::kernel(
                format!("failed to add IP addr {} to {ifname:?}", ip.address),
                e,
            )
        })?;
    }
    container
        .link()
        .set(link.index)
        .up()
        .apply()
        .map_err(|e| CniError::kernel(format!("failed to set {ifname:?} UP"), e))?;
    if v6 {
        settle_addresses(container, link.index, ifname)?;
    }
    for r in &result.routes {
        let route = container_route(r, link.index, result);
        match container.route().add(&route) {
            Ok(()) => {}
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(CniError::kernel(format!("failed to add route {route}"), e)),
        }
    }
    Ok(())
}

impl HostDevice {
    fn attach(
        &self,
        args: &Args,
        stdin: &[u8],
        conf: &Conf,
        netns: &NetNs,
        ipam_ran: &mut bool,
    ) -> Result<CniResult, CniError> {
        let mut result = CniResult::default();
        let container = Handle::in_ns(netns)
            .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
        let link = container
            .link()
            .get(args.ifname.as_str())
            .map_err(|e| CniError::kernel(format!("failed to find {:?}", args.ifname), e))?;
        result.interfaces = vec![Interface {
            name: link.name.clone(),
            mac: link.mac.map(|m| m.to_string()).unwrap_or_default(),
            mtu: Some(link.mtu),
            sandbox: Some(args.netns.clone()),
        }];
        let Some(ipam) = &conf.base.ipam_type else {
            return Ok(result);
        };
        let r = invoke::exec_add(ipam, args, stdin)?;
        *ipam_ran = true;
        if r.ips.is_empty() {
            return Err(CniError::new(
                KERNEL,
                "IPAM plugin returned missing IP config",
            ));
        }
        result.ips = r
            .ips
            .into_iter()
            .map(|ip| IpCfg {
                interface: Some(0),
                ..ip
            })
            .collect();
        result.routes = r.routes;
        configure_iface(&container, &args.ifname, &result)?;
        result.dns = conf.base.dns.clone();
        Ok(result)
    }
}

impl Plugin for HostDevice {
    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
        let conf = parse(stdin, self.supported_versions())?;
        let netns = open_container(&args.netns)?;
        let host = host()?;
        let dev = find_device(&host, &conf.device)?;
        move_in(&host, &dev, &netns, &args.ifname)?;
        let mut ipam_ran = false;
        let out = self.attach(args, stdin, &conf, &netns, &mut ipam_ran);
        if out.is_err() {
            // Undo: the addresses go with the move, the lease with IPAM DEL.
            if let Err(e) = move_out(&netns, &args.ifname) {
                eprintln!("host-device: rollback: {e}");
            }
            if let (true, Some(ipam)) = (ipam_ran, &conf.base.ipam_type) {
                let _ = invoke::exec_del(ipam, args, stdin);
            }
        }
        out
    }

    fn del(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let conf = parse(stdin, self.supported_versions())?;
        if args.netns.is_empty() {
            return Ok(());
        }
        if let Some(ipam) = &conf.base.ipam_type {
            invoke::exec_del(ipam, args, stdin)?;
        }
        match NetNs::open_path(&args.netns) {
            // The addresses go with the move (the kernel drops them).
            Ok(netns) => move_out(&netns, &args.ifname).map(drop),
            Err(NetNsError::NotFound { .. }) => Ok(()),
            Err(e) => Err(CniError::new(
                KERNEL,
                format!("failed to open netns {:?}: {e}", args.netns),
            )),
        }
    }

    fn check(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let conf = parse(stdin, self.supported_versions())?;
        let netns = open_container(&args.netns)?;
        if let Some(ipam) = &conf.base.ipam_type {
            invoke::exec_check(ipam, args, stdin)?;
        }
        let prev = conf
            .base
            .prev_result()?
            .ok_or_else(|| CniError::invalid("prevResult", "Required prevResult missing"))?;
        check::sandbox_matches(&prev, &args.ifname, &args.netns)?;
        let container = Handle::in_ns(&netns)
            .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
        let link = container.link().get(args.ifname.as_str()).map_err(|_| {
            CniError::new(
                CHECK_FAILED,
                format!(
                    "Container Interface name in prevResult: {} not found",
                    args.ifname
                ),
            )
        })?;
        let want = prev
            .interfaces
            .iter()
            .find(|i| i.name == args.ifname)
            .map(|i| i.mac.clone())
            .unwrap_or_default();
        let have = link.mac.map(|m| m.to_string()).unwrap_or_default();
        if !want.is_empty() && want != have {
            return Err(CniError::new(
                CHECK_FAILED,
                format!(
                    "Interface {} Mac {want} doesn't match container Mac: {have}",
                    args.ifname
                ),
            ));
        }
        check::interface_ips_and_routes(&container, &args.ifname, &prev)
    }
}

//! The `ipvlan` plugin: an ipvlan device on `master` moved into the container under
//! CNI_IFNAME, addresses from the IPAM plugin run from `CNI_PATH` (or, chained without an IPAM
//! type, from `prevResult`), as the reference plugin does.
//!
//! `master` is looked up in the namespace the plugin runs in, or in the container's with
//! `linkInContainer`; without `master` it is the only interface of `prevResult` (chained), or
//! the interface of the default route. `mode` is `l2` (default), `l3` or `l3s`; `mtu` as the
//! kernel allows it (at most the master's).

use super::bridge::{del_container_link, del_interface, open_container, random_veth_name};
use super::check;
use super::error::{CHECK_FAILED, CniError, CniErrorExt, KERNEL};
use super::host_device::configure_iface;
use podnet_cni::{Args, CniResult, Interface, IpCfg, Plugin, PluginConf, invoke};
use podnet_links::{Handle, Ipvlan as IpvlanSpec, IpvlanMode, LinkKind, LinkSysctl, StackedInfo};
use podnet_netns::NetNs;

/// The `ipvlan` plugin.
pub struct Ipvlan;

struct Conf {
    base: PluginConf,
    master: String,
    mode: IpvlanMode,
    mtu: Option<u32>,
    in_container: bool,
}

fn mode_of(s: &str) -> Result<IpvlanMode, CniError> {
    match s {
        "" | "l2" => Ok(IpvlanMode::L2),
        "l3" => Ok(IpvlanMode::L3),
        "l3s" => Ok(IpvlanMode::L3s),
        other => Err(CniError::invalid(
            "mode",
            format!("unknown ipvlan mode: {other:?}"),
        )),
    }
}

/// The name of the interface of the first default route `h` has.
fn default_route_interface(h: &Handle) -> Result<String, CniError> {
    let routes = h
        .route()
        .list()
        .map_err(|e| CniError::kernel("listing routes", e))?;
    let names: Vec<(u32, String)> = h
        .link()
        .list()
        .map_err(|e| CniError::kernel("listing links", e))?
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    routes
        .iter()
        .filter(|r| r.dst.prefix_len() == 0)
        .find_map(|r| {
            let oif = r.oif.or_else(|| r.nexthops.first().and_then(|n| n.oif))?;
            names
                .iter()
                .find(|(i, _)| *i == oif)
                .map(|(_, n)| n.clone())
        })
        .ok_or_else(|| {
            CniError::invalid(
                "master",
                "missing, and no default route interface found to use instead",
            )
        })
}

/// The config (the master looked up in the namespace it is in: the container's with
/// `linkInContainer`); `check` reads it as the reference's CHECK does (no master fallback).
fn parse(stdin: &[u8], supported: &[&str], args: &Args, check: bool) -> Result<Conf, CniError> {
    let base = PluginConf::parse(stdin, supported)?;
    let in_container = base.bool("linkInContainer")?;
    let mode = mode_of(base.str("mode")?.unwrap_or(""))?;
    let mtu = match base.raw.get("mtu").and_then(serde_json::Value::as_i64) {
        None | Some(0) => None,
        Some(m) => Some(
            u32::try_from(m).map_err(|_| CniError::invalid("mtu", format!("invalid MTU {m}")))?,
        ),
    };
    let mut master = base.str("master")?.unwrap_or("").to_owned();
    if master.is_empty() && !check {
        if let Some(prev) = base.prev_result()? {
            match prev.interfaces.as_slice() {
                [one] if !one.name.is_empty() => master = one.name.clone(),
                _ => {
                    return Err(CniError::invalid(
                        "master",
                        "chained master failure. PrevResult lacks a single named interface",
                    ));
                }
            }
        } else if in_container {
            let netns = open_container(&args.netns)?;
            let h = Handle::in_ns(&netns)
                .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
            master = default_route_interface(&h)?;
        } else {
            master = default_route_interface(&host()?)?;
        }
    }
    Ok(Conf {
        base,
        master,
        mode,
        mtu,
        in_container,
    })
}

fn host() -> Result<Handle, CniError> {
    Handle::new().map_err(|e| CniError::kernel("netlink socket", e))
}

fn lookup_master(h: &Handle, master: &str) -> Result<u32, CniError> {
    h.link().get(master).map(|l| l.index).map_err(|e| {
        if e.is_not_found() {
            CniError::invalid(
                "master",
                format!("failed to lookup master {master:?}: no such interface"),
            )
        } else {
            CniError::kernel(format!("failed to lookup master {master:?}"), e)
        }
    })
}

impl Ipvlan {
    /// Makes the device (under a temporary name, in the master's namespace), moves it into
    /// the container when it is not there yet and renames it to CNI_IFNAME. Returns the
    /// result's interface.
    fn create(
        &self,
        args: &Args,
        conf: &Conf,
        netns: &NetNs,
        container: &Handle,
    ) -> Result<Interface, CniError> {
        let host_handle;
        let where_master = if conf.in_container {
            container
        } else {
            host_handle = host()?;
            &host_handle
        };
        let parent = lookup_master(where_master, &conf.master)?;
        let tmp = random_veth_name();
        let mut spec = IpvlanSpec::new(&tmp, parent).mode(conf.mode);
        if let Some(m) = conf.mtu {
            spec = spec.mtu(m);
        }
        where_master
            .link()
            .add(&spec)
            .map_err(|e| CniError::kernel("failed to create ipvlan", e))?;
        if !conf.in_container {
            if let Err(e) = where_master.link().set(tmp.as_str()).netns(netns).apply() {
                let _ = where_master.link().del(tmp.as_str());
                return Err(CniError::kernel("moving the ipvlan into the container", e));
            }
        }
        container
            .link()
            .set(tmp.as_str())
            .name(args.ifname.clone())
            .apply()
            .map_err(|e| {
                let _ = container.link().del(tmp.as_str());
                CniError::kernel(format!("failed to rename ipvlan to {:?}", args.ifname), e)
            })?;
        let link = container.link().get(args.ifname.as_str()).map_err(|e| {
            CniError::kernel(format!("failed to refetch ipvlan {:?}", args.ifname), e)
        })?;
        Ok(Interface {
            name: args.ifname.clone(),
            mac: link.mac.map(|m| m.to_string()).unwrap_or_default(),
            mtu: Some(link.mtu),
            sandbox: Some(args.netns.clone()),
        })
    }

    fn attach(
        &self,
        args: &Args,
        stdin: &[u8],
        conf: &Conf,
        netns: &NetNs,
        ipam_ran: &mut bool,
    ) -> Result<CniResult, CniError> {
        let container = Handle::in_ns(netns)
            .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
        let intf = self.create(args, conf, netns, &container)?;
        // Chained without an IPAM type: the addresses of prevResult.
        let from_prev = match (&conf.base.ipam_type, conf.base.prev_result()?) {
            (None, Some(prev)) if !prev.ips.is_empty() => Some(prev),
            _ => None,
        };
        let mut result = match from_prev {
            Some(prev) => prev,
            None => {
                let ipam = conf.base.ipam_type.as_deref().ok_or_else(|| {
                    CniError::invalid(
                        "ipam.type",
                        "missing: ipvlan needs an IPAM plugin, or a prevResult with addresses",
                    )
                })?;
                let r = invoke::exec_add(ipam, args, stdin)?;
                *ipam_ran = true;
                if r.ips.is_empty() {
                    return Err(CniError::new(
                        KERNEL,
                        "IPAM plugin returned missing IP config",
                    ));
                }
                r
            }
        };
        result.ips = std::mem::take(&mut result.ips)
            .into_iter()
            .map(|ip| IpCfg {
                interface: Some(0),
                ..ip
            })
            .collect();
        result.interfaces = vec![intf];
        let _ = container
            .sysctl()
            .set(&args.ifname, LinkSysctl::ArpNotify, 1);
        configure_iface(&container, &args.ifname, &result)?;
        result.dns = conf.base.dns.clone();
        Ok(result)
    }
}

impl Plugin for Ipvlan {
    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
        let conf = parse(stdin, self.supported_versions(), args, false)?;
        let netns = open_container(&args.netns)?;
        let mut ipam_ran = false;
        let out = self.attach(args, stdin, &conf, &netns, &mut ipam_ran);
        if out.is_err() {
            let _ = del_interface(&netns, &args.ifname);
            if let (true, Some(ipam)) = (ipam_ran, &conf.base.ipam_type) {
                let _ = invoke::exec_del(ipam, args, stdin);
            }
        }
        out
    }

    fn del(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let base = PluginConf::parse(stdin, self.supported_versions())?;
        del_container_link(base.ipam_type.as_deref(), args, stdin)
    }

    fn check(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let conf = parse(stdin, self.supported_versions(), args, true)?;
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
        if conf.in_container {
            lookup_master(&container, &conf.master)?;
        } else {
            lookup_master(&host()?, &conf.master)?;
        }
        let link = container.link().get(args.ifname.as_str()).map_err(|_| {
            CniError::new(
                CHECK_FAILED,
                format!(
                    "Container Interface name in prevResult: {} not found",
                    args.ifname
                ),
            )
        })?;
        if link.kind != Some(LinkKind::Ipvlan) {
            return Err(CniError::new(
                CHECK_FAILED,
                format!(
                    "Error: Container interface {} not of type ipvlan",
                    args.ifname
                ),
            ));
        }
        if let Some(StackedInfo::Ipvlan(have)) = link.stacked {
            if have != conf.mode {
                return Err(CniError::new(
                    CHECK_FAILED,
                    format!(
                        "Container IPVlan mode {have} does not match expected value: {}",
                        conf.mode
                    ),
                ));
            }
        }
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

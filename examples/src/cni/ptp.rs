//! The `ptp` plugin: a veth pair per container, the container's addresses from the IPAM plugin
//! (run from `CNI_PATH`), a /32 (/128) host route to each on the host end and the gateway
//! address on the host end, as the reference plugin lays them out; `ipMasq` as the bridge's.

use super::bridge::{
    add_address, container_route, del_interface, open_container, random_veth_name,
};
use super::check;
use super::error::{CHECK_FAILED, CniError, CniErrorExt, KERNEL};
use super::masq;
use ipnet::IpNet;
use podnet_cni::{Args, CniResult, Interface, Plugin, PluginConf, invoke};
use podnet_links::{Handle, LinkKind, LinkSysctl, Route, Scope, Veth};
use podnet_netns::{NetNs, NetNsError};
use std::net::IpAddr;

/// The `ptp` plugin.
pub struct Ptp;

struct Conf {
    base: PluginConf,
    mtu: Option<u32>,
    ip_masq: bool,
    ipam: String,
}

fn parse(stdin: &[u8], supported: &[&str]) -> Result<Conf, CniError> {
    let base = PluginConf::parse(stdin, supported)?;
    let mtu = base.u32("mtu")?.filter(|m| *m != 0);
    let ip_masq = base.bool("ipMasq")?;
    let ipam = base
        .ipam_type
        .clone()
        .ok_or_else(|| CniError::invalid("ipam.type", "missing: ptp needs an IPAM plugin"))?;
    Ok(Conf {
        base,
        mtu,
        ip_masq,
        ipam,
    })
}

fn host_prefix(ip: IpAddr) -> IpNet {
    IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).unwrap_or_else(|_| IpNet::from(ip))
}

/// What ADD made, to undo on failure.
struct Made<'a> {
    host: &'a Handle,
    veth: Option<String>,
    masq: Vec<IpAddr>,
}

impl Ptp {
    fn attach(
        &self,
        args: &Args,
        conf: &Conf,
        mut result: CniResult,
        made: &mut Made<'_>,
    ) -> Result<CniResult, CniError> {
        if result.ips.is_empty() {
            return Err(CniError::new(
                KERNEL,
                "IPAM plugin returned missing IP config",
            ));
        }
        let host = made.host;
        for (v4, key) in [
            (true, LinkSysctl::Ipv4Forwarding),
            (false, LinkSysctl::Ipv6Forwarding),
        ] {
            if result.ips.iter().any(|i| i.address.addr().is_ipv4() == v4) {
                let _ = host.sysctl().set("all", key, 1);
            }
        }
        let netns: NetNs = open_container(&args.netns)?;
        let container = Handle::in_ns(&netns)
            .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
        let host_veth = make_veth(host, args, conf, &netns)?;
        made.veth = Some(host_veth.clone());
        // We want to own the routes of the host end (the reference's ip.SetupVeth).
        let _ = host.sysctl().set(&host_veth, LinkSysctl::AcceptRa, 0);
        let host_end = host
            .link()
            .get(host_veth.as_str())
            .map_err(|e| CniError::kernel(format!("reading {host_veth}"), e))?;
        host.link()
            .set(host_end.index)
            .up()
            .apply()
            .map_err(|e| CniError::kernel(format!("setting {host_veth} up"), e))?;
        let cont_end = container.link().get(args.ifname.as_str()).map_err(|e| {
            CniError::kernel(format!("reading {} in the container", args.ifname), e)
        })?;
        let index = cont_end.index;
        for ip in &mut result.ips {
            ip.interface = Some(1);
        }
        // The container: IPv6 on (lo and the interface) when there is an IPv6 address,
        // addresses, up, duplicate address detection settled, the IPAM routes; then the subnet
        // route replaced by a link route to the gateway and the subnet via the gateway.
        let v6 = result.ips.iter().any(|i| i.address.addr().is_ipv6());
        if v6 {
            for dev in ["lo", args.ifname.as_str()] {
                let _ = container.sysctl().set(dev, LinkSysctl::DisableIpv6, 0);
            }
        }
        for ip in &result.ips {
            add_address(&container, index, ip.address).map_err(|e| {
                CniError::kernel(format!("adding {} in the container", ip.address), e)
            })?;
        }
        container
            .link()
            .set(index)
            .up()
            .apply()
            .map_err(|e| CniError::kernel(format!("setting {} up", args.ifname), e))?;
        if v6 {
            settle_addresses(&container, index, &args.ifname)?;
        }
        for r in &result.routes {
            let route = container_route(r, index, &result);
            match container.route().add(&route) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {}
                Err(e) => {
                    return Err(CniError::kernel(
                        format!("adding route {route} in the container"),
                        e,
                    ));
                }
            }
        }
        for ip in &result.ips {
            let subnet = ip.address.trunc();
            let on_link = Route::new(subnet).dev(index).scope(Scope::Link);
            match container.route().del(&on_link) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(CniError::kernel(format!("deleting route {subnet}"), e)),
            }
            let Some(gw) = ip.gateway else { continue };
            let src = ip.address.addr();
            for route in [
                Route::new(host_prefix(gw))
                    .dev(index)
                    .scope(Scope::Link)
                    .src(src),
                Route::new(subnet).dev(index).via(gw).src(src),
            ] {
                container.route().add(&route).map_err(|e| {
                    CniError::kernel(format!("adding route {route} in the container"), e)
                })?;
            }
        }
        // The host end: the gateway address, a host route to each container address.
        for ip in &result.ips {
            if let Some(gw) = ip.gateway {
                add_address(host, host_end.index, host_prefix(gw))
                    .map_err(|e| CniError::kernel(format!("adding {gw} to {host_veth}"), e))?;
            }
            let route = Route::new(host_prefix(ip.address.addr()))
                .dev(host_end.index)
                .scope(Scope::Host);
            match host.route().add(&route) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {}
                Err(e) => return Err(CniError::kernel(format!("adding route {route}"), e)),
            }
        }
        if conf.ip_masq {
            let addrs: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
            made.masq = addrs.iter().map(|a| a.addr()).collect();
            masq::setup(&conf.base.name, &args.container_id, &addrs)?;
        }
        let host_end = host
            .link()
            .get(host_end.index)
            .map_err(|e| CniError::kernel(format!("reading {host_veth}"), e))?;
        result.interfaces = vec![
            Interface {
                name: host_veth,
                mac: host_end.mac.map(|m| m.to_string()).unwrap_or_default(),
                mtu: Some(host_end.mtu),
                sandbox: None,
            },
            Interface {
                name: args.ifname.clone(),
                mac: cont_end.mac.map(|m| m.to_string()).unwrap_or_default(),
                mtu: Some(cont_end.mtu),
                sandbox: Some(args.netns.clone()),
            },
        ];
        if conf.base.dns != podnet_cni::Dns::default() {
            result.dns = conf.base.dns.clone();
        }
        Ok(result)
    }
}

/// Waits until no IPv6 address of the interface is tentative (duplicate address detection
/// done), at most 10 s, as the reference's `ip.SettleAddresses`: a route with a tentative
/// source address is refused. An address whose detection failed is an error.
pub(crate) fn settle_addresses(
    container: &Handle,
    index: u32,
    ifname: &str,
) -> Result<(), CniError> {
    const TENTATIVE: u32 = 0x40;
    const DAD_FAILED: u32 = 0x08;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let addrs = container
            .addr()
            .list(Some(index.into()))
            .map_err(|e| CniError::kernel(format!("listing the addresses of {ifname}"), e))?;
        let v6 = addrs.iter().filter(|a| a.addr.addr().is_ipv6());
        if let Some(a) = v6.clone().find(|a| a.flags & DAD_FAILED != 0) {
            return Err(CniError::new(
                KERNEL,
                format!(
                    "{} on {ifname}: duplicate address detection failed (another host has it)",
                    a.addr
                ),
            ));
        }
        if !v6.clone().any(|a| a.flags & TENTATIVE != 0) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(CniError::new(
                KERNEL,
                format!("the IPv6 addresses of {ifname} were still tentative after 10 s"),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The veth pair, its container end named `args.ifname` in the container, its host end a free
/// random `veth...` name (as the reference's `ip.SetupVeth`).
fn make_veth(host: &Handle, args: &Args, conf: &Conf, netns: &NetNs) -> Result<String, CniError> {
    let mut name = None;
    for _ in 0..10 {
        let n = random_veth_name();
        let mut spec = Veth::new(&n).peer(&args.ifname).peer_netns(netns);
        if let Some(m) = conf.mtu {
            spec = spec.mtu(m);
        }
        match host.link().add(&spec) {
            Ok(()) => {
                name = Some(n);
                break;
            }
            Err(e) if e.is_exists() => continue,
            Err(e) => {
                return Err(CniError::kernel(
                    format!("creating veth {n} <-> {} in the container", args.ifname),
                    e,
                ));
            }
        }
    }
    name.ok_or_else(|| CniError::new(KERNEL, "no free name for the host end of the veth pair"))
}

impl Plugin for Ptp {
    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
        let conf = parse(stdin, self.supported_versions())?;
        let result = invoke::exec_add(&conf.ipam, args, stdin)?;
        let host = Handle::new().map_err(|e| CniError::kernel("netlink socket", e))?;
        let mut made = Made {
            host: &host,
            veth: None,
            masq: Vec::new(),
        };
        let out = self.attach(args, &conf, result, &mut made);
        if out.is_err() {
            if !made.masq.is_empty() {
                let _ = masq::teardown(&conf.base.name, &args.container_id, &made.masq);
            }
            if let Some(v) = &made.veth {
                let _ = host.link().del(v.as_str());
            }
            if let Err(e) = invoke::exec_del(&conf.ipam, args, stdin) {
                eprintln!("ptp: rollback: IPAM DEL: {e}");
            }
        }
        out
    }

    fn del(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let conf = parse(stdin, self.supported_versions())?;
        invoke::exec_del(&conf.ipam, args, stdin)?;
        if args.netns.is_empty() {
            return Ok(());
        }
        let addrs = match NetNs::open_path(&args.netns) {
            Ok(cns) => del_interface(&cns, &args.ifname)?,
            Err(NetNsError::NotFound { .. }) => Vec::new(),
            Err(e) => {
                return Err(CniError::new(
                    KERNEL,
                    format!("opening CNI_NETNS={:?}: {e}", args.netns),
                ));
            }
        };
        if conf.ip_masq && !addrs.is_empty() {
            masq::teardown(&conf.base.name, &args.container_id, &addrs)?;
        }
        Ok(())
    }

    fn check(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let conf = parse(stdin, self.supported_versions())?;
        let prev = conf.base.prev_result()?.ok_or_else(|| {
            CniError::invalid("prevResult", "missing: CHECK needs the result of ADD")
        })?;
        invoke::exec_check(&conf.ipam, args, stdin)?;
        check::sandbox_matches(&prev, &args.ifname, &args.netns)?;
        let netns = open_container(&args.netns)?;
        let container = Handle::in_ns(&netns)
            .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
        let link = container.link().get(args.ifname.as_str()).map_err(|e| {
            CniError::new(
                CHECK_FAILED,
                format!("{} in the container: {e}", args.ifname),
            )
        })?;
        if link.kind != Some(LinkKind::Veth) {
            return Err(CniError::new(
                CHECK_FAILED,
                format!(
                    "Error: Container interface {} not of type veth",
                    args.ifname
                ),
            ));
        }
        check::interface_ips_and_routes(&container, &args.ifname, &prev)?;
        Ok(())
    }
}

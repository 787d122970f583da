//! ADD, DEL and CHECK of the bridge plugin: a bridge on the host, a veth pair into the
//! container, addresses and routes from the in-process IPAM.
//!
//! ADD checks everything it can before it changes anything (the container's interface name,
//! a conflicting address on the bridge) and undoes what it did when a later step fails: the
//! veth pair, the lease and the masquerade rules. What all the network's containers share (the
//! bridge, its gateway address, forwarding) stays, as other ADDs may already rely on it.

use super::args::Args;
use super::config::NetConf;
use super::error::{
    ADDRESS_CONFLICT, CHECK_FAILED, CniError, INTERFACE_EXISTS, INVALID_CONFIG,
    INVALID_ENVIRONMENT, KERNEL,
};
use super::result::{CniResult, Interface, IpCfg, RouteCfg};
use super::{ipam, masq, nl};
use ipnet::IpNet;
use podnet_ipam::PodAllocator;
use podnet_links::netlink::Connection;
use podnet_links::{Handle, Link, LinkKind, Route, Scope, Veth};
use podnet_netns::{NetNs, NetNsError};
use std::io::Read;
use std::net::IpAddr;

const IFF_PROMISC: u32 = 0x100;

fn open_container(path: &str) -> Result<NetNs, CniError> {
    NetNs::open_path(path).map_err(|e| match e {
        NetNsError::NotFound { .. } => CniError::new(
            INVALID_ENVIRONMENT,
            format!(
                "CNI_NETNS={path:?} is not a network namespace: create the container's namespace \
                 first and pass its path (e.g. /run/netns/NAME or /proc/PID/ns/net)"
            ),
        ),
        e => CniError::new(KERNEL, format!("opening CNI_NETNS={path:?}: {e}")),
    })
}

/// A podnet-links handle and a raw socket, both inside `ns`, opened on one helper thread.
fn sockets_in(ns: &NetNs) -> Result<(Handle, Connection), CniError> {
    let opened = ns
        .run(|| -> Result<(Handle, Connection), String> {
            let h = Handle::new().map_err(|e| e.to_string())?;
            let c = nl::connect().map_err(|e| e.to_string())?;
            Ok((h, c))
        })
        .map_err(|e| CniError::new(KERNEL, format!("entering the container namespace: {e}")))?;
    opened.map_err(|e| CniError::new(KERNEL, format!("netlink in the container namespace: {e}")))
}

fn host_sockets() -> Result<(Handle, Connection), CniError> {
    let h = Handle::new().map_err(|e| CniError::kernel("netlink socket", e))?;
    let c = nl::connect().map_err(|e| CniError::new(KERNEL, format!("netlink socket: {e}")))?;
    Ok((h, c))
}

/// Writes a sysctl of the calling thread's namespace; errors are ignored, as the reference
/// plugin ignores them (a kernel without IPv6 has no `net/ipv6`).
fn sysctl(key: &str, value: &str) {
    let _ = std::fs::write(format!("/proc/sys/{key}"), value);
}

fn random_veth_name() -> String {
    let mut b = [0u8; 4];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        b = (t ^ std::process::id().rotate_left(16)).to_be_bytes();
    }
    format!("veth{}", super::sha512::hex(&b))
}

/// Finds or creates the bridge, and makes sure it is a bridge, up, and promiscuous if asked.
fn ensure_bridge(h: &Handle, raw: &mut Connection, conf: &NetConf) -> Result<Link, CniError> {
    let name = conf.bridge.as_str();
    let mut br = match h.link().get(name) {
        Ok(l) => l,
        Err(e) if e.is_not_found() => {
            let mut spec = podnet_links::Bridge::new(name);
            if let Some(m) = conf.mtu {
                spec = spec.mtu(m);
            }
            match h.link().add(&spec) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {} // another ADD made it meanwhile
                Err(e) => return Err(CniError::kernel(format!("creating bridge {name}"), e)),
            }
            // We want to own the routes of the bridge.
            sysctl(&format!("net/ipv6/conf/{name}/accept_ra"), "0");
            h.link()
                .get(name)
                .map_err(|e| CniError::kernel(format!("reading bridge {name}"), e))?
        }
        Err(e) => return Err(CniError::kernel(format!("reading bridge {name}"), e)),
    };
    if br.kind != Some(LinkKind::Bridge) {
        return Err(CniError::new(
            INVALID_CONFIG,
            format!(
                "{name:?} already exists but is not a bridge ({}): set \"bridge\" to another name \
                 or delete that device",
                br.kind
                    .map(|k| k.to_string())
                    .unwrap_or_else(|| "no kind".into())
            ),
        ));
    }
    if conf.promisc_mode && br.flags & IFF_PROMISC == 0 {
        nl::set_promisc(raw, br.index).map_err(|e| {
            CniError::new(KERNEL, format!("setting bridge {name} promiscuous: {e}"))
        })?;
    }
    if !br.is_up() {
        h.link()
            .set(br.index)
            .up()
            .apply()
            .map_err(|e| CniError::kernel(format!("setting bridge {name} up"), e))?;
        br.flags |= 1;
    }
    Ok(br)
}

/// Whether the bridge has `gw` already (`Ok(true)`), or an address that conflicts with it:
/// any other IPv4 address, an overlapping IPv6 one. A conflict is an error unless
/// forceAddress is set; then the conflicting addresses are returned for removal.
fn gateway_conflict(
    raw: &mut Connection,
    br: &Link,
    gw: IpNet,
    conf: &NetConf,
) -> Result<Result<bool, Vec<IpNet>>, CniError> {
    let addrs = nl::addresses(raw, br.index)
        .map_err(|e| CniError::new(KERNEL, format!("listing the addresses of {}: {e}", br.name)))?;
    let v4 = gw.addr().is_ipv4();
    let mut conflicts = Vec::new();
    for a in addrs.iter().filter(|a| a.addr().is_ipv4() == v4) {
        if *a == gw {
            return Ok(Ok(true));
        }
        if v4 || a.contains(&gw.addr()) || gw.contains(&a.addr()) {
            if !conf.force_address {
                return Err(CniError::new(
                    ADDRESS_CONFLICT,
                    format!(
                        "bridge {:?} already has address {}, which conflicts with gateway {gw} \
                         of network {:?}: remove it (ip addr del {} dev {}), use another \
                         \"bridge\", or set \"forceAddress\": true",
                        br.name, a, conf.name, a, br.name
                    ),
                ));
            }
            conflicts.push(*a);
        }
    }
    if conflicts.is_empty() {
        Ok(Ok(false))
    } else {
        Ok(Err(conflicts))
    }
}

/// Gives the bridge the gateway address `gw` (see [`gateway_conflict`]). `true` when it added
/// the address.
fn ensure_gateway_addr(
    h: &Handle,
    raw: &mut Connection,
    br: &Link,
    gw: IpNet,
    conf: &NetConf,
) -> Result<bool, CniError> {
    match gateway_conflict(raw, br, gw, conf)? {
        Ok(true) => return Ok(false),
        Ok(false) => {}
        Err(conflicts) => {
            for a in conflicts {
                h.addr()
                    .del(br.index, a)
                    .map_err(|e| CniError::kernel(format!("removing {a} from {}", br.name), e))?;
            }
        }
    }
    nl::add_address(raw, br.index, &gw).map_err(|e| {
        CniError::new(
            KERNEL,
            format!("adding gateway {gw} to bridge {}: {e}", br.name),
        )
    })
}

/// Pins the bridge's MAC to the one it had before the port was attached, so that it no longer
/// follows the lowest-numbered port as veths come and go. Done once a port is attached, as the
/// reference plugin does: a bridge pinned before it has ports keeps a zero bridge id and an
/// UNKNOWN operational state.
fn pin_bridge_mac(h: &Handle, br: &Link) -> Result<(), CniError> {
    if let Some(mac) = br.mac {
        h.link()
            .set(br.index)
            .mac(mac)
            .apply()
            .map_err(|e| CniError::kernel(format!("pinning the MAC of {}", br.name), e))?;
    }
    Ok(())
}

/// What ADD has done so far, to undo on failure.
struct Undo<'a> {
    host: &'a Handle,
    lease: Option<&'a PodAllocator>,
    veth: Option<String>,
    masq: Vec<IpAddr>,
}

impl Undo<'_> {
    fn run(self, args: &Args, conf: &NetConf) {
        if !self.masq.is_empty() {
            if let Err(e) = masq::teardown(&conf.name, &args.container_id, &self.masq) {
                eprintln!("podnet-cni: rollback: {e}");
            }
        }
        if let Some(v) = &self.veth {
            match self.host.link().del(v.as_str()) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => eprintln!("podnet-cni: rollback: deleting {v}: {e}"),
            }
        }
        if let Some(alloc) = self.lease {
            if let Err(e) = alloc.release(&args.container_id, &args.ifname) {
                eprintln!("podnet-cni: rollback: releasing the lease: {e}");
            }
        }
    }
}

/// ADD: attaches the container and returns the result.
pub(crate) fn add(args: &Args, conf: &NetConf, stdin: &[u8]) -> Result<CniResult, CniError> {
    let alloc = if conf.has_ipam {
        Some(ipam::open(stdin)?)
    } else {
        None
    };
    let requested = ipam::requested(&args.cni_args)?;
    let cns = open_container(&args.netns)?;
    // The host's sockets and bridge on a second thread while this one enters the container.
    let (container, host) = std::thread::scope(|s| {
        let host = s.spawn(|| -> Result<_, CniError> {
            let (host, mut hraw) = host_sockets()?;
            let br = ensure_bridge(&host, &mut hraw, conf)?;
            Ok((host, hraw, br))
        });
        let container = sockets_in(&cns);
        let host = host
            .join()
            .unwrap_or(Err(CniError::new(KERNEL, "the bridge thread panicked")));
        (container, host)
    });
    let (ch, mut craw) = container?;
    let (host, mut hraw, br) = host?;
    match ch.link().get(args.ifname.as_str()) {
        Ok(_) => {
            return Err(CniError::new(
                INTERFACE_EXISTS,
                format!(
                    "the container already has an interface named {:?}: choose another CNI_IFNAME \
                     or DEL the previous attachment",
                    args.ifname
                ),
            ));
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(CniError::kernel("reading the container's interfaces", e)),
    }

    let mut undo = Undo {
        host: &host,
        lease: None,
        veth: None,
        masq: Vec::new(),
    };
    let result = add_steps(
        args,
        conf,
        alloc.as_ref(),
        &requested,
        &cns,
        (&ch, &mut craw),
        (&host, &mut hraw),
        br,
        &mut undo,
    );
    if result.is_err() {
        undo.run(args, conf);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn add_steps<'a>(
    args: &Args,
    conf: &NetConf,
    alloc: Option<&'a PodAllocator>,
    requested: &[IpAddr],
    cns: &NetNs,
    (ch, craw): (&Handle, &mut Connection),
    (host, hraw): (&Handle, &mut Connection),
    br: Link,
    undo: &mut Undo<'a>,
) -> Result<CniResult, CniError> {
    let mut result = CniResult {
        dns: conf.dns.clone(),
        routes: conf.ipam_routes.clone(),
        ..CniResult::default()
    };

    // A conflicting address on the bridge fails before anything is changed, when the range
    // sets tell the gateway in advance (one range per set, the usual case).
    if conf.is_gateway && !conf.force_address {
        if let Some(alloc) = alloc {
            for set in alloc.config().ranges.iter().filter(|s| s.len() == 1) {
                let r = &set[0];
                if let Ok(gw) = IpNet::new(r.gateway, r.subnet.prefix_len()) {
                    // Without forceAddress, a conflict is the error; the rest can wait.
                    let _ = gateway_conflict(hraw, &br, gw, conf)?;
                }
            }
        }
    }

    // The lease is taken on a second thread while this one makes the veth pair: the two do
    // not depend on each other, and either's failure undoes both.
    if let Some(a) = alloc {
        undo.lease = Some(a);
    }
    let v6 = alloc.is_some_and(|a| {
        a.config()
            .ranges
            .iter()
            .any(|s| s.iter().any(|r| r.subnet.addr().is_ipv6()))
    });
    let (veth, got) = std::thread::scope(|s| {
        let lease = alloc
            .map(|a| s.spawn(move || a.allocate_with(&args.container_id, &args.ifname, requested)));
        let veth = make_veth(
            args,
            conf,
            cns,
            (ch, &mut *craw),
            (host, &mut *hraw),
            &br,
            v6,
            undo,
        );
        let got = match lease {
            None => Ok(Vec::new()),
            Some(j) => j
                .join()
                .unwrap_or(Err(podnet_ipam::AllocError::BadArgument {
                    field: "ipam",
                    reason: "the allocating thread panicked",
                })),
        };
        (veth, got)
    });
    let (hv, cl) = veth?;
    result.ips = got?
        .iter()
        .map(|a| IpCfg {
            interface: Some(2),
            address: a.address,
            gateway: Some(a.gateway),
        })
        .collect();

    let mut gateways: Vec<IpNet> = Vec::new();
    let mut default_found = [false, false];
    for ip in &result.ips {
        let v6 = ip.address.addr().is_ipv6();
        let default = if v6 {
            IpNet::V6(ipnet::Ipv6Net::default())
        } else {
            IpNet::V4(ipnet::Ipv4Net::default())
        };
        if conf.is_default_gateway && !default_found[v6 as usize] {
            if !result
                .routes
                .iter()
                .any(|r| r.gw.is_some() && r.dst == default)
            {
                result.routes.push(RouteCfg::new(default, ip.gateway));
            }
            default_found[v6 as usize] = true;
        }
        if conf.is_gateway {
            if let Some(g) = ip.gateway {
                if let Ok(n) = IpNet::new(g, ip.address.prefix_len()) {
                    gateways.push(n);
                }
            }
        }
    }
    let mut added_gateway = false;
    for gw in &gateways {
        added_gateway |= ensure_gateway_addr(host, hraw, &br, *gw, conf)?;
    }
    if added_gateway {
        pin_bridge_mac(host, &br)?;
    }

    // The container side: addresses, up, routes.
    for ip in &result.ips {
        nl::add_address(craw, cl.index, &ip.address).map_err(|e| {
            CniError::new(
                KERNEL,
                format!(
                    "adding {} to {} in the container: {e}",
                    ip.address, args.ifname
                ),
            )
        })?;
    }
    ch.link()
        .set(cl.index)
        .up()
        .apply()
        .map_err(|e| CniError::kernel(format!("setting {} up in the container", args.ifname), e))?;
    wait_oper_up(ch, &cl, host, &hv)?;
    let family_gw = |v4: bool| {
        result
            .ips
            .iter()
            .find(|i| i.address.addr().is_ipv4() == v4)
            .and_then(|i| i.gateway)
    };
    for r in &result.routes {
        let mut route = Route::new(r.dst).dev(cl.index);
        if let Some(gw) = r.gw.or_else(|| family_gw(r.dst.addr().is_ipv4())) {
            route = route.via(gw);
        }
        route = route.scope(r.scope.map(Scope::from_u8).unwrap_or(Scope::Universe));
        if let Some(p) = r.priority {
            route = route.metric(p);
        }
        if let Some(t) = r.table {
            route = route.table(t);
        }
        match ch.route().add(&route) {
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

    if !gateways.is_empty() {
        if gateways.iter().any(|g| g.addr().is_ipv4()) {
            enable_forwarding("net/ipv4/ip_forward");
        }
        if gateways.iter().any(|g| g.addr().is_ipv6()) {
            enable_forwarding("net/ipv6/conf/all/forwarding");
        }
    }
    if conf.ip_masq && !result.ips.is_empty() {
        let addrs: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
        undo.masq = addrs.iter().map(|a| a.addr()).collect();
        masq::setup(&conf.name, &args.container_id, &addrs)?;
    }

    // The bridge's MAC may have changed with the first port or the pinning above.
    let br_now = host
        .link()
        .get(br.index)
        .map_err(|e| CniError::kernel(format!("reading bridge {}", br.name), e))?;
    let mac = |l: &Link| l.mac.map(|m| m.to_string()).unwrap_or_default();
    result.interfaces = vec![
        Interface {
            name: br_now.name.clone(),
            mac: mac(&br_now),
            mtu: Some(br_now.mtu),
            sandbox: None,
        },
        Interface {
            name: hv.name.clone(),
            mac: mac(&hv),
            mtu: Some(hv.mtu),
            sandbox: None,
        },
        Interface {
            name: args.ifname.clone(),
            mac: mac(&cl),
            mtu: Some(cl.mtu),
            sandbox: Some(args.netns.clone()),
        },
    ];
    Ok(result)
}

/// Attaches the host end of the veth pair to the bridge: master, up, hairpin, no txqlen.
fn attach_host_end(
    conf: &NetConf,
    host: &Handle,
    hraw: &mut Connection,
    br: &Link,
    host_veth: &str,
) -> Result<Link, CniError> {
    let hv = host
        .link()
        .get(host_veth)
        .map_err(|e| CniError::kernel(format!("reading {host_veth}"), e))?;
    sysctl(&format!("net/ipv6/conf/{host_veth}/accept_ra"), "0");
    host.link()
        .set(hv.index)
        .master(br.index)
        .up()
        .apply()
        .map_err(|e| CniError::kernel(format!("attaching {host_veth} to {}", br.name), e))?;
    if conf.hairpin_mode {
        nl::set_hairpin(hraw, hv.index, true).map_err(|e| {
            CniError::new(KERNEL, format!("setting hairpin mode on {host_veth}: {e}"))
        })?;
    }
    // Like the reference plugin's veths: no transmit queue length (they use no queue anyway).
    nl::set_txqlen(hraw, hv.index, 0)
        .map_err(|e| CniError::new(KERNEL, format!("setting txqlen of {host_veth}: {e}")))?;
    Ok(hv)
}

/// Makes the veth pair (the host end with a random name, the container end inside the
/// container directly), attaches the host end to the bridge, and sets the container end's
/// sysctls. Returns both ends.
#[allow(clippy::too_many_arguments)]
fn make_veth(
    args: &Args,
    conf: &NetConf,
    cns: &NetNs,
    (ch, craw): (&Handle, &mut Connection),
    (host, hraw): (&Handle, &mut Connection),
    br: &Link,
    v6: bool,
    undo: &mut Undo<'_>,
) -> Result<(Link, Link), CniError> {
    let mut host_veth = None;
    for _ in 0..10 {
        let name = random_veth_name();
        let mut spec = Veth::new(&name).peer(&args.ifname).peer_netns(cns);
        if let Some(m) = conf.mtu {
            spec = spec.mtu(m);
        }
        if let Some(mac) = conf.mac {
            spec = spec.peer_mac(mac);
        }
        match host.link().add(&spec) {
            Ok(()) => {
                host_veth = Some(name);
                break;
            }
            Err(e) if e.is_exists() => continue, // a host name taken: draw another
            Err(e) => {
                return Err(CniError::kernel(
                    format!("creating veth {name} <-> {} in the container", args.ifname),
                    e,
                ));
            }
        }
    }
    let Some(host_veth) = host_veth else {
        return Err(CniError::new(
            KERNEL,
            "could not find a free name for the host end of the veth pair after 10 tries",
        ));
    };
    undo.veth = Some(host_veth.clone());
    // The host end on a second thread while this one sets the container end's sysctls.
    let (hv, sysctls) = std::thread::scope(|s| {
        let hv = s.spawn(|| attach_host_end(conf, host, hraw, br, &host_veth));
        let ifname = args.ifname.clone();
        let (has_ipam, enable_dad) = (conf.has_ipam, conf.enable_dad);
        let sysctls = cns.run(move || {
            if has_ipam {
                if enable_dad {
                    sysctl(&format!("net/ipv6/conf/{ifname}/enhanced_dad"), "1");
                    sysctl(&format!("net/ipv6/conf/{ifname}/accept_dad"), "1");
                } else {
                    sysctl(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0");
                }
                sysctl(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1");
            }
            if v6 {
                for dev in ["lo", ifname.as_str()] {
                    sysctl(&format!("net/ipv6/conf/{dev}/disable_ipv6"), "0");
                }
            }
        });
        let hv = hv
            .join()
            .unwrap_or(Err(CniError::new(KERNEL, "the veth thread panicked")));
        (hv, sysctls)
    });
    let hv = hv?;
    sysctls.map_err(|e| CniError::new(KERNEL, format!("entering the container namespace: {e}")))?;
    let cl = ch
        .link()
        .get(args.ifname.as_str())
        .map_err(|e| CniError::kernel(format!("reading {} in the container", args.ifname), e))?;
    nl::set_txqlen(craw, cl.index, 0).map_err(|e| {
        CniError::new(
            KERNEL,
            format!("setting txqlen of {} in the container: {e}", args.ifname),
        )
    })?;
    Ok((hv, cl))
}

/// Waits until the kernel reports both veth ends operationally up (it does so asynchronously,
/// a moment after the link is set up): before that the container's interface shows
/// NO-CARRIER. The reference plugin waits for the same, up to 2.55 s.
fn wait_oper_up(ch: &Handle, cl: &Link, host: &Handle, hv: &Link) -> Result<(), CniError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(2550);
    loop {
        let c = ch
            .link()
            .get(cl.index)
            .map_err(|e| CniError::kernel(format!("reading {} in the container", cl.name), e))?;
        let h = host
            .link()
            .get(hv.index)
            .map_err(|e| CniError::kernel(format!("reading {}", hv.name), e))?;
        if c.oper_state == "UP" && h.oper_state == "UP" {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(CniError::new(
                KERNEL,
                format!(
                    "the veth pair did not come up: {} is {} in the container, {} is {} on the \
                     bridge",
                    cl.name, c.oper_state, h.name, h.oper_state
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn enable_forwarding(key: &str) {
    let path = format!("/proc/sys/{key}");
    if std::fs::read_to_string(&path)
        .map(|v| v.trim() != "1")
        .unwrap_or(true)
    {
        sysctl(key, "1");
    }
}

/// DEL: removes the container's interface (if the namespace and interface still exist), the
/// lease and the masquerade rules. Whatever is already gone is not an error.
pub(crate) fn del(args: &Args, conf: &NetConf, stdin: &[u8]) -> Result<(), CniError> {
    let alloc = if conf.has_ipam {
        Some(ipam::open(stdin)?)
    } else {
        None
    };
    // The kernel takes a while to delete a link (an RCU grace period): release the lease on
    // a second thread meanwhile.
    let (iface, released) = std::thread::scope(|s| {
        let released = s.spawn(|| match &alloc {
            Some(a) => a.release(&args.container_id, &args.ifname),
            None => Ok(Vec::new()),
        });
        let iface = if args.netns.is_empty() {
            Ok(Vec::new())
        } else {
            match NetNs::open_path(&args.netns) {
                Ok(cns) => del_interface(&cns, &args.ifname),
                Err(NetNsError::NotFound { .. }) => Ok(Vec::new()),
                Err(e) => Err(CniError::new(
                    KERNEL,
                    format!("opening CNI_NETNS={:?}: {e}", args.netns),
                )),
            }
        };
        let released = released
            .join()
            .unwrap_or(Err(podnet_ipam::AllocError::BadArgument {
                field: "ipam",
                reason: "the releasing thread panicked",
            }));
        (iface, released)
    });
    let mut addrs = released?;
    let failure = match iface {
        Ok(found) => {
            for ip in found {
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
            }
            None
        }
        Err(e) => Some(e),
    };
    if conf.ip_masq && conf.has_ipam {
        masq::teardown(&conf.name, &args.container_id, &addrs)?;
    }
    failure.map_or(Ok(()), Err)
}

/// Deletes the container's interface, from a thread inside its namespace; returns its global
/// addresses. A missing interface is not an error.
fn del_interface(cns: &NetNs, ifname: &str) -> Result<Vec<IpAddr>, CniError> {
    let deleted = cns.run(|| -> Result<Vec<IpAddr>, CniError> {
        let h =
            Handle::new().map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
        let addrs = match h.addr().list(Some(ifname.into())) {
            Ok(list) => list
                .iter()
                .filter(|a| a.scope == Scope::Universe)
                .map(|a| a.addr.addr())
                .collect(),
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(CniError::kernel(format!("reading {ifname}"), e)),
        };
        match h.link().del(ifname) {
            Ok(()) => Ok(addrs),
            Err(e) if e.is_not_found() => Ok(addrs),
            Err(e) => Err(CniError::kernel(
                format!("deleting {ifname} in the container"),
                e,
            )),
        }
    });
    deleted.map_err(|e| CniError::new(KERNEL, format!("entering the container namespace: {e}")))?
}

fn check_failed(msg: impl Into<String>) -> CniError {
    CniError::new(CHECK_FAILED, msg)
}

/// CHECK: compares the bridge, the veth pair, the container's addresses and routes, and the
/// lease with `prevResult`.
pub(crate) fn check(args: &Args, conf: &NetConf, stdin: &[u8]) -> Result<(), CniError> {
    let Some(prev) = &conf.prev_result else {
        return Err(CniError::new(
            INVALID_CONFIG,
            "CHECK needs prevResult: pass the result of the ADD in the config's \"prevResult\"",
        ));
    };
    let prev = CniResult::from_prev(prev)?;
    if conf.has_ipam {
        let alloc = ipam::open(stdin)?;
        let leases = alloc.leases()?;
        let mine: Vec<IpAddr> = leases
            .iter()
            .filter(|l| {
                l.container_id == args.container_id
                    && l.ifname.as_deref().is_none_or(|i| i == args.ifname)
            })
            .map(|l| l.ip)
            .collect();
        if mine.is_empty() {
            return Err(check_failed(format!(
                "ipam: no address is leased to container {} ({}) in network {:?}",
                args.container_id, args.ifname, conf.name
            )));
        }
        for ip in &prev.ips {
            let ours = alloc
                .config()
                .ranges
                .iter()
                .any(|s| s.iter().any(|r| r.contains(ip.address.addr())));
            if ours && !mine.contains(&ip.address.addr()) {
                return Err(check_failed(format!(
                    "ipam: {} is not leased to container {}",
                    ip.address, args.container_id
                )));
            }
        }
    }

    let (host, _) = host_sockets()?;
    let br = host
        .link()
        .get(conf.bridge.as_str())
        .map_err(|e| check_failed(format!("bridge {}: {e}", conf.bridge)))?;
    if br.kind != Some(LinkKind::Bridge) {
        return Err(check_failed(format!("{} is not a bridge", conf.bridge)));
    }
    if let Some(i) = prev.interfaces.iter().find(|i| i.name == conf.bridge) {
        let mac = br.mac.map(|m| m.to_string()).unwrap_or_default();
        if !i.mac.is_empty() && i.mac != mac {
            return Err(check_failed(format!(
                "bridge {} has MAC {mac}, prevResult says {}",
                conf.bridge, i.mac
            )));
        }
    }
    if (br.flags & IFF_PROMISC != 0) != conf.promisc_mode {
        return Err(check_failed(format!(
            "bridge {}: promiscuous mode is {}, the config says {}",
            conf.bridge,
            br.flags & IFF_PROMISC != 0,
            conf.promisc_mode
        )));
    }

    let Some(cont) = prev
        .interfaces
        .iter()
        .position(|i| i.name == args.ifname && i.sandbox.as_deref() == Some(args.netns.as_str()))
    else {
        return Err(check_failed(format!(
            "prevResult has no interface {} in sandbox {}",
            args.ifname, args.netns
        )));
    };
    let cns = open_container(&args.netns)?;
    let ch = Handle::in_ns(&cns)
        .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
    let cl = ch
        .link()
        .get(args.ifname.as_str())
        .map_err(|e| check_failed(format!("{} in the container: {e}", args.ifname)))?;
    if cl.kind != Some(LinkKind::Veth) {
        return Err(check_failed(format!(
            "{} in the container is not a veth",
            args.ifname
        )));
    }
    let want_mac = &prev.interfaces[cont].mac;
    let cmac = cl.mac.map(|m| m.to_string()).unwrap_or_default();
    if !want_mac.is_empty() && *want_mac != cmac {
        return Err(check_failed(format!(
            "{} has MAC {cmac}, prevResult says {want_mac}",
            args.ifname
        )));
    }
    let peer = prev.interfaces.iter().enumerate().find_map(|(i, intf)| {
        if i == cont || intf.name == conf.bridge || intf.sandbox.is_some() {
            return None;
        }
        let l = host.link().get(intf.name.as_str()).ok()?;
        (l.kind == Some(LinkKind::Veth)
            && l.master == Some(br.index)
            && cl.link == Some(l.index)
            && l.link == Some(cl.index))
        .then_some(l)
    });
    if peer.is_none() {
        return Err(check_failed(format!(
            "no veth of prevResult on bridge {} is the peer of {} in the container",
            conf.bridge, args.ifname
        )));
    }

    let have = ch
        .addr()
        .list(Some(cl.index.into()))
        .map_err(|e| CniError::kernel(format!("listing the addresses of {}", args.ifname), e))?;
    for ip in prev.ips.iter().filter(|i| i.interface == Some(cont)) {
        if !have.iter().any(|a| a.addr == ip.address) {
            return Err(check_failed(format!(
                "{} in the container does not have {}",
                args.ifname, ip.address
            )));
        }
    }
    let routes = ch
        .route()
        .list_table(0)
        .map_err(|e| CniError::kernel("listing the container's routes", e))?;
    for r in &prev.routes {
        let gw = r.gw.or_else(|| {
            prev.ips
                .iter()
                .find(|i| i.address.addr().is_ipv4() == r.dst.addr().is_ipv4())
                .and_then(|i| i.gateway)
        });
        let found = routes
            .iter()
            .any(|k| k.dst == r.dst && (gw.is_none() || k.gateway == gw));
        if !found {
            return Err(check_failed(format!(
                "route {}{} is missing in the container",
                r.dst,
                gw.map(|g| format!(" via {g}")).unwrap_or_default()
            )));
        }
    }
    Ok(())
}

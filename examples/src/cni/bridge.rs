//! ADD and DEL of the bridge plugin (CHECK is in `check.rs`): a bridge on the host, a veth pair into the
//! container, addresses and routes from the in-process IPAM.
//!
//! ADD reads as the reference plugin's `cmdAdd`: [`Attach::open`] checks what it can before
//! anything changes (the container's interface name, a conflicting address on the bridge) and
//! makes sure the bridge is there; then [`Attach::run`] makes the veth pair while the lease is
//! taken, gives the bridge its gateway addresses, configures the container's interface, turns
//! forwarding on and adds the masquerade rules. When a step fails, what ADD did is undone: the
//! veth pair, the lease and the masquerade rules. What all the network's containers share (the
//! bridge, its gateway address, forwarding) stays, as other ADDs may already rely on it.
//!
//! Every kernel change goes through podnet-links: links, addresses, routes and the per-link
//! sysctls of the right namespace.

use super::config::NetConf;
use super::error::CniErrorExt;
use super::error::{
    ADDRESS_CONFLICT, CniError, INTERFACE_EXISTS, INVALID_CONFIG, INVALID_ENVIRONMENT, KERNEL,
};
use super::{ipam, masq};
use ipnet::IpNet;
use podnet_cni::{Args, invoke};
use podnet_cni::{CniResult, Interface, IpCfg, RouteCfg};
use podnet_ipam::{Allocation, PodAllocator};
use podnet_links::{AddressSpec, Bridge, Handle, Link, LinkKind, LinkSysctl, Route, Scope, Veth};
use podnet_netns::{NetNs, NetNsError};
use std::io::Read;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub(super) const IFF_PROMISC: u32 = 0x100;
/// How long the veth pair may take to come up, as the reference plugin waits.
const OPER_UP_WAIT: Duration = Duration::from_millis(2550);

pub(crate) fn open_container(path: &str) -> Result<NetNs, CniError> {
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

/// Sets a per-link sysctl; errors are ignored, as the reference plugin ignores them (a kernel
/// without IPv6 has no `net/ipv6`).
fn sysctl_best_effort(h: &Handle, dev: &str, key: LinkSysctl, value: i64) {
    let _ = h.sysctl().set(dev, key, value);
}

pub(crate) fn random_veth_name() -> String {
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
    format!("veth{:08x}", u32::from_be_bytes(b))
}

/// Finds or creates the bridge, and makes sure it is a bridge, up, and promiscuous if asked.
fn ensure_bridge(host: &Handle, conf: &NetConf) -> Result<Link, CniError> {
    let name = conf.bridge.as_str();
    let mut bridge = match host.link().get(name) {
        Ok(l) => l,
        Err(e) if e.is_not_found() => {
            let mut spec = Bridge::new(name);
            if let Some(m) = conf.mtu {
                spec = spec.mtu(m);
            }
            match host.link().add(&spec) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {} // another ADD made it meanwhile
                Err(e) => return Err(CniError::kernel(format!("creating bridge {name}"), e)),
            }
            // We want to own the routes of the bridge.
            sysctl_best_effort(host, name, LinkSysctl::AcceptRa, 0);
            host.link()
                .get(name)
                .map_err(|e| CniError::kernel(format!("reading bridge {name}"), e))?
        }
        Err(e) => return Err(CniError::kernel(format!("reading bridge {name}"), e)),
    };
    if bridge.kind != Some(LinkKind::Bridge) {
        return Err(CniError::new(
            INVALID_CONFIG,
            format!(
                "{name:?} already exists but is not a bridge ({}): set \"bridge\" to another name \
                 or delete that device",
                bridge
                    .kind
                    .map(|k| k.to_string())
                    .unwrap_or_else(|| "no kind".into())
            ),
        ));
    }
    if conf.promisc_mode && bridge.flags & IFF_PROMISC == 0 {
        host.link()
            .set(bridge.index)
            .promisc(true)
            .apply()
            .map_err(|e| CniError::kernel(format!("setting bridge {name} promiscuous"), e))?;
    }
    if !bridge.is_up() {
        host.link()
            .set(bridge.index)
            .up()
            .apply()
            .map_err(|e| CniError::kernel(format!("setting bridge {name} up"), e))?;
        bridge.flags |= 1;
    }
    Ok(bridge)
}

/// Whether the bridge has `gateway` already (`Ok(true)`), or an address that conflicts with
/// it: any other IPv4 address, an overlapping IPv6 one. A conflict is an error unless
/// forceAddress is set; then the conflicting addresses are returned for removal.
fn gateway_conflict(
    host: &Handle,
    bridge: &Link,
    gateway: IpNet,
    conf: &NetConf,
) -> Result<Result<bool, Vec<IpNet>>, CniError> {
    let addrs: Vec<IpNet> = host
        .addr()
        .list(Some(bridge.index.into()))
        .map_err(|e| CniError::kernel(format!("listing the addresses of {}", bridge.name), e))?
        .iter()
        .map(|a| a.addr)
        .collect();
    let v4 = gateway.addr().is_ipv4();
    let mut conflicts = Vec::new();
    for a in addrs.iter().filter(|a| a.addr().is_ipv4() == v4) {
        if *a == gateway {
            return Ok(Ok(true));
        }
        if v4 || a.contains(&gateway.addr()) || gateway.contains(&a.addr()) {
            if !conf.force_address {
                return Err(CniError::new(
                    ADDRESS_CONFLICT,
                    format!(
                        "bridge {:?} already has address {}, which conflicts with gateway \
                         {gateway} of network {:?}: remove it (ip addr del {} dev {}), use \
                         another \"bridge\", or set \"forceAddress\": true",
                        bridge.name, a, conf.name, a, bridge.name
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

/// Adds `net` with its broadcast address (`ip address add NET brd + dev LINK`), as the
/// reference plugins add theirs. `Ok(false)` when the link has it already.
pub(crate) fn add_address(h: &Handle, index: u32, net: IpNet) -> Result<bool, podnet_links::Error> {
    match h.addr().add(index, AddressSpec::new(net).broadcast_auto()) {
        Ok(()) => Ok(true),
        Err(e) if e.is_exists() => Ok(false),
        Err(e) => Err(e),
    }
}

/// What ADD has done so far, to undo on failure.
struct Undo<'a> {
    host: &'a Handle,
    lease: Option<&'a PodAllocator>,
    /// The IPAM plugin ADD ran through, and the config it got, to DEL through it.
    delegated: Option<(&'a str, &'a [u8])>,
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
        if let Some((ipam, stdin)) = self.delegated {
            if let Err(e) = podnet_cni::invoke::exec_del(ipam, args, stdin) {
                eprintln!("podnet-cni: rollback: DEL through IPAM plugin {ipam}: {e}");
            }
        }
    }
}

/// Both ends of the container's veth pair.
struct VethPair {
    /// The end on the bridge, in the host's namespace.
    host_end: Link,
    /// The end in the container (named CNI_IFNAME).
    container_end: Link,
}

/// One ADD: the request, the two namespaces' handles and the bridge.
struct Attach<'a> {
    args: &'a Args,
    conf: &'a NetConf,
    alloc: Option<PodAllocator>,
    requested: Vec<IpAddr>,
    /// The result's DNS: the config's `dns`, else what host-local's `ipam.resolvConf` says.
    dns: podnet_cni::Dns,
    /// The network config as given (for an IPAM plugin run from CNI_PATH).
    stdin: &'a [u8],
    /// The container's namespace.
    netns: NetNs,
    /// rtnetlink in the host's namespace (where the plugin runs).
    host: Handle,
    /// rtnetlink in the container's namespace.
    container: Handle,
    bridge: Link,
}

/// ADD: attaches the container and returns the result.
pub(crate) fn add(args: &Args, conf: &NetConf, stdin: &[u8]) -> Result<CniResult, CniError> {
    let attach = Attach::open(args, conf, stdin)?;
    let mut undo = Undo {
        host: &attach.host,
        lease: None,
        delegated: None,
        veth: None,
        masq: Vec::new(),
    };
    let result = attach.run(&mut undo);
    if result.is_err() {
        undo.run(args, conf);
    }
    result
}

impl<'a> Attach<'a> {
    /// Opens the IPAM store and the container's namespace, makes sure the bridge is there (on
    /// a second thread while this one opens the container's handle), and checks that the
    /// container has no interface of the name asked for. Changes nothing but the bridge.
    fn open(args: &'a Args, conf: &'a NetConf, stdin: &'a [u8]) -> Result<Attach<'a>, CniError> {
        let alloc = if conf.has_ipam {
            Some(ipam::open(stdin)?)
        } else {
            None
        };
        let requested = ipam::requested_all(&args.cni_args, stdin)?;
        let empty = podnet_cni::Dns::default();
        let raw: serde_json::Value = serde_json::from_slice(stdin).unwrap_or_default();
        let dns = match raw["ipam"]["resolvConf"].as_str() {
            Some(path) if conf.has_ipam && conf.dns == empty && !path.is_empty() => {
                super::hostlocal::resolv_conf(path)?
            }
            _ => conf.dns.clone(),
        };
        let netns = open_container(&args.netns)?;
        let (container, host) = std::thread::scope(|s| {
            let host = s.spawn(|| -> Result<_, CniError> {
                let host = Handle::new().map_err(|e| CniError::kernel("netlink socket", e))?;
                let bridge = ensure_bridge(&host, conf)?;
                Ok((host, bridge))
            });
            let container = Handle::in_ns(&netns)
                .map_err(|e| CniError::kernel("netlink in the container namespace", e));
            let host = host
                .join()
                .unwrap_or(Err(CniError::new(KERNEL, "the bridge thread panicked")));
            (container, host)
        });
        let container = container?;
        let (host, bridge) = host?;
        match container.link().get(args.ifname.as_str()) {
            Ok(_) => {
                return Err(CniError::new(
                    INTERFACE_EXISTS,
                    format!(
                        "the container already has an interface named {:?}: choose another \
                         CNI_IFNAME or DEL the previous attachment",
                        args.ifname
                    ),
                ));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(CniError::kernel("reading the container's interfaces", e)),
        }
        Ok(Attach {
            args,
            conf,
            alloc,
            requested,
            dns,
            stdin,
            netns,
            host,
            container,
            bridge,
        })
    }

    /// The steps of ADD after [`open`](Self::open), each recorded in `undo`.
    fn run<'u>(&'u self, undo: &mut Undo<'u>) -> Result<CniResult, CniError> {
        self.check_gateway_conflicts_early()?;
        let delegated = match &self.conf.ipam_delegate {
            Some(ipam) => {
                let r = podnet_cni::invoke::exec_add(ipam, self.args, self.stdin)?;
                undo.delegated = Some((ipam.as_str(), self.stdin));
                Some(r)
            }
            None => None,
        };
        let (pair, leases) = self.make_veth_while_leasing(undo, delegated.as_ref())?;
        let mut result = self.result_with_ips(&leases, delegated);
        let gateways = self.gateway_addresses(&result);
        self.ensure_gateways_on_bridge(&gateways)?;
        self.configure_container(&pair, &result)?;
        self.enable_forwarding(&gateways);
        if self.conf.ip_masq && !result.ips.is_empty() {
            let addrs: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
            undo.masq = addrs.iter().map(|a| a.addr()).collect();
            masq::setup(&self.conf.name, &self.args.container_id, &addrs)?;
        }
        result.interfaces = self.interfaces(&pair)?;
        Ok(result)
    }

    /// A conflicting address on the bridge fails before anything is changed, when the range
    /// sets tell the gateway in advance (one range per set, the usual case).
    fn check_gateway_conflicts_early(&self) -> Result<(), CniError> {
        let (true, false, Some(alloc)) = (
            self.conf.is_gateway,
            self.conf.force_address,
            self.alloc.as_ref(),
        ) else {
            return Ok(());
        };
        for set in alloc.config().ranges.iter().filter(|s| s.len() == 1) {
            let range = &set[0];
            if let Ok(gateway) = IpNet::new(range.gateway, range.subnet.prefix_len()) {
                // Without forceAddress, a conflict is the error; the rest can wait.
                let _ = gateway_conflict(&self.host, &self.bridge, gateway, self.conf)?;
            }
        }
        Ok(())
    }

    /// Makes the veth pair while a second thread takes the lease: the two do not depend on
    /// each other, and either's failure undoes both.
    fn make_veth_while_leasing<'u>(
        &'u self,
        undo: &mut Undo<'u>,
        delegated: Option<&CniResult>,
    ) -> Result<(VethPair, Vec<Allocation>), CniError> {
        undo.lease = self.alloc.as_ref();
        let (pair, leases) = std::thread::scope(|s| {
            let lease = self.alloc.as_ref().map(|a| {
                s.spawn(move || {
                    a.allocate_with(&self.args.container_id, &self.args.ifname, &self.requested)
                })
            });
            let pair = self.make_veth(undo, delegated);
            let leases = match lease {
                None => Ok(Vec::new()),
                Some(j) => j
                    .join()
                    .unwrap_or(Err(podnet_ipam::AllocError::BadArgument {
                        field: "ipam",
                        reason: "the allocating thread panicked",
                    })),
            };
            (pair, leases)
        });
        Ok((pair?, leases.map_err(super::error::alloc)?))
    }

    /// Whether the IPAM ranges have IPv6 (then IPv6 is turned on in the container).
    fn wants_ipv6(&self, delegated: Option<&CniResult>) -> bool {
        delegated.is_some_and(|r| r.ips.iter().any(|i| i.address.addr().is_ipv6()))
            || self.alloc.as_ref().is_some_and(|a| {
                a.config()
                    .ranges
                    .iter()
                    .any(|s| s.iter().any(|r| r.subnet.addr().is_ipv6()))
            })
    }

    /// Makes the veth pair (the host end with a random name, the container end inside the
    /// container directly), attaches the host end to the bridge, and sets the container end's
    /// sysctls. Returns both ends.
    fn make_veth(
        &self,
        undo: &mut Undo<'_>,
        delegated: Option<&CniResult>,
    ) -> Result<VethPair, CniError> {
        let host_veth = self.create_veth_pair()?;
        undo.veth = Some(host_veth.clone());
        // The host end on a second thread while this one sets the container end's sysctls.
        let host_end = std::thread::scope(|s| {
            let host_end = s.spawn(|| self.attach_host_end(&host_veth));
            self.container_sysctls(delegated);
            host_end
                .join()
                .unwrap_or(Err(CniError::new(KERNEL, "the veth thread panicked")))
        })?;
        let ifname = &self.args.ifname;
        let container_end = self
            .container
            .link()
            .get(ifname.as_str())
            .map_err(|e| CniError::kernel(format!("reading {ifname} in the container"), e))?;
        // Like the reference plugin's veths: no transmit queue length (they use no queue).
        self.container
            .link()
            .set(container_end.index)
            .txqueuelen(0)
            .apply()
            .map_err(|e| {
                CniError::kernel(format!("setting txqlen of {ifname} in the container"), e)
            })?;
        Ok(VethPair {
            host_end,
            container_end,
        })
    }

    /// Creates the pair, drawing another host name when one is taken; returns the host end's
    /// name.
    fn create_veth_pair(&self) -> Result<String, CniError> {
        for _ in 0..10 {
            let name = random_veth_name();
            let mut spec = Veth::new(&name)
                .peer(&self.args.ifname)
                .peer_netns(&self.netns);
            if let Some(m) = self.conf.mtu {
                spec = spec.mtu(m);
            }
            if let Some(mac) = self.conf.mac {
                spec = spec.peer_mac(mac);
            }
            match self.host.link().add(&spec) {
                Ok(()) => return Ok(name),
                Err(e) if e.is_exists() => continue, // a host name taken: draw another
                Err(e) => {
                    return Err(CniError::kernel(
                        format!(
                            "creating veth {name} <-> {} in the container",
                            self.args.ifname
                        ),
                        e,
                    ));
                }
            }
        }
        Err(CniError::new(
            KERNEL,
            "could not find a free name for the host end of the veth pair after 10 tries",
        ))
    }

    /// The container end's sysctls: duplicate address detection as configured, gratuitous
    /// ARP, IPv6 on when the ranges have it.
    fn container_sysctls(&self, delegated: Option<&CniResult>) {
        let (c, ifname) = (&self.container, self.args.ifname.as_str());
        if self.conf.has_ipam || self.conf.ipam_delegate.is_some() {
            if self.conf.enable_dad {
                sysctl_best_effort(c, ifname, LinkSysctl::EnhancedDad, 1);
                sysctl_best_effort(c, ifname, LinkSysctl::AcceptDad, 1);
            } else {
                sysctl_best_effort(c, ifname, LinkSysctl::AcceptDad, 0);
            }
            sysctl_best_effort(c, ifname, LinkSysctl::ArpNotify, 1);
        }
        if self.wants_ipv6(delegated) {
            for dev in ["lo", ifname] {
                sysctl_best_effort(c, dev, LinkSysctl::DisableIpv6, 0);
            }
        }
    }

    /// Attaches the host end of the veth pair to the bridge: master, up, no txqlen, hairpin.
    fn attach_host_end(&self, host_veth: &str) -> Result<Link, CniError> {
        let (host, bridge) = (&self.host, &self.bridge);
        let host_end = host
            .link()
            .get(host_veth)
            .map_err(|e| CniError::kernel(format!("reading {host_veth}"), e))?;
        sysctl_best_effort(host, host_veth, LinkSysctl::AcceptRa, 0);
        host.link()
            .set(host_end.index)
            .master(bridge.index)
            .txqueuelen(0)
            .up()
            .apply()
            .map_err(|e| {
                CniError::kernel(format!("attaching {host_veth} to {}", bridge.name), e)
            })?;
        if self.conf.hairpin_mode {
            host.link()
                .set(host_end.index)
                .hairpin(true)
                .apply()
                .map_err(|e| CniError::kernel(format!("setting hairpin mode on {host_veth}"), e))?;
        }
        Ok(host_end)
    }

    /// The result so far: the leased addresses on the container's interface (index 2 of
    /// `interfaces`), the configured routes, and a default route per family when the bridge
    /// is the default gateway.
    fn result_with_ips(&self, leases: &[Allocation], delegated: Option<CniResult>) -> CniResult {
        let mut result = CniResult {
            dns: self.dns.clone(),
            routes: self.conf.ipam_routes.clone(),
            ..CniResult::default()
        };
        result.ips = leases
            .iter()
            .map(|a| IpCfg {
                interface: Some(2),
                address: a.address,
                gateway: Some(a.gateway),
            })
            .collect();
        if let Some(d) = delegated {
            // The IPAM plugin's addresses, routes, and DNS unless the config has its own.
            result.ips.extend(d.ips.into_iter().map(|ip| IpCfg {
                interface: Some(2),
                ..ip
            }));
            result.routes.extend(d.routes);
            if result.dns == podnet_cni::Dns::default() {
                result.dns = d.dns;
            }
        }
        let mut routes_to_add = Vec::new();
        if self.conf.is_default_gateway {
            // The first address of each family gives its default route, in the leases' order.
            let mut seen = [false, false];
            for ip in &result.ips {
                let v6 = ip.address.addr().is_ipv6();
                if std::mem::replace(&mut seen[usize::from(v6)], true) {
                    continue;
                }
                let default = if v6 {
                    IpNet::V6(ipnet::Ipv6Net::default())
                } else {
                    IpNet::V4(ipnet::Ipv4Net::default())
                };
                if !result
                    .routes
                    .iter()
                    .any(|r| r.gw.is_some() && r.dst == default)
                {
                    routes_to_add.push(RouteCfg::new(default, ip.gateway));
                }
            }
        }
        result.routes.extend(routes_to_add);
        result
    }

    /// The bridge's gateway addresses (gateway with the lease's prefix length), when the
    /// bridge is the gateway.
    fn gateway_addresses(&self, result: &CniResult) -> Vec<IpNet> {
        if !self.conf.is_gateway {
            return Vec::new();
        }
        result
            .ips
            .iter()
            .filter_map(|ip| IpNet::new(ip.gateway?, ip.address.prefix_len()).ok())
            .collect()
    }

    /// Gives the bridge its gateway addresses (see [`gateway_conflict`]) and, when it added
    /// one, pins the bridge's MAC.
    fn ensure_gateways_on_bridge(&self, gateways: &[IpNet]) -> Result<(), CniError> {
        let (host, bridge) = (&self.host, &self.bridge);
        let mut added = false;
        for gateway in gateways {
            match gateway_conflict(host, bridge, *gateway, self.conf)? {
                Ok(true) => continue,
                Ok(false) => {}
                Err(conflicts) => {
                    for a in conflicts {
                        host.addr().del(bridge.index, a).map_err(|e| {
                            CniError::kernel(format!("removing {a} from {}", bridge.name), e)
                        })?;
                    }
                }
            }
            added |= add_address(host, bridge.index, *gateway).map_err(|e| {
                CniError::kernel(
                    format!("adding gateway {gateway} to bridge {}", bridge.name),
                    e,
                )
            })?;
        }
        if added {
            self.pin_bridge_mac()?;
        }
        Ok(())
    }

    /// Pins the bridge's MAC to the one it had before the port was attached, so that it no
    /// longer follows the lowest-numbered port as veths come and go. Done once a port is
    /// attached, as the reference plugin does: a bridge pinned before it has ports keeps a
    /// zero bridge id and an UNKNOWN operational state.
    fn pin_bridge_mac(&self) -> Result<(), CniError> {
        let Some(mac) = self.bridge.mac else {
            return Ok(());
        };
        self.host
            .link()
            .set(self.bridge.index)
            .mac(mac)
            .apply()
            .map_err(|e| CniError::kernel(format!("pinning the MAC of {}", self.bridge.name), e))
    }

    /// The container side: addresses, up (waiting for the pair to come up), routes.
    fn configure_container(&self, pair: &VethPair, result: &CniResult) -> Result<(), CniError> {
        let (container, ifname) = (&self.container, &self.args.ifname);
        let index = pair.container_end.index;
        for ip in &result.ips {
            add_address(container, index, ip.address).map_err(|e| {
                CniError::kernel(
                    format!("adding {} to {ifname} in the container", ip.address),
                    e,
                )
            })?;
        }
        container
            .link()
            .set(index)
            .up()
            .apply()
            .map_err(|e| CniError::kernel(format!("setting {ifname} up in the container"), e))?;
        self.wait_oper_up(pair)?;
        for r in &result.routes {
            let route = container_route(r, index, result);
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
        Ok(())
    }

    /// Waits until the kernel reports both veth ends operationally up (it does so
    /// asynchronously, a moment after the link is set up): before that the container's
    /// interface shows NO-CARRIER. The reference plugin waits for the same, up to 2.55 s.
    fn wait_oper_up(&self, pair: &VethPair) -> Result<(), CniError> {
        let (inside, outside) = (&pair.container_end, &pair.host_end);
        let deadline = Instant::now() + OPER_UP_WAIT;
        loop {
            let c = self.container.link().get(inside.index).map_err(|e| {
                CniError::kernel(format!("reading {} in the container", inside.name), e)
            })?;
            let h = self
                .host
                .link()
                .get(outside.index)
                .map_err(|e| CniError::kernel(format!("reading {}", outside.name), e))?;
            if c.oper_state == "UP" && h.oper_state == "UP" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CniError::new(
                    KERNEL,
                    format!(
                        "the veth pair did not come up: {} is {} in the container, {} is {} on \
                         the bridge",
                        inside.name, c.oper_state, h.name, h.oper_state
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Turns forwarding on in the host's namespace for the families the bridge is the
    /// gateway of (written only when off).
    fn enable_forwarding(&self, gateways: &[IpNet]) {
        for (v4, key) in [
            (true, LinkSysctl::Ipv4Forwarding),
            (false, LinkSysctl::Ipv6Forwarding),
        ] {
            if gateways.iter().any(|g| g.addr().is_ipv4() == v4)
                && self.host.sysctl().get("all", key).ok() != Some(1)
            {
                sysctl_best_effort(&self.host, "all", key, 1);
            }
        }
    }

    /// The result's interfaces: the bridge (its MAC may have changed with the first port or
    /// the pinning), the host end, the container end.
    fn interfaces(&self, pair: &VethPair) -> Result<Vec<Interface>, CniError> {
        let bridge = self
            .host
            .link()
            .get(self.bridge.index)
            .map_err(|e| CniError::kernel(format!("reading bridge {}", self.bridge.name), e))?;
        let mac = |l: &Link| l.mac.map(|m| m.to_string()).unwrap_or_default();
        Ok(vec![
            Interface {
                name: bridge.name.clone(),
                mac: mac(&bridge),
                mtu: Some(bridge.mtu),
                sandbox: None,
            },
            Interface {
                name: pair.host_end.name.clone(),
                mac: mac(&pair.host_end),
                mtu: Some(pair.host_end.mtu),
                sandbox: None,
            },
            Interface {
                name: self.args.ifname.clone(),
                mac: mac(&pair.container_end),
                mtu: Some(pair.container_end.mtu),
                sandbox: Some(self.args.netns.clone()),
            },
        ])
    }
}

/// The container's route for one result route: through the interface, via the route's
/// gateway or the family's gateway, with the scope, metric and table asked for.
pub(crate) fn container_route(r: &RouteCfg, index: u32, result: &CniResult) -> Route {
    let v4 = r.dst.addr().is_ipv4();
    let family_gateway = result
        .ips
        .iter()
        .find(|i| i.address.addr().is_ipv4() == v4)
        .and_then(|i| i.gateway);
    let mut route = Route::new(r.dst).dev(index);
    if let Some(gw) = r.gw.or(family_gateway) {
        route = route.via(gw);
    }
    route = route.scope(r.scope.map(Scope::from_u8).unwrap_or(Scope::Universe));
    if let Some(p) = r.priority {
        route = route.metric(p);
    }
    if let Some(t) = r.table {
        route = route.table(t);
    }
    route
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
    let mut addrs = released.map_err(super::error::alloc)?;
    if let Some(ipam) = &conf.ipam_delegate {
        podnet_cni::invoke::exec_del(ipam, args, stdin)?;
    }
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
    if conf.ip_masq && (conf.has_ipam || conf.ipam_delegate.is_some()) {
        masq::teardown(&conf.name, &args.container_id, &addrs)?;
    }
    failure.map_or(Ok(()), Err)
}

/// DEL of a plugin whose only state is a link in the container (macvlan, ipvlan): the IPAM
/// plugin's DEL, then the container's `ifname`; a namespace already gone is not an error.
pub(crate) fn del_container_link(
    ipam: Option<&str>,
    args: &Args,
    stdin: &[u8],
) -> Result<(), CniError> {
    if let Some(ipam) = ipam {
        invoke::exec_del(ipam, args, stdin)?;
    }
    if args.netns.is_empty() {
        return Ok(());
    }
    match NetNs::open_path(&args.netns) {
        Ok(cns) => del_interface(&cns, &args.ifname).map(drop),
        Err(NetNsError::NotFound { .. }) => Ok(()),
        Err(e) => Err(CniError::new(
            KERNEL,
            format!("opening CNI_NETNS={:?}: {e}", args.netns),
        )),
    }
}

/// Deletes the container's interface, from a thread inside its namespace; returns its global
/// addresses. A missing interface is not an error.
pub(crate) fn del_interface(cns: &NetNs, ifname: &str) -> Result<Vec<IpAddr>, CniError> {
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

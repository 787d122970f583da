//! kube-proxy's ipvs mode, compiled from the service model: the IPVS virtual services and their
//! destinations, the addresses bound to the `kube-ipvs0` dummy device, the ipsets, and the
//! iptables rules ipvs mode keeps.
//!
//! It follows `syncProxyRules` and `writeIptablesRules` of kube-proxy's
//! `pkg/proxy/ipvs/proxier.go`:
//!
//! - every service port gets a virtual service on its cluster IP (bound to `kube-ipvs0`), on
//!   each external IP and load-balancer IP (bound unless the node owns the address), and on
//!   each node IP for its node port; scheduler from `--ipvs-scheduler` (`mh` adds the
//!   `mh-port` flag), ClientIP affinity as persistence with the affinity timeout;
//! - destinations are the endpoints the traffic policy selects (weight 1, NAT): cluster
//!   endpoints, or with a Local policy the local ones, falling back to the cluster ones when
//!   there are none, as kube-proxy does;
//! - one deviation, on purpose: for that fallback on an external address (node port, external
//!   IP, load-balancer IP), `KUBE-PROXY-FIREWALL` gets a rule dropping new connections from
//!   outside the node and its pods (`"<service port> has no local endpoints"`), so
//!   externalTrafficPolicy Local drops as documented and as the iptables and nftables modes
//!   do, also when the CNI masquerades the forwarded traffic (kube-proxy relies on the reply
//!   being discarded);
//! - the ipsets `KUBE-CLUSTER-IP`, `KUBE-LOOP-BACK`, `KUBE-NODE-PORT-*`, `KUBE-LOAD-BALANCER*`,
//!   `KUBE-EXTERNAL-IP*`, `KUBE-HEALTH-CHECK-NODE-PORT`, `KUBE-IPVS-IPS` with kube-proxy's
//!   entries;
//! - the nat and filter rules (`KUBE-SERVICES`, `KUBE-POSTROUTING`, `KUBE-NODE-PORT`,
//!   `KUBE-LOAD-BALANCER`, `KUBE-MARK-MASQ`, `KUBE-FORWARD`, `KUBE-PROXY-FIREWALL`,
//!   `KUBE-SOURCE-RANGES-FIREWALL`, `KUBE-IPVS-FILTER`, `KUBE-IPVS-OUT-FILTER`) as
//!   `iptables-restore` input, line for line as kube-proxy writes them, and the jumps from the
//!   built-in chains it ensures.
//!
//! [`NodeSettings::node_ips`] must list every address of the node (kube-proxy reads them from
//! the interfaces): node ports listen on those of this family that are not loopback (or those
//! in `--nodeport-addresses`), and external and load-balancer IPs among them are not bound to
//! `kube-ipvs0`. Not covered: topology hints, and kube-proxy's once-a-minute retry of draining
//! destinations (a later sync deletes them instead; see [`crate::ipvs::sync`]).
//!
//! ```
//! use podnet_nat::kube_proxy::ipvs_mode::{IpvsModeSettings, compile};
//! use podnet_nat::kube::{ClusterState, IpFamily, parse_objects};
//! use podnet_nat::kube_proxy::NodeSettings;
//!
//! let yaml = "kind: Service\nmetadata: {name: web, namespace: demo}\n\
//!             spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}\n";
//! let (objects, _) = parse_objects(yaml, "inline");
//! let (state, _) = ClusterState::from_objects(&objects, IpFamily::V4);
//! let rules = compile(&state, &NodeSettings::new("node-1", IpFamily::V4), &IpvsModeSettings::default());
//! assert!(rules.render_ipvs().contains("-A -t 10.96.0.10:80 -s rr"));
//! assert!(rules.render_ipsets().contains("add podnet-swap-1 10.96.0.10,tcp:80"));
//! assert!(rules.iptables.render().contains("--match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT"));
//! ```

use crate::iptables::{Protocol, Table};
use crate::ipvs::ipset::{self, IpSet};
use crate::ipvs::{Destination, Scheduler, ServiceFlags, ServiceId, Timeouts, VirtualService};
use crate::kube::plan::{PortPlan, Traffic};
use crate::kube::{ClusterState, IpFamily, ServicePortName};
use crate::kube_proxy::{LocalDetector, NodeSettings};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// The dummy device that holds the service addresses.
pub const DUMMY_DEVICE: &str = "kube-ipvs0";

/// The settings of ipvs mode beyond [`NodeSettings`] (kube-proxy's `--ipvs-*` flags).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpvsModeSettings {
    /// `--ipvs-scheduler` (default `rr`).
    pub scheduler: Scheduler,
    /// `--ipvs-exclude-cidrs`: virtual services in these networks are never deleted by a
    /// sync (they belong to someone else).
    pub exclude_cidrs: Vec<IpNet>,
    /// `--ipvs-strict-arp`: `arp_ignore=1` and `arp_announce=2` on all interfaces, so the
    /// node does not answer ARP for the service addresses on `kube-ipvs0`.
    pub strict_arp: bool,
    /// `--ipvs-tcp-timeout`, `--ipvs-tcpfin-timeout`, `--ipvs-udp-timeout` (0 keeps the
    /// kernel's value).
    pub timeouts: Timeouts,
}

/// A virtual service with its destinations, and the service port it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledService {
    /// The virtual service.
    pub service: VirtualService,
    /// Its destinations, sorted by address.
    pub destinations: Vec<Destination>,
    /// The service port it belongs to.
    pub port: ServicePortName,
}

/// The nat and filter rules of ipvs mode, as kube-proxy writes them for `iptables-restore
/// --noflush`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IptablesRules {
    /// The nat table's chains.
    pub nat_chains: Vec<&'static str>,
    /// The nat table's rules (`-A ...` lines).
    pub nat_rules: Vec<String>,
    /// The filter table's chains.
    pub filter_chains: Vec<&'static str>,
    /// The filter table's rules.
    pub filter_rules: Vec<String>,
}

impl IptablesRules {
    /// `iptables-restore` input: `*nat`, its chains and rules, `COMMIT`, then the same for
    /// `*filter`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (table, chains, rules) in [
            ("nat", &self.nat_chains, &self.nat_rules),
            ("filter", &self.filter_chains, &self.filter_rules),
        ] {
            let _ = writeln!(out, "*{table}");
            for c in chains.iter() {
                let _ = writeln!(out, ":{c} - [0:0]");
            }
            for r in rules.iter() {
                let _ = writeln!(out, "{r}");
            }
            out.push_str("COMMIT\n");
        }
        out
    }
}

/// A jump from a built-in chain into one of kube-proxy's (`iptables -I FROM -m comment
/// --comment COMMENT -j TO`), which kube-proxy ensures outside the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JumpRule {
    /// The table.
    pub table: Table,
    /// The built-in chain.
    pub from: &'static str,
    /// kube-proxy's chain.
    pub to: &'static str,
    /// The comment.
    pub comment: &'static str,
}

impl JumpRule {
    /// The rule's arguments after the chain name.
    pub fn args(&self) -> Vec<&'static str> {
        vec!["-m", "comment", "--comment", self.comment, "-j", self.to]
    }
}

/// kube-proxy's `iptablesJumpChain`, in order (each is prepended, so the last ends up first).
pub const JUMP_RULES: [JumpRule; 9] = [
    jump(Table::Nat, "OUTPUT", SERVICES, "kubernetes service portals"),
    jump(
        Table::Nat,
        "PREROUTING",
        SERVICES,
        "kubernetes service portals",
    ),
    jump(
        Table::Nat,
        "POSTROUTING",
        POSTROUTING,
        "kubernetes postrouting rules",
    ),
    jump(
        Table::Filter,
        "FORWARD",
        FORWARD,
        "kubernetes forwarding rules",
    ),
    jump(
        Table::Filter,
        "INPUT",
        NODE_PORT,
        "kubernetes health check rules",
    ),
    jump(
        Table::Filter,
        "INPUT",
        PROXY_FIREWALL,
        "kube-proxy firewall rules",
    ),
    jump(
        Table::Filter,
        "FORWARD",
        PROXY_FIREWALL,
        "kube-proxy firewall rules",
    ),
    jump(
        Table::Filter,
        "INPUT",
        IPVS_FILTER,
        "kubernetes ipvs access filter",
    ),
    jump(
        Table::Filter,
        "OUTPUT",
        IPVS_OUT_FILTER,
        "kubernetes ipvs access filter",
    ),
];

const fn jump(
    table: Table,
    from: &'static str,
    to: &'static str,
    comment: &'static str,
) -> JumpRule {
    JumpRule {
        table,
        from,
        to,
        comment,
    }
}

const SERVICES: &str = "KUBE-SERVICES";
const POSTROUTING: &str = "KUBE-POSTROUTING";
const NODE_PORT: &str = "KUBE-NODE-PORT";
const LOAD_BALANCER: &str = "KUBE-LOAD-BALANCER";
const MARK_MASQ: &str = "KUBE-MARK-MASQ";
const FORWARD: &str = "KUBE-FORWARD";
const PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
const SOURCE_RANGES_FIREWALL: &str = "KUBE-SOURCE-RANGES-FIREWALL";
const IPVS_FILTER: &str = "KUBE-IPVS-FILTER";
const IPVS_OUT_FILTER: &str = "KUBE-IPVS-OUT-FILTER";

/// kube-proxy's `iptablesChains`.
const NAT_CHAINS: [&str; 5] = [SERVICES, POSTROUTING, NODE_PORT, LOAD_BALANCER, MARK_MASQ];
const FILTER_CHAINS: [&str; 6] = [
    FORWARD,
    NODE_PORT,
    PROXY_FIREWALL,
    SOURCE_RANGES_FIREWALL,
    IPVS_FILTER,
    IPVS_OUT_FILTER,
];

/// What ipvs mode owns in iptables, for `--cleanup`: upstream's `iptablesCleanupChains`
/// (nat `KUBE-SERVICES`, `KUBE-POSTROUTING`, `KUBE-NODE-PORT`, `KUBE-LOAD-BALANCER`; filter
/// `KUBE-FORWARD`, `KUBE-NODE-PORT`, `KUBE-PROXY-FIREWALL`, `KUBE-SOURCE-RANGES-FIREWALL`,
/// `KUBE-IPVS-FILTER`, `KUBE-IPVS-OUT-FILTER`), also the `KUBE-MARK-MASQ` this mode writes
/// (upstream leaves it; [`crate::kube_proxy::cleanup`] keeps it whenever another rule still uses
/// it), and the [`JUMP_RULES`].
pub fn owned_iptables() -> crate::kube_proxy::cleanup::Owned {
    use crate::iptables::{Match, Rule};
    let chains = NAT_CHAINS
        .iter()
        .map(|c| (Table::Nat, *c))
        .chain(FILTER_CHAINS.iter().map(|c| (Table::Filter, *c)))
        .collect();
    let jumps = JUMP_RULES
        .iter()
        .map(|j| {
            (
                j.table,
                Rule::new(j.from).with(Match::comment(j.comment)).jump(j.to),
            )
        })
        .collect();
    crate::kube_proxy::cleanup::Owned {
        chains,
        service_chains: false,
        jumps,
    }
}

/// One entry of kube-proxy's `ipsetWithIptablesChain`: (set, table, from chain, to, match
/// direction, protocol).
type SetRule = (
    &'static str,
    Table,
    &'static str,
    &'static str,
    &'static str,
    Option<Protocol>,
);

/// kube-proxy's `ipsetWithIptablesChain`.
const SET_RULES: [SetRule; 12] = [
    (
        ipset::LOOP_BACK,
        Table::Nat,
        POSTROUTING,
        "MASQUERADE",
        "dst,dst,src",
        None,
    ),
    (
        ipset::LOAD_BALANCER,
        Table::Nat,
        SERVICES,
        LOAD_BALANCER,
        "dst,dst",
        None,
    ),
    (
        ipset::LOAD_BALANCER_LOCAL,
        Table::Nat,
        LOAD_BALANCER,
        "RETURN",
        "dst,dst",
        None,
    ),
    (
        ipset::NODE_PORT_LOCAL_TCP,
        Table::Nat,
        NODE_PORT,
        "RETURN",
        "dst",
        Some(Protocol::Tcp),
    ),
    (
        ipset::NODE_PORT_TCP,
        Table::Nat,
        NODE_PORT,
        MARK_MASQ,
        "dst",
        Some(Protocol::Tcp),
    ),
    (
        ipset::NODE_PORT_LOCAL_UDP,
        Table::Nat,
        NODE_PORT,
        "RETURN",
        "dst",
        Some(Protocol::Udp),
    ),
    (
        ipset::NODE_PORT_UDP,
        Table::Nat,
        NODE_PORT,
        MARK_MASQ,
        "dst",
        Some(Protocol::Udp),
    ),
    (
        ipset::NODE_PORT_LOCAL_SCTP,
        Table::Nat,
        NODE_PORT,
        "RETURN",
        "dst,dst",
        Some(Protocol::Sctp),
    ),
    (
        ipset::NODE_PORT_SCTP,
        Table::Nat,
        NODE_PORT,
        MARK_MASQ,
        "dst,dst",
        Some(Protocol::Sctp),
    ),
    (
        ipset::LOAD_BALANCER_FW,
        Table::Filter,
        PROXY_FIREWALL,
        SOURCE_RANGES_FIREWALL,
        "dst,dst",
        None,
    ),
    (
        ipset::LOAD_BALANCER_SOURCE_CIDR,
        Table::Filter,
        SOURCE_RANGES_FIREWALL,
        "RETURN",
        "dst,dst,src",
        None,
    ),
    (
        ipset::LOAD_BALANCER_SOURCE_IP,
        Table::Filter,
        SOURCE_RANGES_FIREWALL,
        "RETURN",
        "dst,dst,src",
        None,
    ),
];

/// Everything ipvs mode puts in the kernel for one IP family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsRules {
    /// The family.
    pub family: IpFamily,
    /// Addresses to bind to [`DUMMY_DEVICE`] (as /32 or /128).
    pub bind_addrs: BTreeSet<IpAddr>,
    /// The virtual services, by what identifies them.
    pub services: BTreeMap<ServiceId, CompiledService>,
    /// The ipsets, in kube-proxy's order.
    pub ipsets: Vec<IpSet>,
    /// The iptables rules.
    pub iptables: IptablesRules,
}

impl IpvsRules {
    /// The set named `base` (e.g. [`ipset::CLUSTER_IP`]).
    pub fn ipset(&self, base: &str) -> Option<&IpSet> {
        let name = ipset::set_name(base, self.family);
        self.ipsets.iter().find(|s| s.name == name)
    }

    /// The ipsets as `ipset -exist restore` input (see [`ipset::render_restore`]).
    pub fn render_ipsets(&self) -> String {
        ipset::render_restore(&self.ipsets)
    }

    /// The virtual services and destinations in `ipvsadm-save -n` form (what
    /// `ipvsadm-restore` reads): `-A -t 10.96.0.10:80 -s rr` and `-a -t 10.96.0.10:80 -r
    /// 10.244.1.2:8080 -m -w 1`.
    pub fn render_ipvs(&self) -> String {
        let mut out = String::new();
        for c in self.services.values() {
            let svc = &c.service;
            let id = ipvsadm_id(&svc.id);
            let _ = write!(out, "-A {id} -s {}", svc.scheduler);
            if svc.flags.contains(ServiceFlags::PERSISTENT) {
                let _ = write!(out, " -p {}", svc.timeout);
            }
            let sched_flags = sched_flag_names(&svc.scheduler, svc.flags);
            if !sched_flags.is_empty() {
                let _ = write!(out, " -b {}", sched_flags.join(","));
            }
            out.push('\n');
            for d in &c.destinations {
                let _ = writeln!(out, "-a {id} -r {} -m -w {}", d.addr, d.weight);
            }
        }
        out
    }
}

fn ipvsadm_id(id: &ServiceId) -> String {
    match id {
        ServiceId::Addr { protocol, addr } => {
            let flag = match protocol {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
                Protocol::Sctp => "--sctp-service",
            };
            format!("{flag} {addr}")
        }
        ServiceId::FwMark { mark, .. } => format!("-f {mark}"),
    }
}

fn sched_flag_names(sched: &Scheduler, flags: ServiceFlags) -> Vec<&'static str> {
    let mut v = Vec::new();
    let (one, two) = match sched {
        Scheduler::SourceHashing => ("sh-fallback", "sh-port"),
        Scheduler::MaglevHashing => ("mh-fallback", "mh-port"),
        _ => ("flag-1", "flag-2"),
    };
    if flags.contains(ServiceFlags::SCHED1) {
        v.push(one);
    }
    if flags.contains(ServiceFlags::SCHED2) {
        v.push(two);
    }
    if flags.contains(ServiceFlags::SCHED3) {
        v.push("flag-3");
    }
    v
}

/// Collects the compiler's output.
struct Builder<'a> {
    node: &'a NodeSettings,
    settings: &'a IpvsModeSettings,
    family: IpFamily,
    sets: BTreeMap<&'static str, IpSet>,
    services: BTreeMap<ServiceId, CompiledService>,
    bind: BTreeSet<IpAddr>,
    /// Load-balancer (ip, proto, port) the node itself must not reach (no source range
    /// covers the node IP): `KUBE-IPVS-OUT-FILTER` drops.
    lb_no_node_access: Vec<(IpAddr, Protocol, u16)>,
    /// External addresses (node ports, external IPs, load-balancer IPs) of services with an
    /// external Local policy and no local endpoint: `KUBE-PROXY-FIREWALL` drops what arrives
    /// there from outside the node (see [`compile`]).
    no_local_endpoints: Vec<(String, SocketAddr, Protocol)>,
}

impl Builder<'_> {
    fn add(&mut self, set: &'static str, entry: String) {
        if let Some(s) = self.sets.get_mut(set) {
            s.entries.insert(entry);
        }
    }

    fn virtual_service(&self, plan: &PortPlan<'_>, addr: SocketAddr) -> VirtualService {
        let mut vs = VirtualService::new(ServiceId::Addr {
            protocol: plan.port.protocol(),
            addr,
        })
        .scheduler(self.settings.scheduler.clone());
        if let Some(timeout_seconds) = plan.affinity {
            vs = vs.persistent(timeout_seconds);
        }
        if self.settings.scheduler == Scheduler::MaglevHashing {
            vs = vs.flags(ServiceFlags::SCHED2);
        }
        vs
    }

    /// Adds the virtual service on `addr` with the endpoints `traffic`'s policy selects (see
    /// [`PortPlan::backends`]); `true` when a Local policy found no local endpoint and fell
    /// back to the cluster ones.
    fn service(&mut self, plan: &PortPlan<'_>, addr: SocketAddr, traffic: &Traffic) -> bool {
        let vs = self.virtual_service(plan, addr);
        let (chosen, fell_back) = plan.backends(traffic);
        let addrs: BTreeSet<SocketAddr> = chosen.iter().map(|e| e.addr).collect();
        let destinations = addrs.into_iter().map(Destination::new).collect();
        self.services.insert(
            vs.id,
            CompiledService {
                service: vs,
                destinations,
                port: plan.port.name.clone(),
            },
        );
        fell_back
    }

    /// The virtual service on an external address (node port, external IP, load-balancer
    /// IP): with a Local policy and no local endpoint, also the drop rule of [`compile`].
    fn external_service(&mut self, plan: &PortPlan<'_>, addr: SocketAddr) {
        if self.service(plan, addr, &plan.external) {
            self.no_local_endpoints
                .push((plan.name.clone(), addr, plan.port.protocol()));
        }
    }
}

/// The node's addresses of this family that are not loopback: where node ports listen when
/// `--nodeport-addresses` is empty, and the addresses never bound to the dummy device.
fn node_addresses(node: &NodeSettings, family: IpFamily) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = node
        .node_ips
        .iter()
        .copied()
        .filter(|ip| IpFamily::of(ip) == family && !ip.is_loopback())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// What every port of a sync needs to know about the node.
struct NodeAddrs {
    /// See [`node_addresses`].
    all: Vec<IpAddr>,
    /// Where node ports listen.
    nodeport: Vec<IpAddr>,
}

/// Compiles `state` into ipvs mode's kernel objects for `node`.
pub fn compile(
    state: &ClusterState,
    node: &NodeSettings,
    settings: &IpvsModeSettings,
) -> IpvsRules {
    let family = state.family;
    let mut b = Builder {
        node,
        settings,
        family,
        sets: ipset::SETS
            .iter()
            .filter_map(|(n, _, _)| Some((*n, IpSet::kube(n, family)?)))
            .collect(),
        services: BTreeMap::new(),
        bind: BTreeSet::new(),
        lb_no_node_access: Vec::new(),
        no_local_endpoints: Vec::new(),
    };
    let all = node_addresses(node, family);
    let nodeport = if node.nodeports_match_all() {
        all.clone()
    } else {
        all.iter()
            .copied()
            .filter(|ip| node.nodeport_addresses.iter().any(|n| n.contains(ip)))
            .collect()
    };
    let addrs = NodeAddrs { all, nodeport };
    for (spn, svc) in &state.services {
        let endpoints = state.endpoints_of(spn);
        // Hairpin: local endpoints reaching themselves through the service are masqueraded.
        for e in endpoints.iter().filter(|e| e.is_local(&node.node_name)) {
            let entry = ipset::ip_port_ip(e.ip(), svc.protocol(), e.addr.port(), e.ip());
            b.add(ipset::LOOP_BACK, entry);
        }
        let plan = PortPlan::new(svc, endpoints, node);
        service_ips(&mut b, &plan, &addrs);
        node_ports(&mut b, &plan, &addrs);
        if let Some(hc) = svc.health_check_node_port {
            b.add(ipset::HEALTH_CHECK_NODE_PORT, hc.to_string());
        }
    }
    let bound: Vec<String> = b.bind.iter().map(IpAddr::to_string).collect();
    for a in bound {
        b.add(ipset::IPVS_IPS, a);
    }

    let iptables = iptables_rules(&b);
    let ipsets = ipset::SETS
        .iter()
        .filter_map(|(n, _, _)| b.sets.remove(n))
        .collect();
    IpvsRules {
        family,
        bind_addrs: b.bind,
        services: b.services,
        ipsets,
        iptables,
    }
}

/// The virtual services, ipset entries and bound addresses of a port's cluster IP, external
/// IPs and load-balancer IPs.
fn service_ips(b: &mut Builder<'_>, plan: &PortPlan<'_>, addrs: &NodeAddrs) {
    let svc = plan.port;
    let proto = svc.protocol();
    let local = svc.external_policy_local;
    b.add(
        ipset::CLUSTER_IP,
        ipset::ip_port(svc.cluster_ip, proto, svc.port),
    );
    b.service(
        plan,
        SocketAddr::new(svc.cluster_ip, svc.port),
        &plan.internal,
    );
    b.bind.insert(svc.cluster_ip);

    for ip in &svc.external_ips {
        let entry = ipset::ip_port(*ip, proto, svc.port);
        let set = if local {
            ipset::EXTERNAL_IP_LOCAL
        } else {
            ipset::EXTERNAL_IP
        };
        b.add(set, entry);
        b.external_service(plan, SocketAddr::new(*ip, svc.port));
        if !addrs.all.contains(ip) {
            b.bind.insert(*ip);
        }
    }

    for ip in &svc.load_balancer_vips {
        let entry = ipset::ip_port(*ip, proto, svc.port);
        b.add(ipset::LOAD_BALANCER, entry.clone());
        if local {
            b.add(ipset::LOAD_BALANCER_LOCAL, entry.clone());
        }
        if let Some(fw) = &plan.firewall {
            b.add(ipset::LOAD_BALANCER_FW, entry);
            for cidr in &fw.sources {
                let entry = ipset::ip_port_net(*ip, proto, svc.port, *cidr);
                b.add(ipset::LOAD_BALANCER_SOURCE_CIDR, entry);
            }
            if fw.allow_from_node {
                let entry = ipset::ip_port_ip(*ip, proto, svc.port, *ip);
                b.add(ipset::LOAD_BALANCER_SOURCE_IP, entry);
            } else {
                b.lb_no_node_access.push((*ip, proto, svc.port));
            }
        }
        b.external_service(plan, SocketAddr::new(*ip, svc.port));
        if !addrs.all.contains(ip) {
            b.bind.insert(*ip);
        }
    }
}

/// A port's node port: ipset entries, and a virtual service on every node-port address.
fn node_ports(b: &mut Builder<'_>, plan: &PortPlan<'_>, addrs: &NodeAddrs) {
    let Some(np) = plan.port.node_port.filter(|_| !addrs.nodeport.is_empty()) else {
        return;
    };
    let proto = plan.port.protocol();
    let (set, local_set, entries): (_, _, Vec<String>) = match proto {
        Protocol::Tcp => (
            ipset::NODE_PORT_TCP,
            ipset::NODE_PORT_LOCAL_TCP,
            vec![np.to_string()],
        ),
        Protocol::Udp => (
            ipset::NODE_PORT_UDP,
            ipset::NODE_PORT_LOCAL_UDP,
            vec![np.to_string()],
        ),
        Protocol::Sctp => (
            ipset::NODE_PORT_SCTP,
            ipset::NODE_PORT_LOCAL_SCTP,
            addrs
                .nodeport
                .iter()
                .map(|ip| ipset::ip_port(*ip, proto, np))
                .collect(),
        ),
    };
    for e in &entries {
        b.add(set, e.clone());
        if plan.port.external_policy_local {
            b.add(local_set, e.clone());
        }
    }
    for ip in &addrs.nodeport {
        b.external_service(plan, SocketAddr::new(*ip, np));
    }
}

/// `writeIptablesRules` and `createAndLinkKubeChain`.
fn iptables_rules(b: &Builder<'_>) -> IptablesRules {
    let mut r = IptablesRules {
        nat_chains: NAT_CHAINS.to_vec(),
        filter_chains: FILTER_CHAINS.to_vec(),
        ..IptablesRules::default()
    };
    set_rules(b, &mut r);
    service_rules(b, &mut r);
    no_local_endpoint_rules(b, &mut r);
    accept_and_masquerade_rules(b, &mut r);
    r
}

/// The loopback RETURN at the head of `KUBE-SERVICES`, and `ipsetWithIptablesChain`'s rules.
fn set_rules(b: &Builder<'_>, r: &mut IptablesRules) {
    let set = |base: &str| -> &IpSet { &b.sets[base] };
    let lo = match b.family {
        IpFamily::V4 => "127.0.0.0/8",
        IpFamily::V6 => "::1/128",
    };
    r.nat_rules.push(format!("-A {SERVICES} -s {lo} -j RETURN"));

    for (base, table, from, to, dir, proto) in SET_RULES {
        let s = set(base);
        if s.entries.is_empty() {
            continue;
        }
        let mut line = format!("-A {from}");
        if let Some(p) = proto {
            let _ = write!(line, " -p {}", p.as_str());
        }
        let _ = write!(
            line,
            " -m comment --comment {} -m set --match-set {} {dir} -j {to}",
            s.quoted_comment(),
            s.name
        );
        match table {
            Table::Filter => r.filter_rules.push(line),
            _ => r.nat_rules.push(line),
        }
    }
}

/// `KUBE-SERVICES`' masquerade rules for cluster and external IPs, its jump to
/// `KUBE-NODE-PORT`, and the load-balancer and source-range chains' defaults.
fn service_rules(b: &Builder<'_>, r: &mut IptablesRules) {
    let node = b.node;
    let set = |base: &str| -> &IpSet { &b.sets[base] };
    let cluster = set(ipset::CLUSTER_IP);
    if !cluster.entries.is_empty() {
        let head = format!(
            "-A {SERVICES} -m comment --comment {} -m set --match-set {}",
            cluster.quoted_comment(),
            cluster.name
        );
        let line = if node.masquerade_all {
            format!("{head} dst,dst -j {MARK_MASQ}")
        } else {
            match &node.local_detector {
                LocalDetector::None => format!("{head} src,dst -j {MARK_MASQ}"),
                LocalDetector::ClusterCidr(net) => {
                    format!("{head} dst,dst ! -s {net} -j {MARK_MASQ}")
                }
                LocalDetector::BridgeInterface(br) => {
                    format!("{head} dst,dst ! -i {br} -j {MARK_MASQ}")
                }
                LocalDetector::InterfaceNamePrefix(p) => {
                    format!("{head} dst,dst ! -i {p}+ -j {MARK_MASQ}")
                }
            }
        };
        r.nat_rules.push(line);
    }

    let external_ip_rules = |r: &mut IptablesRules, head: &str| {
        r.nat_rules.push(format!(
            "{head} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT"
        ));
        r.nat_rules
            .push(format!("{head} -m addrtype --dst-type LOCAL -j ACCEPT"));
    };
    let ext = set(ipset::EXTERNAL_IP);
    if !ext.entries.is_empty() {
        let head = format!(
            "-A {SERVICES} -m comment --comment {} -m set --match-set {} dst,dst",
            ext.quoted_comment(),
            ext.name
        );
        r.nat_rules.push(format!("{head} -j {MARK_MASQ}"));
        external_ip_rules(r, &head);
    }
    let ext_local = set(ipset::EXTERNAL_IP_LOCAL);
    if !ext_local.entries.is_empty() {
        let head = format!(
            "-A {SERVICES} -m comment --comment {} -m set --match-set {} dst,dst",
            ext_local.quoted_comment(),
            ext_local.name
        );
        external_ip_rules(r, &head);
    }

    r.nat_rules.push(format!(
        "-A {SERVICES} -m addrtype --dst-type LOCAL -j {NODE_PORT}"
    ));
    r.nat_rules
        .push(format!("-A {LOAD_BALANCER} -j {MARK_MASQ}"));
    r.filter_rules
        .push(format!("-A {SOURCE_RANGES_FIREWALL} -j DROP"));
}

/// The drops of a Local external policy without local endpoints, and of load-balancer IPs the
/// node may not reach.
fn no_local_endpoint_rules(b: &Builder<'_>, r: &mut IptablesRules) {
    let node = b.node;
    // externalTrafficPolicy Local without a local endpoint: kube-proxy's IPVS service keeps
    // the cluster endpoints (so pods on this node still reach it) and counts on the reply,
    // from the pod's address, being discarded by the client; with a masquerading CNI such as
    // flannel the reply comes back through this node and the connection works, against the
    // policy. podnet drops new connections from outside the node and its pods here, in the
    // filter table before IPVS (LOCAL_IN) sees them, as the iptables and nftables modes do.
    let exempt = match &node.local_detector {
        LocalDetector::None => String::new(),
        LocalDetector::ClusterCidr(net) => format!(" ! -s {net}"),
        LocalDetector::BridgeInterface(br) => format!(" ! -i {br}"),
        LocalDetector::InterfaceNamePrefix(p) => format!(" ! -i {p}+"),
    };
    for (name, addr, proto) in &b.no_local_endpoints {
        let host = match addr.ip() {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let p = proto.as_str();
        r.filter_rules.push(format!(
            "-A {PROXY_FIREWALL} -m comment --comment \"{name} has no local endpoints\" -m conntrack --ctstate NEW{exempt} -m addrtype ! --src-type LOCAL -d {}/{host} -p {p} -m {p} --dport {} -j DROP",
            addr.ip(),
            addr.port()
        ));
    }
    for (ip, proto, port) in &b.lb_no_node_access {
        r.filter_rules.push(format!(
            "-A {IPVS_OUT_FILTER} -s {ip} -m ipvs --vaddr {ip} --vproto {} --vport {port} -j DROP",
            proto.as_str()
        ));
    }
}

/// `acceptIPVSTraffic`, `KUBE-FORWARD`, the health-check and IPVS filters, and masquerading.
fn accept_and_masquerade_rules(b: &Builder<'_>, r: &mut IptablesRules) {
    let node = b.node;
    let set = |base: &str| -> &IpSet { &b.sets[base] };
    let name = |base: &str| ipset::set_name(base, b.family);
    let mark = node.masquerade_mark.match_text();
    // acceptIPVSTraffic: at the end of KUBE-SERVICES.
    for base in [ipset::CLUSTER_IP, ipset::LOAD_BALANCER] {
        let s = set(base);
        if !s.entries.is_empty() {
            r.nat_rules.push(format!(
                "-A {SERVICES} -m set --match-set {} {} -j ACCEPT",
                s.name,
                s.set_type.dst_match()
            ));
        }
    }
    r.filter_rules.push(format!(
        "-A {FORWARD} -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark} -j ACCEPT"
    ));
    r.filter_rules.push(format!(
        "-A {FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    ));
    let hc = set(ipset::HEALTH_CHECK_NODE_PORT);
    r.filter_rules.push(format!(
        "-A {NODE_PORT} -m comment --comment {} -m set --match-set {} dst -j ACCEPT",
        hc.quoted_comment(),
        hc.name
    ));
    for (base, dir) in [
        (ipset::LOAD_BALANCER, "dst,dst"),
        (ipset::CLUSTER_IP, "dst,dst"),
        (ipset::EXTERNAL_IP, "dst,dst"),
        (ipset::EXTERNAL_IP_LOCAL, "dst,dst"),
        (ipset::HEALTH_CHECK_NODE_PORT, "dst"),
    ] {
        r.filter_rules.push(format!(
            "-A {IPVS_FILTER} -m set --match-set {} {dir} -j RETURN",
            name(base)
        ));
    }
    r.filter_rules.push(format!(
        "-A {IPVS_FILTER} -m conntrack --ctstate NEW -m set --match-set {} dst -j REJECT",
        name(ipset::IPVS_IPS)
    ));

    r.nat_rules.push(format!(
        "-A {POSTROUTING} -m mark ! --mark {mark} -j RETURN"
    ));
    r.nat_rules.push(format!(
        "-A {POSTROUTING} -j MARK --xor-mark {}",
        node.masquerade_mark.text
    ));
    let random = if node.masquerade_random_fully {
        " --random-fully"
    } else {
        ""
    };
    r.nat_rules.push(format!(
        "-A {POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{random}"
    ));
    r.nat_rules.push(format!(
        "-A {MARK_MASQ} -j MARK --or-mark {}",
        node.masquerade_mark.text
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_flags_in_save_form() {
        assert_eq!(
            sched_flag_names(&Scheduler::MaglevHashing, ServiceFlags::SCHED2),
            ["mh-port"]
        );
        assert_eq!(
            sched_flag_names(
                &Scheduler::SourceHashing,
                ServiceFlags::SCHED1 | ServiceFlags::SCHED2
            ),
            ["sh-fallback", "sh-port"]
        );
        assert!(sched_flag_names(&Scheduler::RoundRobin, ServiceFlags::PERSISTENT).is_empty());
    }

    #[test]
    fn jump_rules_match_kube_proxy() {
        let r = JUMP_RULES[0];
        assert_eq!(
            r.args(),
            [
                "-m",
                "comment",
                "--comment",
                "kubernetes service portals",
                "-j",
                "KUBE-SERVICES"
            ]
        );
        assert_eq!(
            JUMP_RULES
                .iter()
                .filter(|j| j.table == Table::Filter)
                .count(),
            6
        );
    }
}

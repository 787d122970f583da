//! kube-proxy's nftables mode: the objects its `syncProxyRules` writes, compiled from the
//! service model.
//!
//! Table `kube-proxy` (family `ip` or `ip6`) holds the base chains, the dispatch maps
//! `service-ips`, `service-nodeports`, `firewall-ips`, `no-endpoint-services`,
//! `no-endpoint-nodeports`, the sets `cluster-ips` and `nodeport-ips`, and per Service port the
//! chains `service-`, `local-`, `external-`, `firewall-` and `endpoint-` named as kube-proxy
//! names them: the first 8 characters of base32(sha256(name)), a dash, and the name
//! (`service-ULMVA6XW-ns1/svc1/tcp/p80`). Load balancing is `numgen random mod N vmap`.
//!
//! Each Service compiles on its own into a [`ServiceObjects`], so a change to one Service
//! recompiles and rewrites only that Service.

use crate::hash::{base32_prefix, sha256};
use crate::kube::plan::{ClusterIpMasquerade, ExternalStep, Policy, PortPlan, Unserved};
use crate::kube::{ClusterState, Endpoint, IpFamily, ServiceKey, ServicePort, ServicePortName};
use crate::kube_proxy::{LocalDetector, NodeSettings};
use crate::nftables::model::{
    BaseChain, Chain, ChainType, Element, Family, Hook, KeyPart, KeyType, Op, Rule, Set,
    Transaction, Verdict,
};
use crate::nftables::rule::{AddrField, AddrItem, Expr, VmapKey};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

/// kube-proxy's table.
pub const TABLE: &str = "kube-proxy";
/// The dispatch chain of service traffic.
pub const SERVICES_CHAIN: &str = "services";
/// ClusterIP, external IP and load-balancer IP dispatch.
pub const SERVICE_IPS_MAP: &str = "service-ips";
/// Node port dispatch.
pub const SERVICE_NODEPORTS_MAP: &str = "service-nodeports";
/// Addresses that accept node ports (when `--nodeport-addresses` is given).
pub const NODEPORT_IPS_SET: &str = "nodeport-ips";
/// Active cluster IPs.
pub const CLUSTER_IPS_SET: &str = "cluster-ips";
/// Drop or reject for Services without endpoints.
pub const NO_ENDPOINT_SERVICES_MAP: &str = "no-endpoint-services";
/// Drop or reject for node ports without endpoints.
pub const NO_ENDPOINT_NODEPORTS_MAP: &str = "no-endpoint-nodeports";
/// Destinations subject to `loadBalancerSourceRanges`.
pub const FIREWALL_IPS_MAP: &str = "firewall-ips";
/// The reject helper chain.
pub const REJECT_CHAIN: &str = "reject-chain";
/// The masquerade-marking chain.
pub const MARK_MASQ_CHAIN: &str = "mark-for-masquerade";
/// The masquerading chain.
pub const MASQUERADING_CHAIN: &str = "masquerading";

const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
const FIREWALL_CHECK: &str = "firewall-check";

/// Settings of the nftables-mode compiler: the node settings every proxy mode shares, and the
/// Service CIDRs (kube-proxy learns them from ServiceCIDR objects) whose unallocated addresses
/// are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftProxySettings {
    /// Node name, addresses, local-traffic detection, masquerade mark, node port addresses.
    pub node: NodeSettings,
    /// Service CIDRs of this family.
    pub service_cidrs: Vec<IpNet>,
}

impl NftProxySettings {
    /// Settings without Service CIDRs.
    pub fn new(node: NodeSettings) -> NftProxySettings {
        NftProxySettings {
            node,
            service_cidrs: Vec::new(),
        }
    }

    /// The nftables family.
    pub fn family(&self) -> Family {
        Family::of(self.node.family)
    }
}

/// kube-proxy's chain name base: 8 characters of base32(sha256(name)), a dash, the name,
/// truncated to 240 bytes.
pub fn hash_and_truncate(name: &str) -> String {
    let mut s = base32_prefix(&sha256(&[name.as_bytes()]), 8);
    s.push('-');
    s.push_str(name);
    if s.len() > 240 {
        let mut cut = 237;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// `ns/svc/proto/port`, hashed: the base of a Service port's chain names.
pub fn service_chain_base(spn: &ServicePortName) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        spn.service.namespace,
        spn.service.name,
        spn.protocol.as_str(),
        spn.port
    ))
}

/// `ns/svc/proto/port__ip/port`, hashed: the base of an endpoint's chain and affinity set.
pub fn endpoint_chain_base(spn: &ServicePortName, ep: &Endpoint) -> String {
    let ip = ep.ip().to_string().replace(':', ".");
    hash_and_truncate(&format!(
        "{}/{}/{}/{}__{}/{}",
        spn.service.namespace,
        spn.service.name,
        spn.protocol.as_str(),
        spn.port,
        ip,
        ep.addr.port()
    ))
}

/// kube-proxy's per-Service chains contain a `/`; its fixed chains do not.
pub fn is_service_chain(name: &str) -> bool {
    name.contains('/')
}

/// Everything one Service (all its ports) adds to the table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceObjects {
    /// Its chains with their rules, in the order kube-proxy creates them.
    pub chains: Vec<(String, Vec<Rule>)>,
    /// Its affinity sets.
    pub sets: Vec<Set>,
    /// Its elements of the shared sets and maps (no duplicates).
    pub elements: Vec<Element>,
}

impl ServiceObjects {
    /// Appends what writing this Service costs: each chain added and flushed, its sets, its
    /// rules; elements are not included (they are diffed separately).
    pub fn write_chains(&self, tx: &mut Transaction) {
        for (c, _) in &self.chains {
            tx.push(Op::AddChain(Chain::regular(c.clone())));
            tx.push(Op::FlushChain(c.clone()));
        }
        for s in &self.sets {
            tx.push(Op::AddSet(s.clone()));
        }
        for (_, rules) in &self.chains {
            for r in rules {
                tx.push(Op::AddRule(r.clone()));
            }
        }
    }
}

/// The whole rule set: the fixed objects and every Service's objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    /// The family.
    pub family: Family,
    /// The fixed part (kube-proxy's `setupNFTables`), including the flushes of the shared sets
    /// and maps.
    pub base: Vec<Op>,
    /// Each Service's objects.
    pub services: BTreeMap<ServiceKey, Arc<ServiceObjects>>,
}

impl Compiled {
    /// A transaction that writes everything: the fixed part, then every Service.
    pub fn full_transaction(&self) -> Transaction {
        let mut tx = Transaction::new(self.family, TABLE);
        tx.ops.extend(self.base.iter().cloned());
        let mut seen = BTreeSet::new();
        for s in self.services.values() {
            s.write_chains(&mut tx);
        }
        for s in self.services.values() {
            for e in &s.elements {
                if seen.insert((e.set.as_str(), &e.key)) {
                    tx.push(Op::AddElement(e.clone()));
                }
            }
        }
        tx
    }
}

fn masq_mark(settings: &NodeSettings) -> (u32, String) {
    (
        settings.masquerade_mark.value,
        settings.masquerade_mark.text.clone(),
    )
}

/// `ip saddr != CIDR` (not local) or `ip saddr CIDR` (local), as kube-proxy's local traffic
/// detector writes them; `None` when detection is off.
fn local_match(settings: &NodeSettings, local: bool) -> Option<Expr> {
    match &settings.local_detector {
        LocalDetector::None => None,
        LocalDetector::ClusterCidr(net) => (IpFamily::of(&net.addr()) == settings.family)
            .then_some(Expr::Addr {
                field: AddrField::Src,
                neg: !local,
                item: AddrItem::Net(*net),
            }),
        LocalDetector::BridgeInterface(name) => Some(Expr::IifName {
            neg: !local,
            name: name.clone(),
        }),
        LocalDetector::InterfaceNamePrefix(p) => Some(Expr::IifName {
            neg: !local,
            name: format!("{p}*"),
        }),
    }
}

fn loopback_net(family: Family) -> AddrItem {
    match family {
        Family::Ip => AddrItem::Net("127.0.0.0/8".parse().expect("valid")),
        Family::Ip6 => AddrItem::Ip("::1".parse().expect("valid")),
    }
}

fn jump(chain: &str) -> Expr {
    Expr::Verdict(Verdict::Jump(chain.to_owned()))
}

fn goto(chain: &str) -> Expr {
    Expr::Verdict(Verdict::Goto(chain.to_owned()))
}

fn addr(field: AddrField, neg: bool, ip: IpAddr) -> Expr {
    Expr::Addr {
        field,
        neg,
        item: AddrItem::Ip(ip),
    }
}

/// The fixed objects (kube-proxy's `setupNFTables`). `recreate_base_chains` adds and deletes
/// each base chain first, as kube-proxy does on its first sync, so base chains with other
/// properties are replaced.
pub fn base_ops(settings: &NftProxySettings, recreate_base_chains: bool) -> Vec<Op> {
    let mut ops = vec![Op::AddTable {
        comment: Some("rules for kube-proxy".into()),
    }];
    base_chains(&mut ops, recreate_base_chains);
    masquerade_rules(&mut ops, &settings.node);
    cluster_ip_checks(&mut ops, settings);
    dispatch_maps(&mut ops, settings);
    ops
}

/// The base chains (re-created first when asked), the regular chains they jump to, and the
/// jumps.
fn base_chains(ops: &mut Vec<Op>, recreate_base_chains: bool) {
    let base = |name: &str, kind: ChainType, hook: Hook, priority: i32| Chain {
        name: name.into(),
        base: Some(BaseChain {
            kind,
            hook,
            priority,
        }),
        comment: None,
    };
    let base_chains = [
        base(
            "filter-prerouting-pre-dnat",
            ChainType::Filter,
            Hook::Prerouting,
            -110,
        ),
        base(
            "filter-output-pre-dnat",
            ChainType::Filter,
            Hook::Output,
            -110,
        ),
        base("filter-forward", ChainType::Filter, Hook::Forward, 0),
        base("filter-input", ChainType::Filter, Hook::Input, 0),
        base("filter-output", ChainType::Filter, Hook::Output, 0),
        base("nat-prerouting", ChainType::Nat, Hook::Prerouting, -100),
        base("nat-output", ChainType::Nat, Hook::Output, -100),
        base("nat-postrouting", ChainType::Nat, Hook::Postrouting, 100),
    ];
    if recreate_base_chains {
        for c in &base_chains {
            ops.push(Op::AddChain(Chain::regular(c.name.clone())));
            ops.push(Op::DeleteChain(c.name.clone()));
        }
    }
    for c in &base_chains {
        ops.push(Op::AddChain(c.clone()));
        ops.push(Op::FlushChain(c.name.clone()));
    }
    let mut created: BTreeSet<&str> = BTreeSet::new();
    let mut ensure = |ops: &mut Vec<Op>, c: &'static str| {
        if created.insert(c) {
            ops.push(Op::AddChain(Chain::regular(c)));
            ops.push(Op::FlushChain(c.into()));
        }
    };
    let jumps: [(&'static str, &str, bool); 11] = [
        (NODEPORT_ENDPOINTS_CHECK, "filter-input", true),
        (SERVICE_ENDPOINTS_CHECK, "filter-input", true),
        (SERVICE_ENDPOINTS_CHECK, "filter-forward", true),
        (SERVICE_ENDPOINTS_CHECK, "filter-output", true),
        (FIREWALL_CHECK, "filter-prerouting-pre-dnat", true),
        (FIREWALL_CHECK, "filter-output-pre-dnat", true),
        (SERVICES_CHAIN, "nat-output", false),
        (SERVICES_CHAIN, "nat-prerouting", false),
        (MASQUERADING_CHAIN, "nat-postrouting", false),
        (CLUSTER_IPS_CHECK, "filter-forward", true),
        (CLUSTER_IPS_CHECK, "filter-output", true),
    ];
    for (dst, src, ct_new) in jumps {
        ensure(ops, dst);
        let mut exprs = Vec::new();
        if ct_new {
            exprs.push(Expr::CtStateNew);
        }
        exprs.push(jump(dst));
        ops.push(Op::AddRule(Rule::new(src, exprs)));
    }
    for c in [
        SERVICES_CHAIN,
        CLUSTER_IPS_CHECK,
        MASQUERADING_CHAIN,
        MARK_MASQ_CHAIN,
    ] {
        ensure(ops, c);
    }
}

/// `mark-for-masquerade` and `masquerading`.
fn masquerade_rules(ops: &mut Vec<Op>, node: &NodeSettings) {
    let (mark, text) = masq_mark(node);
    ops.push(Op::AddRule(Rule::new(
        MARK_MASQ_CHAIN,
        vec![Expr::MarkSetOr {
            mark,
            text: text.clone(),
        }],
    )));
    ops.push(Op::AddRule(Rule::new(
        MASQUERADING_CHAIN,
        vec![
            Expr::MarkAndZero {
                mark,
                text: text.clone(),
            },
            Expr::Verdict(Verdict::Return),
        ],
    )));
    ops.push(Op::AddRule(Rule::new(
        MASQUERADING_CHAIN,
        vec![Expr::MarkSetXor { mark, text }],
    )));
    ops.push(Op::AddRule(Rule::new(
        MASQUERADING_CHAIN,
        vec![Expr::Masquerade { fully_random: true }],
    )));
}

/// A set of addresses of `family`.
fn addr_set(family: Family, name: &str, comment: &str) -> Set {
    Set {
        name: name.into(),
        key: vec![family.addr_type()],
        verdict_map: false,
        data: Vec::new(),
        dynamic: false,
        timeout: None,
        comment: Some(comment.into()),
    }
}

/// A verdict map keyed by protocol and port, after an address of `family` when `with_addr`.
fn vmap(family: Family, name: &str, with_addr: bool, comment: &str) -> Set {
    Set {
        name: name.into(),
        key: if with_addr {
            vec![family.addr_type(), KeyType::InetProto, KeyType::InetService]
        } else {
            vec![KeyType::InetProto, KeyType::InetService]
        },
        verdict_map: true,
        data: Vec::new(),
        dynamic: false,
        timeout: None,
        comment: Some(comment.into()),
    }
}

/// `cluster-ips` and `cluster-ips-check`: reject invalid ports of cluster IPs, drop
/// unallocated addresses of the Service CIDRs.
fn cluster_ip_checks(ops: &mut Vec<Op>, settings: &NftProxySettings) {
    let node = &settings.node;
    let family = settings.family();
    ops.push(Op::AddSet(addr_set(
        family,
        CLUSTER_IPS_SET,
        "Active ClusterIPs",
    )));
    ops.push(Op::AddRule(
        Rule::new(
            CLUSTER_IPS_CHECK,
            vec![
                Expr::AddrInSet {
                    field: AddrField::Dst,
                    set: CLUSTER_IPS_SET.into(),
                },
                Expr::Reject,
            ],
        )
        .with_comment("Reject traffic to invalid ports of ClusterIPs"),
    ));
    let cidrs: Vec<AddrItem> = settings
        .service_cidrs
        .iter()
        .filter(|n| IpFamily::of(&n.addr()) == node.family)
        .map(|n| AddrItem::Net(*n))
        .collect();
    if !cidrs.is_empty() {
        ops.push(Op::AddRule(
            Rule::new(
                CLUSTER_IPS_CHECK,
                vec![
                    Expr::AddrSet {
                        field: AddrField::Dst,
                        neg: false,
                        items: cidrs,
                        spaced: false,
                    },
                    Expr::Verdict(Verdict::Drop),
                ],
            )
            .with_comment("Drop traffic to unallocated ClusterIPs"),
        ));
    }
}

/// `nodeport-ips`, the no-endpoint, firewall and service dispatch maps and the rules that
/// consult them, and the flushes of every shared set and map.
fn dispatch_maps(ops: &mut Vec<Op>, settings: &NftProxySettings) {
    let node = &settings.node;
    let family = settings.family();
    ops.push(Op::AddSet(addr_set(
        family,
        NODEPORT_IPS_SET,
        "IPs that accept NodePort traffic",
    )));
    let match_all = node.nodeports_match_all();
    if match_all {
        ops.push(Op::DeleteSet(NODEPORT_IPS_SET.into(), false));
    } else {
        ops.push(Op::FlushSet(NODEPORT_IPS_SET.into(), false));
        for ip in node.nodeport_ips() {
            if ip.is_loopback() {
                continue; // kube-proxy's nftables mode has no localhost node ports
            }
            ops.push(Op::AddElement(Element {
                set: NODEPORT_IPS_SET.into(),
                key: vec![KeyPart::Addr(ip)],
                value: None,
                data: Vec::new(),
                comment: None,
            }));
        }
    }
    ops.push(Op::AddSet(vmap(
        family,
        NO_ENDPOINT_SERVICES_MAP,
        true,
        "vmap to drop or reject packets to services with no endpoints",
    )));
    ops.push(Op::AddSet(vmap(
        family,
        NO_ENDPOINT_NODEPORTS_MAP,
        false,
        "vmap to drop or reject packets to service nodeports with no endpoints",
    )));
    ops.push(Op::AddChain(Chain {
        name: REJECT_CHAIN.into(),
        base: None,
        comment: Some("helper for @no-endpoint-services / @no-endpoint-nodeports".into()),
    }));
    ops.push(Op::FlushChain(REJECT_CHAIN.into()));
    ops.push(Op::AddRule(Rule::new(REJECT_CHAIN, vec![Expr::Reject])));
    ops.push(Op::AddRule(Rule::new(
        SERVICE_ENDPOINTS_CHECK,
        vec![Expr::Vmap {
            key: VmapKey::DaddrProtoPort,
            map: NO_ENDPOINT_SERVICES_MAP.into(),
        }],
    )));
    let nodeport_dst = |exprs: &mut Vec<Expr>| {
        if match_all {
            exprs.push(Expr::Addr {
                field: AddrField::Dst,
                neg: true,
                item: loopback_net(family),
            });
        } else {
            exprs.push(Expr::AddrInSet {
                field: AddrField::Dst,
                set: NODEPORT_IPS_SET.into(),
            });
        }
    };
    let mut exprs = Vec::new();
    nodeport_dst(&mut exprs);
    exprs.push(Expr::Vmap {
        key: VmapKey::ProtoPort,
        map: NO_ENDPOINT_NODEPORTS_MAP.into(),
    });
    ops.push(Op::AddRule(Rule::new(NODEPORT_ENDPOINTS_CHECK, exprs)));
    ops.push(Op::AddSet(vmap(
        family,
        FIREWALL_IPS_MAP,
        true,
        "destinations that are subject to LoadBalancerSourceRanges",
    )));
    ops.push(Op::AddRule(Rule::new(
        FIREWALL_CHECK,
        vec![Expr::Vmap {
            key: VmapKey::DaddrProtoPort,
            map: FIREWALL_IPS_MAP.into(),
        }],
    )));
    ops.push(Op::AddSet(vmap(
        family,
        SERVICE_IPS_MAP,
        true,
        "ClusterIP, ExternalIP and LoadBalancer IP traffic",
    )));
    ops.push(Op::AddSet(vmap(
        family,
        SERVICE_NODEPORTS_MAP,
        false,
        "NodePort traffic",
    )));
    ops.push(Op::AddRule(Rule::new(
        SERVICES_CHAIN,
        vec![Expr::Vmap {
            key: VmapKey::DaddrProtoPort,
            map: SERVICE_IPS_MAP.into(),
        }],
    )));
    let mut exprs = Vec::new();
    if match_all {
        exprs.push(Expr::FibLocal(AddrField::Dst));
    }
    nodeport_dst(&mut exprs);
    exprs.push(Expr::Vmap {
        key: VmapKey::ProtoPort,
        map: SERVICE_NODEPORTS_MAP.into(),
    });
    ops.push(Op::AddRule(Rule::new(SERVICES_CHAIN, exprs)));
    for (name, map) in [
        (CLUSTER_IPS_SET, false),
        (SERVICE_IPS_MAP, true),
        (FIREWALL_IPS_MAP, true),
        (NO_ENDPOINT_SERVICES_MAP, true),
        (NO_ENDPOINT_NODEPORTS_MAP, true),
        (SERVICE_NODEPORTS_MAP, true),
    ] {
        ops.push(Op::FlushSet(name.into(), map));
    }
}

/// Accumulates a Service's objects: chains in creation order with their rules.
#[derive(Default)]
pub(crate) struct Builder {
    pub(crate) objs: ServiceObjects,
    index: BTreeMap<String, usize>,
    seen_elements: BTreeSet<(String, Vec<KeyPart>)>,
}

impl Builder {
    pub(crate) fn ensure(&mut self, chain: &str) {
        if !self.index.contains_key(chain) {
            self.index.insert(chain.to_owned(), self.objs.chains.len());
            self.objs.chains.push((chain.to_owned(), Vec::new()));
        }
    }

    pub(crate) fn rule(&mut self, chain: &str, exprs: Vec<Expr>, comment: Option<&str>) {
        self.ensure(chain);
        let i = self.index[chain];
        let mut r = Rule::new(chain, exprs);
        r.comment = comment.map(str::to_owned);
        self.objs.chains[i].1.push(r);
    }

    /// An element of a data map (or a set, with no data), once per key.
    pub(crate) fn data_element(&mut self, set: &str, key: Vec<KeyPart>, data: Vec<KeyPart>) {
        if self.seen_elements.insert((set.to_owned(), key.clone())) {
            self.objs.elements.push(Element {
                set: set.to_owned(),
                key,
                value: None,
                data,
                comment: None,
            });
        }
    }

    fn element(
        &mut self,
        set: &str,
        key: Vec<KeyPart>,
        value: Option<Verdict>,
        comment: Option<&str>,
    ) {
        if self.seen_elements.insert((set.to_owned(), key.clone())) {
            self.objs.elements.push(Element {
                set: set.to_owned(),
                key,
                value,
                data: Vec::new(),
                comment: comment.map(str::to_owned),
            });
        }
    }
}

/// Compiles one Service: all its `ports` with their endpoints.
pub fn compile_service<'a>(
    ports: impl IntoIterator<Item = (&'a ServicePort, &'a [Endpoint])>,
    settings: &NftProxySettings,
) -> ServiceObjects {
    let mut b = Builder::default();
    for (svc, endpoints) in ports {
        let plan = PortPlan::new(svc, endpoints, &settings.node);
        let names = PortNames::new(&plan);
        names.ensure_chains(&mut b, &plan);
        dispatch_elements(&mut b, &plan, &names);
        internal_chain(&mut b, &plan, &names, &settings.node);
        external_chain(&mut b, &plan, &names, &settings.node);
        firewall_chain(&mut b, &plan, &names);
        endpoint_chains(&mut b, &plan, &names, settings.family());
    }
    b.objs
}

/// The chain names of one service port.
pub(crate) struct PortNames<'p, 'a> {
    plan: &'p PortPlan<'a>,
    pub(crate) cluster: String,
    pub(crate) local: String,
    pub(crate) external: String,
    pub(crate) firewall: String,
}

impl<'p, 'a> PortNames<'p, 'a> {
    pub(crate) fn new(plan: &'p PortPlan<'a>) -> Self {
        let base = service_chain_base(&plan.port.name);
        PortNames {
            plan,
            cluster: format!("service-{base}"),
            local: format!("local-{base}"),
            external: format!("external-{base}"),
            firewall: format!("firewall-{base}"),
        }
    }

    fn policy(&self, policy: Policy) -> &str {
        match policy {
            Policy::Cluster => &self.cluster,
            Policy::Local => &self.local,
        }
    }

    /// An endpoint's chain and affinity set.
    fn endpoint(&self, ep: &Endpoint) -> (String, String) {
        let b = endpoint_chain_base(&self.plan.port.name, ep);
        (format!("endpoint-{b}"), format!("affinity-{b}"))
    }

    /// Creates the port's chains in kube-proxy's order.
    fn ensure_chains(&self, b: &mut Builder, plan: &PortPlan<'_>) {
        for ep in &plan.reachable {
            b.ensure(&self.endpoint(ep).0);
        }
        for (used, chain) in [
            (plan.uses_cluster_chain(), &self.cluster),
            (plan.uses_local_chain(), &self.local),
            (plan.uses_external_chain(), &self.external),
            (plan.firewall.is_some(), &self.firewall),
        ] {
            if used {
                b.ensure(chain);
            }
        }
    }
}

fn unserved_verdict(why: Unserved) -> Verdict {
    match why {
        Unserved::Reject => Verdict::Goto(REJECT_CHAIN.into()),
        Unserved::Drop => Verdict::Drop,
    }
}

/// The port's elements of `cluster-ips`, `service-ips`, `no-endpoint-services`,
/// `firewall-ips`, `service-nodeports` and `no-endpoint-nodeports`.
pub(crate) fn dispatch_elements(b: &mut Builder, plan: &PortPlan<'_>, n: &PortNames<'_, '_>) {
    let svc = plan.port;
    let proto = svc.protocol();
    let name = plan.name.as_str();
    let key3 = |ip: IpAddr| {
        vec![
            KeyPart::Addr(ip),
            KeyPart::Proto(proto),
            KeyPart::Port(svc.port),
        ]
    };
    let goto_external = || Some(Verdict::Goto(n.external.clone()));
    let external_unserved = plan.external.unserved.map(unserved_verdict);
    b.element(
        CLUSTER_IPS_SET,
        vec![KeyPart::Addr(svc.cluster_ip)],
        None,
        None,
    );
    match plan.internal.unserved {
        None => b.element(
            SERVICE_IPS_MAP,
            key3(svc.cluster_ip),
            Some(Verdict::Goto(n.policy(plan.internal.policy).to_owned())),
            None,
        ),
        Some(why) => b.element(
            NO_ENDPOINT_SERVICES_MAP,
            key3(svc.cluster_ip),
            Some(unserved_verdict(why)),
            Some(name),
        ),
    }
    for ip in &svc.external_ips {
        if plan.has_endpoints {
            b.element(SERVICE_IPS_MAP, key3(*ip), goto_external(), None);
        }
        if let Some(v) = &external_unserved {
            b.element(
                NO_ENDPOINT_SERVICES_MAP,
                key3(*ip),
                Some(v.clone()),
                Some(name),
            );
        }
    }
    for ip in &svc.load_balancer_vips {
        if plan.has_endpoints {
            b.element(SERVICE_IPS_MAP, key3(*ip), goto_external(), None);
        }
        if plan.firewall.is_some() {
            let to_fw = Some(Verdict::Goto(n.firewall.clone()));
            b.element(FIREWALL_IPS_MAP, key3(*ip), to_fw, None);
        }
    }
    if let Some(v) = &external_unserved {
        for ip in &svc.load_balancer_vips {
            b.element(
                NO_ENDPOINT_SERVICES_MAP,
                key3(*ip),
                Some(v.clone()),
                Some(name),
            );
        }
    }
    if let Some(np) = svc.node_port {
        let key = vec![KeyPart::Proto(proto), KeyPart::Port(np)];
        if plan.has_endpoints {
            b.element(SERVICE_NODEPORTS_MAP, key.clone(), goto_external(), None);
        }
        if let Some(v) = external_unserved {
            b.element(NO_ENDPOINT_NODEPORTS_MAP, key, Some(v), Some(name));
        }
    }
}

/// Internal traffic: masquerade off-cluster sources (or everything).
pub(crate) fn internal_chain(
    b: &mut Builder,
    plan: &PortPlan<'_>,
    n: &PortNames<'_, '_>,
    node: &NodeSettings,
) {
    let chain = n.policy(plan.internal.policy);
    let dst = addr(AddrField::Dst, false, plan.port.cluster_ip);
    match plan.cluster_ip_masquerade {
        None => {}
        Some(ClusterIpMasquerade::All) => b.rule(chain, vec![dst, jump(MARK_MASQ_CHAIN)], None),
        Some(ClusterIpMasquerade::OffCluster) => {
            if let Some(not_local) = local_match(node, false) {
                b.rule(chain, vec![dst, not_local, jump(MARK_MASQ_CHAIN)], None);
            }
        }
    }
}

/// `external-`: its steps, in order.
pub(crate) fn external_chain(
    b: &mut Builder,
    plan: &PortPlan<'_>,
    n: &PortNames<'_, '_>,
    node: &NodeSettings,
) {
    let from_node = || Expr::FibLocal(AddrField::Src);
    for step in &plan.external_chain {
        let (exprs, comment) = match step {
            ExternalStep::Masquerade => (vec![jump(MARK_MASQ_CHAIN)], None),
            ExternalStep::PodsToCluster => {
                let Some(local) = local_match(node, true) else {
                    continue;
                };
                (
                    vec![local, goto(&n.cluster)],
                    Some("short-circuit pod traffic"),
                )
            }
            ExternalStep::MasqueradeFromNode => (
                vec![from_node(), jump(MARK_MASQ_CHAIN)],
                Some("masquerade local traffic"),
            ),
            ExternalStep::FromNodeToCluster => (
                vec![from_node(), goto(&n.cluster)],
                Some("short-circuit local traffic"),
            ),
            ExternalStep::ToPolicy => (vec![goto(n.policy(plan.external.policy))], None),
        };
        b.rule(&n.external, exprs, comment);
    }
}

/// `firewall-`: drop sources outside `loadBalancerSourceRanges`.
pub(crate) fn firewall_chain(b: &mut Builder, plan: &PortPlan<'_>, n: &PortNames<'_, '_>) {
    let Some(fw) = &plan.firewall else {
        return;
    };
    let mut items: Vec<AddrItem> = fw.sources.iter().map(|r| AddrItem::Net(*r)).collect();
    if fw.allow_from_node {
        let vips = &plan.port.load_balancer_vips;
        items.extend(vips.iter().map(|ip| AddrItem::Ip(*ip)));
    }
    b.rule(
        &n.firewall,
        vec![
            Expr::AddrSet {
                field: AddrField::Src,
                neg: true,
                items,
                spaced: true,
            },
            Expr::Verdict(Verdict::Drop),
        ],
        None,
    );
}

/// Affinity sets, the policy chains' load balancing, and one chain per reachable endpoint.
fn endpoint_chains(b: &mut Builder, plan: &PortPlan<'_>, n: &PortNames<'_, '_>, family: Family) {
    if let Some(timeout) = plan.affinity {
        for ep in &plan.reachable {
            b.objs.sets.push(Set {
                name: n.endpoint(ep).1,
                key: vec![family.addr_type()],
                verdict_map: false,
                data: Vec::new(),
                dynamic: true,
                timeout: Some(timeout),
                comment: None,
            });
        }
    }
    for (used, chain, eps) in [
        (plan.uses_cluster_chain(), &n.cluster, &plan.cluster),
        (plan.uses_local_chain(), &n.local, &plan.local),
    ] {
        if !used {
            continue;
        }
        if plan.affinity.is_some() {
            for ep in eps {
                let (ep_chain, aff) = n.endpoint(ep);
                let from_affine = Expr::AddrInSet {
                    field: AddrField::Src,
                    set: aff,
                };
                b.rule(chain, vec![from_affine, goto(&ep_chain)], None);
            }
        }
        let targets = eps.iter().map(|ep| n.endpoint(ep).0).collect();
        b.rule(chain, vec![Expr::Numgen { targets }], None);
    }
    let proto = plan.port.protocol();
    for ep in &plan.reachable {
        let (ep_chain, aff) = n.endpoint(ep);
        let hairpin = addr(AddrField::Src, false, ep.ip());
        b.rule(&ep_chain, vec![hairpin, jump(MARK_MASQ_CHAIN)], None);
        if plan.affinity.is_some() {
            let update = Expr::Update {
                set: aff,
                field: AddrField::Src,
            };
            b.rule(&ep_chain, vec![update], None);
        }
        b.rule(
            &ep_chain,
            vec![Expr::L4Proto(proto), Expr::Dnat(ep.addr)],
            None,
        );
    }
}

/// The ports of Service `key` in `state`, with their endpoints.
pub fn ports_of<'a>(
    state: &'a ClusterState,
    key: &ServiceKey,
) -> Vec<(&'a ServicePort, &'a [Endpoint])> {
    let start = ServicePortName {
        service: key.clone(),
        port: String::new(),
        protocol: crate::iptables::Protocol::Tcp,
    };
    state
        .services
        .range(start..)
        .take_while(|(spn, _)| &spn.service == key)
        .map(|(spn, svc)| (svc, state.endpoints_of(spn)))
        .collect()
}

/// Compiles a whole state (every Service) with the fixed objects.
pub fn compile(state: &ClusterState, settings: &NftProxySettings) -> Compiled {
    let keys: BTreeSet<&ServiceKey> = state.services.keys().map(|k| &k.service).collect();
    let services = keys
        .into_iter()
        .map(|k| {
            (
                k.clone(),
                Arc::new(compile_service(ports_of(state, k), settings)),
            )
        })
        .collect();
    Compiled {
        family: settings.family(),
        base: base_ops(settings, false),
        services,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_match_kube_proxy() {
        assert_eq!(
            hash_and_truncate("ns1/svc1/tcp/p80"),
            "ULMVA6XW-ns1/svc1/tcp/p80"
        );
        assert_eq!(
            hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80"),
            "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
        let long = "x".repeat(300);
        let h = hash_and_truncate(&long);
        assert_eq!(h.len(), 240);
        assert!(h.ends_with("..."));
    }
}

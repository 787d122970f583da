//! The kube-proxy iptables-mode compiler: services and node settings in, the `filter` and `nat`
//! rules kube-proxy's iptables proxier writes out.
//!
//! The structure follows kube-proxy's `syncProxyRules`: top-level chains (KUBE-SERVICES,
//! KUBE-NODEPORTS, KUBE-EXTERNAL-SERVICES, KUBE-FORWARD, KUBE-PROXY-FIREWALL, KUBE-FIREWALL,
//! KUBE-POSTROUTING, KUBE-MARK-MASQ) are always written whole; each Service's own chains
//! (KUBE-SVC-, KUBE-SVL-, KUBE-EXT-, KUBE-FW-, KUBE-SEP-) are kept per Service so a partial sync
//! can write only the Services that changed.

mod port;

use super::settings::NodeSettings;
use crate::hash::chain_hash;
use crate::iptables::{
    AddrType, CtState, Line, Match, Protocol, Rule, Ruleset, Table, TableRules, Target,
};
use crate::kube::{
    ClusterState, Endpoint, IpFamily, PortPlan, ServiceKey, ServicePort, ServicePortName,
};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// `KUBE-SERVICES`.
pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
/// `KUBE-EXTERNAL-SERVICES` (filter).
pub const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
/// `KUBE-NODEPORTS`.
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
/// `KUBE-POSTROUTING` (nat).
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
/// `KUBE-MARK-MASQ` (nat).
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
/// `KUBE-FORWARD` (filter).
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
/// `KUBE-PROXY-FIREWALL` (filter).
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
/// `KUBE-FIREWALL` (filter; kubelet's anti-martian chain).
pub const KUBE_FIREWALL: &str = "KUBE-FIREWALL";

/// The prefixes of per-Service chains, which a sync may delete when unused.
pub const SERVICE_CHAIN_PREFIXES: [&str; 5] = [
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-SEP-",
];

/// Above this many endpoints kube-proxy drops per-endpoint comments ("large cluster mode").
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;

/// The nfacct counter for INVALID packets dropped in KUBE-FORWARD.
pub const NFACCT_CT_INVALID: &str = "ct_state_invalid_dropped_pkts";
/// The nfacct counter for node ports accepted on localhost.
pub const NFACCT_LOCALHOST_NODEPORTS: &str = "localhost_nps_accepted_pkts";

/// Whether `chain` is a per-Service chain (KUBE-SVC-, KUBE-SVL-, KUBE-EXT-, KUBE-FW-, KUBE-SEP-).
pub fn is_service_chain(chain: &str) -> bool {
    SERVICE_CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p))
}

fn port_hash(spn: &str, proto: Protocol) -> String {
    chain_hash(&[spn, proto.as_str()])
}

/// `KUBE-SVC-<hash>`: the Cluster-policy chain of a service port.
pub fn service_chain(spn: &str, proto: Protocol) -> String {
    format!("KUBE-SVC-{}", port_hash(spn, proto))
}

/// `KUBE-SEP-<hash>`: the chain of one endpoint of a service port (`endpoint` is `ip:port`).
pub fn endpoint_chain(spn: &str, proto: Protocol, endpoint: &str) -> String {
    format!("KUBE-SEP-{}", chain_hash(&[spn, proto.as_str(), endpoint]))
}

/// The jump rules kube-proxy keeps in the built-in chains: (table, built-in chain, extra
/// matches, comment, target chain). They are installed with `iptables -C`/`-I`, not by
/// `iptables-restore`, since restoring a built-in chain would flush other users' rules.
pub fn jump_rules() -> Vec<(Table, &'static str, Rule)> {
    let new = || Match::CtState {
        states: vec![CtState::New],
        negate: false,
    };
    let mk =
        |chain: &'static str, extra: Option<Match>, comment: &'static str, dst: &'static str| {
            let mut r = Rule::new(chain);
            if let Some(m) = extra {
                r.matches.push(m);
            }
            if !comment.is_empty() {
                r.matches.push(Match::comment(comment));
            }
            r.jump(dst)
        };
    vec![
        (
            Table::Filter,
            "INPUT",
            mk(
                "INPUT",
                Some(new()),
                "kubernetes externally-visible service portals",
                KUBE_EXTERNAL_SERVICES,
            ),
        ),
        (
            Table::Filter,
            "FORWARD",
            mk(
                "FORWARD",
                Some(new()),
                "kubernetes externally-visible service portals",
                KUBE_EXTERNAL_SERVICES,
            ),
        ),
        (
            Table::Filter,
            "INPUT",
            mk(
                "INPUT",
                None,
                "kubernetes health check service ports",
                KUBE_NODEPORTS,
            ),
        ),
        (
            Table::Filter,
            "FORWARD",
            mk(
                "FORWARD",
                Some(new()),
                "kubernetes service portals",
                KUBE_SERVICES,
            ),
        ),
        (
            Table::Filter,
            "OUTPUT",
            mk(
                "OUTPUT",
                Some(new()),
                "kubernetes service portals",
                KUBE_SERVICES,
            ),
        ),
        (
            Table::Filter,
            "FORWARD",
            mk("FORWARD", None, "kubernetes forwarding rules", KUBE_FORWARD),
        ),
        (
            Table::Filter,
            "INPUT",
            mk(
                "INPUT",
                Some(new()),
                "kubernetes load balancer firewall",
                KUBE_PROXY_FIREWALL,
            ),
        ),
        (
            Table::Filter,
            "OUTPUT",
            mk(
                "OUTPUT",
                Some(new()),
                "kubernetes load balancer firewall",
                KUBE_PROXY_FIREWALL,
            ),
        ),
        (
            Table::Filter,
            "FORWARD",
            mk(
                "FORWARD",
                Some(new()),
                "kubernetes load balancer firewall",
                KUBE_PROXY_FIREWALL,
            ),
        ),
        (
            Table::Nat,
            "OUTPUT",
            mk("OUTPUT", None, "kubernetes service portals", KUBE_SERVICES),
        ),
        (
            Table::Nat,
            "PREROUTING",
            mk(
                "PREROUTING",
                None,
                "kubernetes service portals",
                KUBE_SERVICES,
            ),
        ),
        (
            Table::Nat,
            "POSTROUTING",
            mk(
                "POSTROUTING",
                None,
                "kubernetes postrouting rules",
                KUBE_POSTROUTING,
            ),
        ),
        (Table::Filter, "INPUT", mk("INPUT", None, "", KUBE_FIREWALL)),
        (
            Table::Filter,
            "OUTPUT",
            mk("OUTPUT", None, "", KUBE_FIREWALL),
        ),
    ]
}

/// The nat chains and rules that belong to one Service (all its ports).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceChains {
    /// Chain names, in declaration order.
    pub chains: Vec<Arc<str>>,
    /// The chains' rules.
    pub rules: Vec<Rule>,
}

/// Everything one Service contributes: rules in the top-level chains of both tables, and its
/// own nat chains.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceOutput {
    /// Rules in filter's top-level chains (REJECT/DROP for missing endpoints, firewall, health
    /// checks).
    pub filter: Vec<Rule>,
    /// Rules in nat's KUBE-SERVICES and KUBE-NODEPORTS.
    pub nat: Vec<Rule>,
    /// The Service's own chains.
    pub chains: Arc<ServiceChains>,
}

/// The compiled rules of one sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    /// The whole filter table block.
    pub filter: TableRules,
    /// The nat table's top-level chains and their rules.
    pub nat_top: TableRules,
    /// Each Service's own nat chains (only Services that have some).
    pub services: BTreeMap<ServiceKey, Arc<ServiceChains>>,
    /// More than [`LARGE_CLUSTER_ENDPOINTS`] endpoints: comments were left out.
    pub large_cluster: bool,
}

impl Compiled {
    /// Every per-Service nat chain name.
    pub fn service_chain_names(&self) -> BTreeSet<&str> {
        self.services
            .values()
            .flat_map(|s| s.chains.iter().map(|c| &**c))
            .collect()
    }

    /// Renders the nat table with the chains of the Services `include` selects, and `-X`
    /// lines for `delete` (which are declared, so flushed, first), appending to `out`.
    pub fn render_nat_into(
        &self,
        out: &mut String,
        include: impl Fn(&ServiceKey) -> bool,
        delete: &[String],
    ) {
        self.render_nat_selected(out, |_| true, include, delete);
    }

    /// Like [`Compiled::render_nat_into`], also choosing which top-level chains to write.
    pub fn render_nat_selected(
        &self,
        out: &mut String,
        top: impl Fn(&str) -> bool,
        include: impl Fn(&ServiceKey) -> bool,
        delete: &[String],
    ) {
        out.push_str("*nat\n");
        let selected: Vec<&ServiceChains> = self
            .services
            .iter()
            .filter(|(k, _)| include(k))
            .map(|(_, v)| v.as_ref())
            .collect();
        let decls = self
            .nat_top
            .chains
            .iter()
            .map(|c| c.name.as_str())
            .filter(|c| top(c))
            .chain(selected.iter().flat_map(|s| s.chains.iter().map(|c| &**c)))
            .chain(delete.iter().map(String::as_str));
        for c in decls {
            out.push(':');
            out.push_str(c);
            out.push_str(" - [0:0]\n");
        }
        let rules = self
            .nat_top
            .lines
            .iter()
            .filter_map(|l| match l {
                Line::Append(r) if top(&r.chain) => Some(r),
                _ => None,
            })
            .chain(selected.iter().flat_map(|s| s.rules.iter()));
        for r in rules {
            r.render_into(out);
            out.push('\n');
        }
        for c in delete {
            out.push_str("-X ");
            out.push_str(c);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }

    /// The nat table as a model (see [`Compiled::render_nat_into`] for the fast path).
    pub fn nat_table(
        &self,
        include: impl Fn(&ServiceKey) -> bool,
        delete: &[String],
    ) -> TableRules {
        let mut text = String::new();
        self.render_nat_into(&mut text, include, delete);
        crate::iptables::parse_save(&text)
            .ok()
            .and_then(|mut t| t.pop())
            .unwrap_or_else(|| TableRules::new(Table::Nat))
    }

    /// Renders the whole rule set: filter, then nat with every Service, deleting `delete`.
    pub fn render_full(&self, delete: &[String]) -> String {
        let rules: usize = self.services.values().map(|s| s.rules.len()).sum();
        let mut out = String::with_capacity(
            (rules + self.nat_top.lines.len() + self.filter.lines.len()) * 110 + 4096,
        );
        self.filter.render_into(&mut out);
        self.render_nat_into(&mut out, |_| true, delete);
        out
    }

    /// The whole rule set as a model: filter, then nat with every Service.
    pub fn full(&self, delete: &[String]) -> Ruleset {
        Ruleset {
            tables: vec![self.filter.clone(), self.nat_table(|_| true, delete)],
        }
    }

    /// Renders the full rule set without deletions (what `--dry-run` prints).
    pub fn render(&self) -> String {
        self.render_full(&[])
    }
}

/// The fixed start of both tables: the top-level chains, KUBE-POSTROUTING, KUBE-MARK-MASQ and
/// kubelet's KUBE-FIREWALL rule.
fn fixed_head(settings: &NodeSettings) -> (TableRules, TableRules) {
    let mark = &settings.masquerade_mark;
    let filter_chains = [
        KUBE_SERVICES,
        KUBE_EXTERNAL_SERVICES,
        KUBE_FORWARD,
        KUBE_NODEPORTS,
        KUBE_PROXY_FIREWALL,
    ];
    let nat_chains = [
        KUBE_SERVICES,
        KUBE_NODEPORTS,
        KUBE_POSTROUTING,
        KUBE_MARK_MASQ,
    ];
    let mut filter = TableRules::new(Table::Filter);
    let mut nat = TableRules::new(Table::Nat);
    filter_chains.into_iter().for_each(|c| filter.declare(c));
    nat_chains.into_iter().for_each(|c| nat.declare(c));
    nat.append(
        Rule::new(KUBE_POSTROUTING)
            .with(Match::Mark {
                value: mark.text.clone(),
                mask: Some(mark.text.clone()),
                negate: true,
            })
            .target(Target::Return),
    );
    nat.append(Rule::new(KUBE_POSTROUTING).target(Target::MarkXorText(mark.text.clone())));
    nat.append(
        Rule::new(KUBE_POSTROUTING)
            .with(Match::comment("kubernetes service traffic requiring SNAT"))
            .target(Target::Masquerade {
                random_fully: settings.masquerade_random_fully,
            }),
    );
    nat.append(Rule::new(KUBE_MARK_MASQ).target(Target::MarkOrText(mark.text.clone())));

    if settings.family == IpFamily::V4 && settings.localhost_nodeports_effective() {
        filter.declare(KUBE_FIREWALL);
        filter.append(
            Rule::new(KUBE_FIREWALL)
                .with(Match::comment("block incoming localnet connections"))
                .with(Match::destination("127.0.0.0/8".parse().expect("literal")))
                .with(Match::not_source("127.0.0.0/8".parse().expect("literal")))
                .with(Match::CtState {
                    states: vec![CtState::Related, CtState::Established, CtState::Dnat],
                    negate: true,
                })
                .target(Target::Drop),
        );
    }
    (filter, nat)
}

/// The fixed end of both tables: the node-port rule at the end of KUBE-SERVICES, and
/// KUBE-FORWARD.
fn fixed_tail(settings: &NodeSettings, filter: &mut TableRules, nat: &mut TableRules) {
    let mark = &settings.masquerade_mark;
    // The node-port tail rule of KUBE-SERVICES.
    let np_comment = "kubernetes service nodeports; NOTE: this must be the last rule in this chain";
    let ipv6 = settings.family == IpFamily::V6;
    let localhost_nodeports = settings.localhost_nodeports_effective();
    let loopback_net: IpNet = "127.0.0.1/8".parse::<IpNet>().expect("literal").trunc();
    if settings.nodeports_match_all() {
        let mut r = Rule::new(KUBE_SERVICES)
            .with(Match::comment(np_comment))
            .with(Match::DstType(AddrType::Local));
        if ipv6 {
            r.matches
                .push(Match::not_destination("::1/128".parse().expect("literal")));
        } else if !localhost_nodeports {
            r.matches.push(Match::not_destination(loopback_net));
        }
        nat.append(r.jump(KUBE_NODEPORTS));
    } else {
        for ip in settings.nodeport_ips() {
            nat.append(
                Rule::new(KUBE_SERVICES)
                    .with(Match::comment(np_comment))
                    .with(Match::destination_ip(ip))
                    .jump(KUBE_NODEPORTS),
            );
        }
    }

    if !settings.conntrack_tcp_liberal {
        let mut r = Rule::new(KUBE_FORWARD).with(Match::CtState {
            states: vec![CtState::Invalid],
            negate: false,
        });
        if settings.nfacct_counters {
            r.matches.push(Match::Nfacct(NFACCT_CT_INVALID.into()));
        }
        filter.append(r.target(Target::Drop));
    }
    filter.append(
        Rule::new(KUBE_FORWARD)
            .with(Match::comment("kubernetes forwarding rules"))
            .with(Match::Mark {
                value: mark.text.clone(),
                mask: Some(mark.text.clone()),
                negate: false,
            })
            .target(Target::Accept),
    );
    filter.append(
        Rule::new(KUBE_FORWARD)
            .with(Match::comment("kubernetes forwarding conntrack rule"))
            .with(Match::CtState {
                states: vec![CtState::Related, CtState::Established],
                negate: false,
            })
            .target(Target::Accept),
    );
}

/// Compiles the ports of one Service: its rules in the top-level chains, and its own chains.
fn compile_service(
    ports: &[(&ServicePortName, &ServicePort)],
    state: &ClusterState,
    settings: &NodeSettings,
    large: bool,
) -> (ServiceOutput, ServiceChains) {
    let mut out = ServiceOutput::default();
    let mut group = ServiceChains::default();
    for (n, s) in ports {
        let plan = PortPlan::new(s, state.endpoints_of(n), settings);
        port::compile_port(&plan, settings, large, &mut out, &mut group);
    }
    (out, group)
}

/// One Service's inputs, kept to tell whether it changed since the last compile.
#[derive(Debug, Clone, PartialEq)]
struct CachedService {
    ports: Vec<(ServicePort, Vec<Endpoint>)>,
    out: Arc<ServiceOutput>,
    generation: u64,
}

/// A compiler that remembers each Service's output and recompiles only Services whose ports or
/// endpoints changed (and everything when the settings or large-cluster mode change).
#[derive(Debug, Default)]
pub struct Compiler {
    cache: HashMap<ServiceKey, CachedService>,
    key: Option<(NodeSettings, bool)>,
    one_shot: bool,
    generation: u64,
}

/// Compiles `state` into kube-proxy's iptables rules for this node.
pub fn compile(state: &ClusterState, settings: &NodeSettings) -> Compiled {
    let mut c = Compiler {
        one_shot: true,
        ..Compiler::default()
    };
    c.compile(state, settings)
}

impl Compiler {
    /// A compiler with an empty cache.
    pub fn new() -> Compiler {
        Compiler::default()
    }

    /// Compiles `state`, reusing the output of unchanged Services.
    pub fn compile(&mut self, state: &ClusterState, settings: &NodeSettings) -> Compiled {
        let (mut filter, mut nat) = fixed_head(settings);
        let total_endpoints: usize = state
            .services
            .keys()
            .map(|k| state.endpoints_of(k).len())
            .sum();
        let large = total_endpoints > LARGE_CLUSTER_ENDPOINTS;

        if self.key.as_ref() != Some(&(settings.clone(), large)) {
            self.cache.clear();
            self.key = Some((settings.clone(), large));
        }
        let mut services: BTreeMap<ServiceKey, Arc<ServiceChains>> = BTreeMap::new();
        self.generation += 1;
        let generation = self.generation;
        let mut iter = state.services.iter().peekable();
        while let Some((spn, svc)) = iter.next() {
            let key = &spn.service;
            let mut ports: Vec<(&ServicePortName, &ServicePort)> = vec![(spn, svc)];
            while let Some((next, _)) = iter.peek() {
                if &next.service != key {
                    break;
                }
                let (n, s) = iter.next().expect("peeked");
                ports.push((n, s));
            }
            let unchanged = !self.one_shot
                && self.cache.get(key).is_some_and(|c| {
                    c.ports.len() == ports.len()
                        && c.ports.iter().zip(&ports).all(|((cs, ce), (n, s))| {
                            cs == *s && ce.as_slice() == state.endpoints_of(n)
                        })
                });
            if self.one_shot {
                // No cache: compile straight into the tables.
                let (out, group) = compile_service(&ports, state, settings, large);
                filter
                    .lines
                    .extend(out.filter.into_iter().map(Line::Append));
                nat.lines.extend(out.nat.into_iter().map(Line::Append));
                if !group.chains.is_empty() {
                    services.insert(key.clone(), Arc::new(group));
                }
                continue;
            }
            if !unchanged {
                let (mut out, group) = compile_service(&ports, state, settings, large);
                out.chains = Arc::new(group);
                let cached = CachedService {
                    ports: ports
                        .iter()
                        .map(|(n, s)| ((*s).clone(), state.endpoints_of(n).to_vec()))
                        .collect(),
                    out: Arc::new(out),
                    generation,
                };
                self.cache.insert(key.clone(), cached);
            }
            let entry = self.cache.get_mut(key).expect("inserted above");
            entry.generation = generation;
            let out = &entry.out;
            for r in &out.filter {
                filter.append(r.clone());
            }
            for r in &out.nat {
                nat.append(r.clone());
            }
            if !out.chains.chains.is_empty() {
                services.insert(key.clone(), out.chains.clone());
            }
        }
        self.cache.retain(|_, c| c.generation == generation);

        fixed_tail(settings, &mut filter, &mut nat);

        Compiled {
            filter,
            nat_top: nat,
            services,
            large_cluster: large,
        }
    }
}

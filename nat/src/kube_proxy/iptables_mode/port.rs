//! One service port's iptables rules, written out from its [`PortPlan`]: the rules that
//! capture its addresses (nat `KUBE-SERVICES` / `KUBE-NODEPORTS`, and filter's REJECT / DROP /
//! firewall rules), then its own chains (`KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-`, `KUBE-FW-`,
//! `KUBE-SEP-`).

use super::{
    KUBE_EXTERNAL_SERVICES, KUBE_MARK_MASQ, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL, KUBE_SERVICES,
    NFACCT_LOCALHOST_NODEPORTS, ServiceChains, ServiceOutput, port_hash,
};
use crate::iptables::{AddrType, Match, Protocol, Rule, Target};
use crate::kube::Endpoint;
use crate::kube::plan::{ClusterIpMasquerade, ExternalStep, Policy, PortPlan, Unserved};
use crate::kube_proxy::{LocalDetector, NodeSettings};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The chain names of one service port.
struct Names {
    /// `ns/name:port`.
    name: Arc<str>,
    proto: Protocol,
    cluster: Arc<str>,
    local: Arc<str>,
    external: Arc<str>,
    firewall: Arc<str>,
    mark_masq: Arc<str>,
}

impl Names {
    fn new(plan: &PortPlan<'_>) -> Names {
        let proto = plan.port.protocol();
        let name: Arc<str> = plan.name.as_str().into();
        let hash = port_hash(&name, proto);
        Names {
            cluster: format!("KUBE-SVC-{hash}").into(),
            local: format!("KUBE-SVL-{hash}").into(),
            external: format!("KUBE-EXT-{hash}").into(),
            firewall: format!("KUBE-FW-{hash}").into(),
            mark_masq: KUBE_MARK_MASQ.into(),
            name,
            proto,
        }
    }

    fn policy(&self, policy: Policy) -> &Arc<str> {
        match policy {
            Policy::Cluster => &self.cluster,
            Policy::Local => &self.local,
        }
    }
}

/// Writes one service port: capture rules into `out`, its own chains into `group`.
pub(super) fn compile_port(
    plan: &PortPlan<'_>,
    settings: &NodeSettings,
    large: bool,
    out: &mut ServiceOutput,
    group: &mut ServiceChains,
) {
    let port = Port {
        plan,
        n: Names::new(plan),
        settings,
    };
    capture_service_ips(&port, out);
    capture_node_ports(&port, out);
    internal_chain(&port, group);
    external_chain(&port, group);
    firewall_chain(&port, group);
    endpoint_chains(&port, large, group);
}

/// What every writer of a port reads.
struct Port<'a, 'p> {
    plan: &'a PortPlan<'p>,
    n: Names,
    settings: &'a NodeSettings,
}

/// The local-traffic match: `-s CIDR` / `-i IFACE` (or negated for "not local").
pub(super) fn local_match(settings: &NodeSettings, local: bool) -> Option<Match> {
    match &settings.local_detector {
        LocalDetector::None => None,
        LocalDetector::ClusterCidr(net) => Some(Match::Source {
            net: *net,
            negate: !local,
        }),
        LocalDetector::BridgeInterface(name) => Some(Match::InInterface {
            name: name.clone(),
            negate: !local,
        }),
        LocalDetector::InterfaceNamePrefix(prefix) => Some(Match::InInterface {
            name: format!("{prefix}+"),
            negate: !local,
        }),
    }
}

fn proto_dst(proto: Protocol, dst: Option<IpAddr>, port: u16) -> [Option<Match>; 4] {
    [
        Some(Match::ProtocolModule(proto)),
        Some(Match::Protocol(proto)),
        dst.map(Match::destination_ip),
        Some(Match::DestinationPort(port)),
    ]
}

/// A chain name that can become a shared `Arc<str>`: string constants allocate, shared names
/// are only counted.
trait ChainRef {
    fn arc(self) -> Arc<str>;
}

impl ChainRef for &str {
    fn arc(self) -> Arc<str> {
        self.into()
    }
}

impl ChainRef for &Arc<str> {
    fn arc(self) -> Arc<str> {
        self.clone()
    }
}

fn rule<C: Into<Arc<str>>>(
    chain: impl ChainRef,
    comment: Option<C>,
    ms: impl IntoIterator<Item = Option<Match>>,
) -> Rule {
    let mut r = Rule::new(chain.arc());
    if let Some(c) = comment {
        r.matches.push(Match::Comment(c.into()));
    }
    r.matches.extend(ms.into_iter().flatten());
    r
}

/// The filter rule for traffic its policy has no endpoint for.
fn unserved(
    chain: &str,
    name: &str,
    why: Unserved,
    ms: impl IntoIterator<Item = Option<Match>>,
) -> Rule {
    let (comment, target) = match why {
        Unserved::Reject => (format!("{name} has no endpoints"), Target::Reject),
        Unserved::Drop => (format!("{name} has no local endpoints"), Target::Drop),
    };
    rule(chain, Some(comment), ms).target(target)
}

/// Cluster IP, external IPs and load-balancer IPs.
fn capture_service_ips(port: &Port<'_, '_>, out: &mut ServiceOutput) {
    let Port { plan, n, .. } = port;
    let svc = plan.port;
    let dst = |ip: IpAddr| proto_dst(n.proto, Some(ip), svc.port);
    let name = &n.name;
    match plan.internal.unserved {
        None => out.nat.push(
            rule(
                KUBE_SERVICES,
                Some(format!("{name} cluster IP")),
                dst(svc.cluster_ip),
            )
            .jump(n.policy(plan.internal.policy).clone()),
        ),
        Some(why) => out
            .filter
            .push(unserved(KUBE_SERVICES, name, why, dst(svc.cluster_ip))),
    }
    for ip in &svc.external_ips {
        if plan.has_endpoints {
            out.nat.push(
                rule(KUBE_SERVICES, Some(format!("{name} external IP")), dst(*ip))
                    .jump(n.external.clone()),
            );
        }
        if let Some(why) = plan.external.unserved {
            out.filter
                .push(unserved(KUBE_EXTERNAL_SERVICES, name, why, dst(*ip)));
        }
    }
    let firewall = plan.firewall_if_served().is_some();
    let lb_chain = if firewall { &n.firewall } else { &n.external };
    for ip in &svc.load_balancer_vips {
        if plan.has_endpoints {
            out.nat.push(
                rule(
                    KUBE_SERVICES,
                    Some(format!("{name} loadbalancer IP")),
                    dst(*ip),
                )
                .jump(lb_chain.clone()),
            );
        }
        if firewall {
            out.filter.push(
                rule(
                    KUBE_PROXY_FIREWALL,
                    Some(format!("{name} traffic not accepted by {}", n.firewall)),
                    dst(*ip),
                )
                .target(Target::Drop),
            );
        }
    }
    if let Some(why) = plan.external.unserved {
        for ip in &svc.load_balancer_vips {
            out.filter
                .push(unserved(KUBE_EXTERNAL_SERVICES, name, why, dst(*ip)));
        }
    }
}

/// The node port (also on 127.0.0.0/8 with nfacct counting) and the health-check node port.
fn capture_node_ports(port: &Port<'_, '_>, out: &mut ServiceOutput) {
    let Port { plan, n, settings } = port;
    let proto = n.proto;
    if let Some(np) = plan.port.node_port {
        if plan.has_endpoints {
            if settings.localhost_nodeports_effective() && settings.nfacct_counters {
                let loopback: IpNet = "127.0.0.0/8".parse().expect("literal");
                out.nat.push(
                    rule(
                        KUBE_NODEPORTS,
                        Some(n.name.clone()),
                        [
                            Some(Match::ProtocolModule(proto)),
                            Some(Match::Protocol(proto)),
                            Some(Match::destination(loopback)),
                            Some(Match::DestinationPort(np)),
                            Some(Match::Nfacct(NFACCT_LOCALHOST_NODEPORTS.into())),
                        ],
                    )
                    .jump(n.external.clone()),
                );
            }
            out.nat.push(
                rule(
                    KUBE_NODEPORTS,
                    Some(n.name.clone()),
                    proto_dst(proto, None, np),
                )
                .jump(n.external.clone()),
            );
        }
        if let Some(why) = plan.external.unserved {
            out.filter.push(unserved(
                KUBE_EXTERNAL_SERVICES,
                &n.name,
                why,
                [
                    Some(Match::DstType(AddrType::Local)),
                    Some(Match::ProtocolModule(proto)),
                    Some(Match::Protocol(proto)),
                    Some(Match::DestinationPort(np)),
                ],
            ));
        }
    }
    if let Some(hc) = plan.port.health_check_node_port {
        out.filter.push(
            rule(
                KUBE_NODEPORTS,
                Some(format!("{} health check node port", n.name)),
                proto_dst(Protocol::Tcp, None, hc),
            )
            .target(Target::Accept),
        );
    }
}

/// The masquerade rule of cluster-IP traffic, at the head of the internal policy chain.
fn internal_chain(port: &Port<'_, '_>, group: &mut ServiceChains) {
    let Port { plan, n, settings } = port;
    let svc = plan.port;
    let chain = n.policy(plan.internal.policy);
    let head = || {
        rule(
            chain,
            Some(format!("{} cluster IP", n.name)),
            proto_dst(n.proto, Some(svc.cluster_ip), svc.port),
        )
    };
    let r = match plan.cluster_ip_masquerade {
        None => return,
        Some(ClusterIpMasquerade::All) => head(),
        Some(ClusterIpMasquerade::OffCluster) => match local_match(settings, false) {
            Some(m) => head().with(m),
            None => return,
        },
    };
    group.rules.push(r.jump(n.mark_masq.clone()));
}

/// `KUBE-EXT-`: its steps, in order.
fn external_chain(port: &Port<'_, '_>, group: &mut ServiceChains) {
    let Port { plan, n, settings } = port;
    if !plan.uses_external_chain() {
        return;
    }
    let chain = &n.external;
    group.chains.push(chain.clone());
    let name = &n.name;
    let from_node = || Some(Match::SrcType(AddrType::Local));
    for step in &plan.external_chain {
        let (comment, from, to) = match step {
            ExternalStep::Masquerade => ("masquerade traffic", None, &n.mark_masq),
            ExternalStep::PodsToCluster => ("pod traffic", local_match(settings, true), &n.cluster),
            ExternalStep::MasqueradeFromNode => {
                ("masquerade LOCAL traffic", from_node(), &n.mark_masq)
            }
            ExternalStep::FromNodeToCluster => ("route LOCAL traffic", from_node(), &n.cluster),
            ExternalStep::ToPolicy => {
                let policy = n.policy(plan.external.policy).clone();
                group.rules.push(Rule::new(chain.clone()).jump(policy));
                continue;
            }
        };
        let comment = format!("{comment} for {name} external destinations");
        group
            .rules
            .push(rule(chain, Some(comment), [from]).jump(to.clone()));
    }
}

/// `KUBE-FW-`: the allowed source ranges go on to `KUBE-EXT-`; the rest falls through to
/// `KUBE-PROXY-FIREWALL`'s drop.
fn firewall_chain(port: &Port<'_, '_>, group: &mut ServiceChains) {
    let Port { plan, n, .. } = port;
    let Some(fw) = plan.firewall_if_served() else {
        return;
    };
    let chain = &n.firewall;
    group.chains.push(chain.clone());
    let comment = format!("{} loadbalancer IP", n.name);
    for net in &fw.sources {
        group.rules.push(
            rule(chain, Some(comment.clone()), [Some(Match::source(*net))])
                .jump(n.external.clone()),
        );
    }
    if fw.allow_from_node {
        for ip in &plan.port.load_balancer_vips {
            group.rules.push(
                rule(chain, Some(comment.clone()), [Some(Match::source_ip(*ip))])
                    .jump(n.external.clone()),
            );
        }
    }
    group.rules.push(rule(
        chain,
        Some(format!(
            "other traffic to {} will be dropped by KUBE-PROXY-FIREWALL",
            n.name
        )),
        [],
    ));
}

/// `KUBE-SVC-` and `KUBE-SVL-` (load balancing, affinity) and one `KUBE-SEP-` per reachable
/// endpoint (masquerade hairpin traffic, DNAT).
fn endpoint_chains(port: &Port<'_, '_>, large: bool, group: &mut ServiceChains) {
    let Port { plan, n, .. } = port;
    let proto = n.proto;
    let ep_chains: BTreeMap<&SocketAddr, Arc<str>> = plan
        .reachable
        .iter()
        .map(|e| {
            let mut text = String::with_capacity(24);
            crate::iptables::push_socket(&mut text, &e.addr);
            (
                &e.addr,
                crate::hash::chain_name("KUBE-SEP-", &[&n.name, proto.as_str(), &text]),
            )
        })
        .collect();
    for (used, chain, endpoints) in [
        (plan.uses_cluster_chain(), &n.cluster, &plan.cluster),
        (plan.uses_local_chain(), &n.local, &plan.local),
    ] {
        if used {
            group.chains.push(chain.clone());
            let to = ToEndpoints {
                name: &n.name,
                affinity: plan.affinity,
                ep_chains: &ep_chains,
                large,
            };
            to.write(&mut group.rules, chain, endpoints);
        }
    }
    for ep in &plan.reachable {
        let chain = &ep_chains[&ep.addr];
        group.chains.push(chain.clone());
        let comment = (!large).then(|| n.name.clone());
        group.rules.push(
            rule(chain, comment.clone(), [Some(Match::source_ip(ep.ip()))])
                .jump(n.mark_masq.clone()),
        );
        let mut r = rule(chain, comment, []);
        if plan.affinity.is_some() {
            r.matches.push(Match::RecentSet {
                name: chain.to_string(),
            });
        }
        r.matches.push(Match::ProtocolModule(proto));
        r.matches.push(Match::Protocol(proto));
        group.rules.push(r.target(Target::Dnat(ep.addr)));
    }
}

/// Writes a policy chain's jumps to its endpoints' chains.
struct ToEndpoints<'a> {
    name: &'a str,
    affinity: Option<u32>,
    ep_chains: &'a BTreeMap<&'a SocketAddr, Arc<str>>,
    large: bool,
}

impl ToEndpoints<'_> {
    fn write(&self, rules: &mut Vec<Rule>, chain: &Arc<str>, endpoints: &[&Endpoint]) {
        let name = self.name;
        if let Some(timeout_seconds) = self.affinity {
            for ep in endpoints {
                let target = &self.ep_chains[&ep.addr];
                let comment = (!self.large).then(|| format!("{name} -> {}", ep.addr));
                rules.push(
                    rule(
                        chain,
                        comment,
                        [Some(Match::RecentCheck {
                            name: target.to_string(),
                            seconds: timeout_seconds,
                            reap: true,
                        })],
                    )
                    .jump(target.clone()),
                );
            }
        }
        let n = endpoints.len();
        for (i, ep) in endpoints.iter().enumerate() {
            let target = &self.ep_chains[&ep.addr];
            let comment = (!self.large).then(|| {
                let mut c = String::with_capacity(name.len() + 26);
                c.push_str(name);
                c.push_str(" -> ");
                crate::iptables::push_socket(&mut c, &ep.addr);
                c
            });
            let prob = (i + 1 < n).then(|| Match::Probability(1.0 / (n - i) as f64));
            rules.push(rule(chain, comment, [prob]).jump(target.clone()));
        }
    }
}

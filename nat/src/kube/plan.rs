//! What each Service port needs from a service proxy, decided once for every proxy mode.
//!
//! kube-proxy's iptables, nftables and ipvs proxiers each work out, per service port, which
//! endpoints the Cluster and Local traffic policies select, whether internal (cluster IP) and
//! external (node port, external IP, load-balancer IP) traffic has somewhere to go, what
//! happens to traffic that has not (REJECT when the Service has no endpoint at all, DROP when
//! only the Local policy has none), what the "external" chain does before the policy chain
//! (masquerade, or the short-circuits of a Local policy), which sources
//! `loadBalancerSourceRanges` lets in, and when cluster-IP traffic is masqueraded. A
//! [`PortPlan`] holds those decisions; the three compilers only write them out in their own
//! syntax.
//!
//! The plan follows upstream's `syncProxyRules` (pkg/proxy/iptables and pkg/proxy/nftables)
//! and `syncService`/`syncEndpoint` (pkg/proxy/ipvs). Where the upstream modes differ, the
//! plan holds the common fact and the compiler applies its mode's rule (see
//! [`PortPlan::firewall`] and [`PortPlan::backends`]).

use super::model::{Endpoint, IpFamily, ServicePort, SessionAffinity, categorize_endpoints};
use crate::kube_proxy::{LocalDetector, NodeSettings};
use ipnet::IpNet;
use std::net::IpAddr;

/// A traffic policy (`internalTrafficPolicy`, `externalTrafficPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Any ready endpoint in the cluster.
    Cluster,
    /// Only endpoints on this node.
    Local,
}

/// What becomes of traffic its policy has no endpoint for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unserved {
    /// The Service has no usable endpoint anywhere: reject (ICMP unreachable / TCP reset), so
    /// clients fail fast.
    Reject,
    /// The Service has endpoints, but none on this node and the policy is Local: drop.
    Drop,
}

/// Where one kind of traffic (internal or external) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Traffic {
    /// The policy that selects its endpoints.
    pub policy: Policy,
    /// `None` when the policy has endpoints to send the traffic to; otherwise what the filter
    /// does with it.
    pub unserved: Option<Unserved>,
}

impl Traffic {
    /// The policy has endpoints for this traffic (upstream's `hasInternalEndpoints` /
    /// `hasExternalEndpoints`).
    pub fn has_endpoints(&self) -> bool {
        self.unserved.is_none()
    }
}

/// One step of the external chain (upstream's `EXT-` / `external-` chain), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExternalStep {
    /// Mark everything for masquerade: with the Cluster policy the endpoint may be on another
    /// node, and the reply must come back through this one.
    Masquerade,
    /// Traffic from this node's pods goes to the Cluster-policy endpoints, as if it had gone
    /// out to a load balancer and come back (needs a local-traffic detector).
    PodsToCluster,
    /// Traffic from the node itself is marked for masquerade (its source is a local address,
    /// often the external address itself).
    MasqueradeFromNode,
    /// Traffic from the node itself goes to the Cluster-policy endpoints.
    FromNodeToCluster,
    /// Everything else goes to the external policy's endpoints.
    ToPolicy,
}

/// `loadBalancerSourceRanges` of a port with load-balancer IPs: sources outside are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Firewall {
    /// The allowed source networks.
    pub sources: Vec<IpNet>,
    /// The node's primary IP is inside one of the ranges, so the load-balancer IPs are allowed
    /// as sources too (a VIP bound on the node makes the node's own requests come from it).
    pub allow_from_node: bool,
}

/// How cluster-IP traffic is marked for masquerade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterIpMasquerade {
    /// All of it (`--masquerade-all`).
    All,
    /// Traffic that does not come from this cluster's pods (a local-traffic detector is set):
    /// it may have been routed here from outside, so the reply must come back here.
    OffCluster,
}

/// The decisions for one service port.
#[derive(Debug, Clone, PartialEq)]
pub struct PortPlan<'a> {
    /// The port.
    pub port: &'a ServicePort,
    /// `ns/name:port` (kube-proxy's `ServicePortName` string, used in comments).
    pub name: String,
    /// The Service has a usable endpoint somewhere in the cluster.
    pub has_endpoints: bool,
    /// The endpoints of the Cluster policy, when some traffic of the port uses it (else empty).
    pub cluster: Vec<&'a Endpoint>,
    /// The endpoints of the Local policy, when some traffic of the port uses it (else empty).
    pub local: Vec<&'a Endpoint>,
    /// Every endpoint reachable from this node through either policy, sorted by address.
    pub reachable: Vec<&'a Endpoint>,
    /// Cluster-IP traffic.
    pub internal: Traffic,
    /// Node-port, external-IP and load-balancer traffic.
    pub external: Traffic,
    /// The steps of the external chain; empty when the port has none (not externally
    /// reachable, or no endpoint at all).
    pub external_chain: Vec<ExternalStep>,
    /// The source-range firewall: `Some` when the port has load-balancer IPs and
    /// `loadBalancerSourceRanges`. (Upstream's nftables mode writes it whatever the endpoints;
    /// its iptables mode only when the Service has endpoints, see
    /// [`PortPlan::firewall_if_served`].)
    pub firewall: Option<Firewall>,
    /// How traffic to the cluster IP is masqueraded (`None`: not at all, or no endpoint).
    pub cluster_ip_masquerade: Option<ClusterIpMasquerade>,
    /// ClientIP affinity timeout in seconds.
    pub affinity: Option<u32>,
}

/// A local-traffic detector is in effect for the node's family (a cluster CIDR of the other
/// family detects nothing, as upstream's per-family detector).
pub fn detects_local(node: &NodeSettings) -> bool {
    match &node.local_detector {
        LocalDetector::None => false,
        LocalDetector::ClusterCidr(net) => IpFamily::of(&net.addr()) == node.family,
        LocalDetector::BridgeInterface(_) | LocalDetector::InterfaceNamePrefix(_) => true,
    }
}

/// The node's primary address of its family (upstream's `nodeIP`).
pub fn primary_node_ip(node: &NodeSettings) -> Option<IpAddr> {
    node.node_ips
        .iter()
        .copied()
        .find(|ip| IpFamily::of(ip) == node.family)
}

fn traffic(policy: Policy, has_endpoints: bool, local: &[&Endpoint]) -> Traffic {
    let unserved = if !has_endpoints {
        Some(Unserved::Reject)
    } else if policy == Policy::Local && local.is_empty() {
        Some(Unserved::Drop)
    } else {
        None
    };
    Traffic { policy, unserved }
}

fn policy(local: bool) -> Policy {
    if local {
        Policy::Local
    } else {
        Policy::Cluster
    }
}

impl<'a> PortPlan<'a> {
    /// Decides what `port`, with `endpoints`, needs on `node`.
    pub fn new(port: &'a ServicePort, endpoints: &'a [Endpoint], node: &NodeSettings) -> Self {
        let cat = categorize_endpoints(endpoints, port, &node.node_name);
        let has_endpoints = cat.has_any;
        let internal = traffic(
            policy(port.internal_policy_local),
            has_endpoints,
            &cat.local,
        );
        let external = traffic(
            policy(port.external_policy_local),
            has_endpoints,
            &cat.local,
        );
        let detects_local = detects_local(node);

        let mut external_chain = Vec::new();
        if has_endpoints && port.externally_accessible() {
            if port.external_policy_local {
                if detects_local {
                    external_chain.push(ExternalStep::PodsToCluster);
                }
                external_chain.push(ExternalStep::MasqueradeFromNode);
                external_chain.push(ExternalStep::FromNodeToCluster);
            } else {
                external_chain.push(ExternalStep::Masquerade);
            }
            if external.has_endpoints() {
                external_chain.push(ExternalStep::ToPolicy);
            }
        }

        let firewall = (!port.load_balancer_vips.is_empty()
            && !port.load_balancer_source_ranges.is_empty())
        .then(|| {
            let node_ip = primary_node_ip(node);
            Firewall {
                sources: port.load_balancer_source_ranges.clone(),
                allow_from_node: node_ip.is_some_and(|ip| {
                    port.load_balancer_source_ranges
                        .iter()
                        .any(|n| n.contains(&ip))
                }),
            }
        });

        let cluster_ip_masquerade = if !internal.has_endpoints() {
            None
        } else if node.masquerade_all {
            Some(ClusterIpMasquerade::All)
        } else if detects_local {
            Some(ClusterIpMasquerade::OffCluster)
        } else {
            None
        };

        let affinity = match port.session_affinity {
            SessionAffinity::ClientIp { timeout_seconds } => Some(timeout_seconds),
            SessionAffinity::None => None,
        };

        PortPlan {
            port,
            name: port.name.to_string(),
            has_endpoints,
            cluster: cat.cluster,
            local: cat.local,
            reachable: cat.all_reachable,
            internal,
            external,
            external_chain,
            firewall,
            cluster_ip_masquerade,
            affinity,
        }
    }

    /// The Cluster-policy chain (`KUBE-SVC-` / `service-`) is written: some traffic uses the
    /// Cluster policy and it has endpoints.
    pub fn uses_cluster_chain(&self) -> bool {
        !self.cluster.is_empty()
    }

    /// The Local-policy chain (`KUBE-SVL-` / `local-`) is written.
    pub fn uses_local_chain(&self) -> bool {
        !self.local.is_empty()
    }

    /// The external chain (`KUBE-EXT-` / `external-`) is written.
    pub fn uses_external_chain(&self) -> bool {
        !self.external_chain.is_empty()
    }

    /// The firewall as upstream's iptables mode writes it: only when the Service has
    /// endpoints (without, the load-balancer IPs are rejected before any firewall).
    pub fn firewall_if_served(&self) -> Option<&Firewall> {
        self.firewall.as_ref().filter(|_| self.has_endpoints)
    }

    /// The endpoints a mode without per-policy chains (ipvs) sends `traffic` to, and whether
    /// a Local policy found none on this node and fell back to the Cluster ones: upstream's
    /// ipvs mode keeps the cluster endpoints then, so this node's pods still reach the
    /// Service (kubernetes pull 97081).
    pub fn backends(&self, traffic: &Traffic) -> (&[&'a Endpoint], bool) {
        if traffic.policy == Policy::Local && !self.local.is_empty() {
            (&self.local, false)
        } else {
            let fell_back = traffic.policy == Policy::Local && !self.cluster.is_empty();
            (&self.cluster, fell_back)
        }
    }
}

/// The plans of every port of one Service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePlan<'a> {
    /// Its ports, in the order given.
    pub ports: Vec<PortPlan<'a>>,
}

impl<'a> ServicePlan<'a> {
    /// Plans each of `ports` with its endpoints.
    pub fn new(
        ports: impl IntoIterator<Item = (&'a ServicePort, &'a [Endpoint])>,
        node: &NodeSettings,
    ) -> Self {
        ServicePlan {
            ports: ports
                .into_iter()
                .map(|(p, eps)| PortPlan::new(p, eps, node))
                .collect(),
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

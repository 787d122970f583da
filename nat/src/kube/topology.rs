//! Topology-aware endpoint selection, as upstream's `pkg/proxy/topology.go` does it.
//!
//! The EndpointSlice controller gives endpoints `hints`: `forZones` (and, for
//! `trafficDistribution: PreferSameNode`, `forNodes`). kube-proxy then prefers, for the
//! Cluster traffic policy, the endpoints hinted for this node (when every ready endpoint has
//! a node hint and one is for this node) or else for this node's zone (its
//! `topology.kubernetes.io/zone` label; when every ready endpoint has a zone hint and one is
//! for this zone). Otherwise, and always for the Local policy and for the
//! serving-and-terminating fallback, topology is not used.
//!
//! [`apply`] marks the endpoints of a [`ClusterState`] that topology leaves out on one node
//! ([`EndpointTopology::excluded`](super::EndpointTopology)); `categorize_endpoints`, where
//! every proxy mode chooses its endpoints, skips them for the Cluster policy.
//!
//! podnet has no EndpointSlice controller: for a Service with `trafficDistribution`
//! (`PreferClose`, `PreferSameZone`, `PreferSameNode`), an endpoint that comes without hints
//! gets the ones the controller's traffic-distribution heuristic gives it
//! ([`Distribution::fill_hints`]: its own zone, and for `PreferSameNode` its own node). On a
//! real cluster the controller has set exactly those already, so this changes nothing there;
//! for hand-written EndpointSlices it is what makes `trafficDistribution` work.

use super::model::{ClusterState, Endpoint};
use super::objects::KubeObject;

/// The Node label that names its zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Which hints the Cluster policy's endpoints follow on this node (upstream's topology mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopologyMode {
    /// The endpoints hinted for this node's zone.
    PreferSameZone,
    /// The endpoints hinted for this node.
    PreferSameNode,
}

/// What a Service's `trafficDistribution` asks the EndpointSlice controller for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Distribution {
    /// `PreferClose` or `PreferSameZone`: each endpoint hinted for its own zone.
    SameZone,
    /// `PreferSameNode`: each endpoint hinted for its own node (and zone).
    SameNode,
}

impl Distribution {
    /// The distribution a `trafficDistribution` value names; `None` for values the API does
    /// not define (which the controller ignores).
    pub fn parse(text: &str) -> Option<Distribution> {
        match text {
            "PreferClose" | "PreferSameZone" => Some(Distribution::SameZone),
            "PreferSameNode" => Some(Distribution::SameNode),
            _ => None,
        }
    }

    /// Gives `ep` the hints the EndpointSlice controller's heuristic would, unless it has
    /// hints already: its own zone (when it has one) and, for [`Distribution::SameNode`], its
    /// own node.
    pub fn fill_hints(self, ep: &mut Endpoint) {
        let t = &mut ep.topology;
        if !t.zone_hints.is_empty() || !t.node_hints.is_empty() {
            return;
        }
        if let Some(zone) = ep.zone.as_ref().filter(|z| !z.is_empty()) {
            t.zone_hints = vec![zone.clone()];
        }
        if self == Distribution::SameNode {
            if let Some(node) = ep.node_name.as_ref().filter(|n| !n.is_empty()) {
                t.node_hints = vec![node.clone()];
            }
        }
    }
}

/// The zone of Node `node` among `objects` (its [`ZONE_LABEL`]), if it is there and has one.
pub fn node_zone(objects: &[KubeObject], node: &str) -> Option<String> {
    objects.iter().find_map(|o| match o {
        KubeObject::Node(n) if n.metadata.name == node => n
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ZONE_LABEL))
            .filter(|z| !z.is_empty())
            .cloned(),
        _ => None,
    })
}

/// The topology mode for one service port's `endpoints` on `node` in `zone` (upstream's
/// `topologyModeFromHints`): same node when every ready endpoint has a node hint and one is
/// for `node`; else same zone when every ready endpoint has a zone hint and one is for
/// `zone`; else none.
pub fn topology_mode(
    endpoints: &[Endpoint],
    node: &str,
    zone: Option<&str>,
) -> Option<TopologyMode> {
    let ready: Vec<&Endpoint> = endpoints.iter().filter(|e| e.ready).collect();
    if ready.is_empty() {
        return None;
    }
    let has = |hints: &[String], name: &str| !name.is_empty() && hints.iter().any(|h| h == name);
    let all_node_hints = ready.iter().all(|e| !e.topology.node_hints.is_empty());
    if all_node_hints && ready.iter().any(|e| has(&e.topology.node_hints, node)) {
        return Some(TopologyMode::PreferSameNode);
    }
    let zone = zone.unwrap_or("");
    let all_zone_hints = ready.iter().all(|e| !e.topology.zone_hints.is_empty());
    if all_zone_hints && ready.iter().any(|e| has(&e.topology.zone_hints, zone)) {
        return Some(TopologyMode::PreferSameZone);
    }
    None
}

/// Whether `ep` may be used on `node` in `zone` under `mode` (upstream's
/// `availableForTopology`; the fallback is in choosing the mode, not here).
pub fn available_for_topology(
    ep: &Endpoint,
    mode: Option<TopologyMode>,
    node: &str,
    zone: Option<&str>,
) -> bool {
    match mode {
        None => true,
        Some(TopologyMode::PreferSameNode) => ep.topology.node_hints.iter().any(|h| h == node),
        Some(TopologyMode::PreferSameZone) => {
            zone.is_some_and(|z| ep.topology.zone_hints.iter().any(|h| h == z))
        }
    }
}

/// Marks, for every service port of `state` that uses the Cluster policy, the endpoints that
/// topology leaves out on `node` in `zone`, and clears the mark everywhere else.
pub fn apply(state: &mut ClusterState, node: &str, zone: Option<&str>) {
    for (spn, eps) in state.endpoints.iter_mut() {
        let uses_cluster = state
            .services
            .get(spn)
            .is_some_and(|s| s.uses_cluster_endpoints());
        let mode = if uses_cluster {
            topology_mode(eps, node, zone)
        } else {
            None
        };
        for e in eps.iter_mut() {
            e.topology.excluded = !available_for_topology(e, mode, node, zone);
        }
    }
}

#[cfg(test)]
#[path = "topology_tests.rs"]
mod tests;

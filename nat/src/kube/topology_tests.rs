//! The cases of upstream's `TestCategorizeEndpoints` (pkg/proxy/topology_test.go) that concern
//! topology, as hints without the retired `service.kubernetes.io/topology-mode` annotation
//! (upstream's proxy no longer reads it), and node hints.

use super::*;
use crate::iptables::Protocol;
use crate::kube::{
    EndpointTopology, IpFamily, ServiceKey, ServicePort, ServicePortName, ServiceType,
    SessionAffinity, TargetPort, categorize_endpoints, parse_objects,
};
use std::collections::BTreeSet;

const NODE: &str = "node-a";

fn port(internal_local: bool, external_local: bool, node_port: Option<u16>) -> ServicePort {
    ServicePort {
        name: ServicePortName {
            service: ServiceKey::new("ns", "svc"),
            port: "p".into(),
            protocol: Protocol::Tcp,
        },
        cluster_ip: "172.30.0.1".parse().unwrap(),
        port: 80,
        node_port,
        external_ips: Vec::new(),
        load_balancer_vips: Vec::new(),
        load_balancer_source_ranges: Vec::new(),
        session_affinity: SessionAffinity::None,
        health_check_node_port: None,
        external_policy_local: external_local,
        internal_policy_local: internal_local,
        service_type: if node_port.is_some() {
            ServiceType::NodePort
        } else {
            ServiceType::ClusterIp
        },
        target_port: TargetPort::Unset,
    }
}

fn cluster_ip() -> ServicePort {
    port(false, false, None)
}

/// An endpoint with zone hints `zones` (none when empty).
fn ep(addr: &str, zones: &[&str], ready: bool, local: bool) -> Endpoint {
    Endpoint {
        addr: addr.parse().unwrap(),
        node_name: Some(String::from(if local { NODE } else { "node-z" })),
        zone: None,
        ready,
        serving: ready,
        terminating: false,
        topology: EndpointTopology {
            zone_hints: zones.iter().map(|z| z.to_string()).collect(),
            ..EndpointTopology::default()
        },
    }
}

fn set(addrs: &[&str]) -> BTreeSet<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

fn texts(eps: &[&Endpoint]) -> BTreeSet<String> {
    eps.iter().map(|e| e.addr.to_string()).collect()
}

/// Categorizes `eps` for `svc` on [`NODE`] in `zone`, after [`apply`].
fn categorize(
    svc: &ServicePort,
    mut eps: Vec<Endpoint>,
    zone: Option<&str>,
) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>, bool) {
    let mut state = ClusterState {
        family: IpFamily::V4,
        ..ClusterState::default()
    };
    state.services.insert(svc.name.clone(), svc.clone());
    eps.sort_by_key(|e| e.addr.to_string());
    state.endpoints.insert(svc.name.clone(), eps);
    apply(&mut state, NODE, zone);
    let eps = state.endpoints_of(&svc.name);
    let c = categorize_endpoints(eps, svc, NODE);
    (
        texts(&c.cluster),
        texts(&c.local),
        texts(&c.all_reachable),
        c.has_any,
    )
}

fn four(zones: [&[&str]; 4], ready: [bool; 4]) -> Vec<Endpoint> {
    ["10.1.2.3:80", "10.1.2.4:80", "10.1.2.5:80", "10.1.2.6:80"]
        .iter()
        .zip(zones)
        .zip(ready)
        .map(|((a, z), r)| ep(a, z, r, false))
        .collect()
}

const ABCA: [&[&str]; 4] = [&["zone-a"], &["zone-b"], &["zone-c"], &["zone-a"]];

#[test]
fn normal_endpoint_filtering() {
    let (cluster, local, all, any) =
        categorize(&cluster_ip(), four(ABCA, [true; 4]), Some("zone-a"));
    assert_eq!(cluster, set(&["10.1.2.3:80", "10.1.2.6:80"]));
    assert!(local.is_empty());
    assert_eq!(all, cluster);
    assert!(any);
}

#[test]
fn empty_node_labels_or_zone_label_filter_nothing() {
    let eps = vec![ep("10.1.2.3:80", &["zone-a"], true, false)];
    for zone in [None, Some("")] {
        let (cluster, ..) = categorize(&cluster_ip(), eps.clone(), zone);
        assert_eq!(cluster, set(&["10.1.2.3:80"]), "{zone:?}");
    }
}

#[test]
fn node_in_a_zone_without_hints_filters_nothing() {
    let eps = vec![ep("10.1.2.3:80", &["zone-a"], true, false)];
    let (cluster, ..) = categorize(&cluster_ip(), eps, Some("zone-b"));
    assert_eq!(cluster, set(&["10.1.2.3:80"]));
}

#[test]
fn unready_endpoints_are_not_used_nor_counted() {
    // An unready endpoint in the zone is left out.
    let (cluster, ..) = categorize(
        &cluster_ip(),
        four(ABCA, [true, true, true, false]),
        Some("zone-a"),
    );
    assert_eq!(cluster, set(&["10.1.2.3:80"]));
    // Only unready endpoints in the zone: no filtering (of the ready ones).
    let (cluster, ..) = categorize(
        &cluster_ip(),
        four(ABCA, [false, true, true, false]),
        Some("zone-a"),
    );
    assert_eq!(cluster, set(&["10.1.2.4:80", "10.1.2.5:80"]));
}

#[test]
fn a_missing_hint_turns_topology_off() {
    let zones: [&[&str]; 4] = [&["zone-a"], &["zone-b"], &[], &["zone-a"]];
    let (cluster, ..) = categorize(&cluster_ip(), four(zones, [true; 4]), Some("zone-a"));
    assert_eq!(cluster.len(), 4);
}

#[test]
fn multiple_hints_per_endpoint() {
    let zones: [&[&str]; 4] = [
        &["zone-a", "zone-b", "zone-c"],
        &["zone-b", "zone-c"],
        &["zone-b", "zone-d"],
        &["zone-c"],
    ];
    let (cluster, ..) = categorize(&cluster_ip(), four(zones, [true; 4]), Some("zone-c"));
    assert_eq!(cluster, set(&["10.1.2.3:80", "10.1.2.4:80", "10.1.2.6:80"]));
}

#[test]
fn topology_is_ignored_for_local_endpoints() {
    let eps = |_: ()| {
        vec![
            ep("10.1.2.3:80", &["zone-a"], true, true),
            ep("10.1.2.4:80", &["zone-b"], true, true),
            ep("10.1.2.5:80", &["zone-c"], true, false),
            ep("10.1.2.6:80", &["zone-a"], true, false),
        ]
    };
    // externalTrafficPolicy: Local, and internalTrafficPolicy: Local on a node port.
    for svc in [
        port(false, true, Some(30080)),
        port(true, false, Some(30080)),
    ] {
        let (cluster, local, all, any) = categorize(&svc, eps(()), Some("zone-a"));
        assert_eq!(cluster, set(&["10.1.2.3:80", "10.1.2.6:80"]));
        assert_eq!(local, set(&["10.1.2.3:80", "10.1.2.4:80"]));
        assert_eq!(all, set(&["10.1.2.3:80", "10.1.2.4:80", "10.1.2.6:80"]));
        assert!(any);
    }
}

#[test]
fn conflicting_topology_and_localness_merge_all_endpoints() {
    let eps = vec![
        ep("10.0.0.0:80", &["zone-a"], true, true),
        ep("10.0.0.1:80", &["zone-b"], true, true),
        ep("10.0.0.2:80", &["zone-a"], true, false),
        ep("10.0.0.3:80", &["zone-b"], true, false),
    ];
    let (cluster, local, all, _) = categorize(&port(false, true, Some(30080)), eps, Some("zone-a"));
    assert_eq!(cluster, set(&["10.0.0.0:80", "10.0.0.2:80"]));
    assert_eq!(local, set(&["10.0.0.0:80", "10.0.0.1:80"]));
    assert_eq!(all, set(&["10.0.0.0:80", "10.0.0.1:80", "10.0.0.2:80"]));
}

#[test]
fn internal_local_only_service_ignores_topology() {
    let eps = vec![
        ep("10.0.0.0:80", &["zone-b"], true, true),
        ep("10.0.0.1:80", &["zone-a"], true, false),
    ];
    let (cluster, local, all, any) = categorize(&port(true, false, None), eps, Some("zone-a"));
    assert!(cluster.is_empty());
    assert_eq!(local, set(&["10.0.0.0:80"]));
    assert_eq!(all, local);
    assert!(any);
}

#[test]
fn terminating_fallback_ignores_topology() {
    let mut eps = four(ABCA, [false; 4]);
    for e in &mut eps {
        e.serving = true;
        e.terminating = true;
    }
    let (cluster, _, _, any) = categorize(&cluster_ip(), eps, Some("zone-a"));
    assert_eq!(cluster.len(), 4);
    assert!(any);
}

#[test]
fn node_hints_win_over_zone_hints() {
    let mut eps = four(ABCA, [true; 4]);
    for (e, n) in eps.iter_mut().zip(["node-z", NODE, "node-y", "node-x"]) {
        e.topology.node_hints = vec![n.into()];
    }
    let (cluster, ..) = categorize(&cluster_ip(), eps.clone(), Some("zone-a"));
    assert_eq!(cluster, set(&["10.1.2.4:80"]));
    // No endpoint for this node: zone hints apply.
    for e in &mut eps {
        if e.topology.node_hints == [NODE] {
            e.topology.node_hints = vec!["node-w".into()];
        }
    }
    let (cluster, ..) = categorize(&cluster_ip(), eps.clone(), Some("zone-a"));
    assert_eq!(cluster, set(&["10.1.2.3:80", "10.1.2.6:80"]));
    // One ready endpoint without a node hint: zone hints apply.
    eps[1].topology.node_hints = vec![NODE.into()];
    eps[0].topology.node_hints.clear();
    let (cluster, ..) = categorize(&cluster_ip(), eps, Some("zone-a"));
    assert_eq!(cluster, set(&["10.1.2.3:80", "10.1.2.6:80"]));
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: node-a, labels: {topology.kubernetes.io/zone: zone-a}}
- apiVersion: v1
  kind: Service
  metadata: {name: close, namespace: ns}
  spec:
    clusterIP: 10.96.0.20
    trafficDistribution: PreferClose
    ports: [{name: p, port: 80}]
- apiVersion: v1
  kind: Service
  metadata: {name: hinted, namespace: ns}
  spec:
    clusterIP: 10.96.0.21
    ports: [{name: p, port: 80}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: close-1, namespace: ns, labels: {kubernetes.io/service-name: close}}
  addressType: IPv4
  ports: [{name: p, port: 8080}]
  endpoints:
  - {addresses: [10.244.1.2], zone: zone-a, nodeName: node-a}
  - {addresses: [10.244.2.2], zone: zone-b, nodeName: node-b}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: hinted-1, namespace: ns, labels: {kubernetes.io/service-name: hinted}}
  addressType: IPv4
  ports: [{name: p, port: 8080}]
  endpoints:
  - {addresses: [10.244.1.3], zone: zone-a, hints: {forZones: [{name: zone-b}]}}
  - {addresses: [10.244.2.3], zone: zone-b, hints: {forZones: [{name: zone-a}]}}
"#;

#[test]
fn prefer_close_and_slice_hints_from_objects() {
    let (objects, warnings) = parse_objects(OBJECTS, "t.yaml");
    assert!(warnings.is_empty(), "{warnings:?}");
    let zone = node_zone(&objects, NODE);
    assert_eq!(zone.as_deref(), Some("zone-a"));
    assert_eq!(node_zone(&objects, "node-b"), None);
    let (mut state, warnings) = ClusterState::from_objects(&objects, IpFamily::V4);
    assert!(warnings.is_empty(), "{warnings:?}");
    apply(&mut state, NODE, zone.as_deref());
    let chosen = |state: &ClusterState, svc: &str| -> BTreeSet<String> {
        let (name, port) = state
            .services
            .iter()
            .find(|(n, _)| &*n.service.name == svc)
            .unwrap();
        let c = categorize_endpoints(state.endpoints_of(name), port, NODE);
        texts(&c.cluster)
    };
    // PreferClose: this zone's endpoint.
    assert_eq!(chosen(&state, "close"), set(&["10.244.1.2:8080"]));
    // The slice's own hints win over the endpoints' zones.
    assert_eq!(chosen(&state, "hinted"), set(&["10.244.2.3:8080"]));
    // Without the node's zone, every endpoint.
    apply(&mut state, NODE, None);
    assert_eq!(chosen(&state, "close").len(), 2);
}

#[test]
fn distribution_names() {
    assert_eq!(
        Distribution::parse("PreferClose"),
        Some(Distribution::SameZone)
    );
    assert_eq!(
        Distribution::parse("PreferSameZone"),
        Some(Distribution::SameZone)
    );
    assert_eq!(
        Distribution::parse("PreferSameNode"),
        Some(Distribution::SameNode)
    );
    assert_eq!(Distribution::parse("preferclose"), None);
    let mut e = ep("10.0.0.1:80", &[], true, true);
    e.zone = Some("zone-q".into());
    Distribution::SameNode.fill_hints(&mut e);
    assert_eq!(e.topology.zone_hints, ["zone-q"]);
    assert_eq!(e.topology.node_hints, [NODE]);
}

use super::*;
use crate::iptables::Protocol;
use crate::kube::{ServiceKey, ServicePortName, ServiceType, TargetPort};
use std::net::SocketAddr;

fn port() -> ServicePort {
    ServicePort {
        name: ServicePortName {
            service: ServiceKey::new("ns", "web"),
            port: "http".into(),
            protocol: Protocol::Tcp,
        },
        cluster_ip: "10.96.0.10".parse().unwrap(),
        port: 80,
        node_port: None,
        external_ips: Vec::new(),
        load_balancer_vips: Vec::new(),
        load_balancer_source_ranges: Vec::new(),
        session_affinity: SessionAffinity::None,
        health_check_node_port: None,
        external_policy_local: false,
        internal_policy_local: false,
        service_type: ServiceType::ClusterIp,
        target_port: TargetPort::Unset,
    }
}

fn load_balancer(external_local: bool) -> ServicePort {
    ServicePort {
        node_port: Some(30080),
        load_balancer_vips: vec!["192.0.2.10".parse().unwrap()],
        external_policy_local: external_local,
        service_type: ServiceType::LoadBalancer,
        ..port()
    }
}

fn endpoint(addr: &str, node: &str) -> Endpoint {
    Endpoint {
        addr: addr.parse::<SocketAddr>().unwrap(),
        node_name: Some(node.into()),
        zone: None,
        ready: true,
        serving: true,
        terminating: false,
        topology: Default::default(),
    }
}

fn node() -> NodeSettings {
    NodeSettings::new("node-a", IpFamily::V4)
}

#[test]
fn no_endpoints_rejects_everything_and_writes_no_chain() {
    let p = load_balancer(false);
    let plan = PortPlan::new(&p, &[], &node());
    assert!(!plan.has_endpoints);
    assert_eq!(plan.internal.unserved, Some(Unserved::Reject));
    assert_eq!(plan.external.unserved, Some(Unserved::Reject));
    assert!(!plan.uses_cluster_chain() && !plan.uses_local_chain());
    assert!(!plan.uses_external_chain());
    assert_eq!(plan.cluster_ip_masquerade, None);
    assert_eq!(plan.backends(&plan.internal), (&[][..], false));
    assert_eq!(plan.name, "ns/web:http");
}

#[test]
fn cluster_policy_masquerades_external_traffic_then_goes_to_the_policy_chain() {
    let p = load_balancer(false);
    let eps = [endpoint("10.244.1.5:8080", "node-b")];
    let plan = PortPlan::new(&p, &eps, &node());
    assert!(plan.has_endpoints && plan.internal.has_endpoints() && plan.external.has_endpoints());
    assert!(plan.uses_cluster_chain() && !plan.uses_local_chain());
    assert_eq!(
        plan.external_chain,
        [ExternalStep::Masquerade, ExternalStep::ToPolicy]
    );
    assert_eq!(plan.reachable.len(), 1);
    assert_eq!(plan.backends(&plan.external), (&plan.cluster[..], false));
}

#[test]
fn external_local_without_local_endpoint_drops_but_short_circuits_node_and_pods() {
    let p = load_balancer(true);
    let eps = [endpoint("10.244.1.5:8080", "node-b")];
    let mut n = node();
    n.local_detector = LocalDetector::ClusterCidr("10.244.0.0/16".parse().unwrap());
    let plan = PortPlan::new(&p, &eps, &n);
    assert_eq!(plan.internal.unserved, None);
    assert_eq!(plan.external.policy, Policy::Local);
    assert_eq!(plan.external.unserved, Some(Unserved::Drop));
    assert_eq!(
        plan.external_chain,
        [
            ExternalStep::PodsToCluster,
            ExternalStep::MasqueradeFromNode,
            ExternalStep::FromNodeToCluster,
        ]
    );
    // ipvs keeps the cluster endpoints for this node's pods, and says it fell back.
    let (backends, fell_back) = plan.backends(&plan.external);
    assert_eq!(backends.len(), 1);
    assert!(fell_back);
    assert!(!plan.backends(&plan.internal).1);
    assert_eq!(
        plan.cluster_ip_masquerade,
        Some(ClusterIpMasquerade::OffCluster)
    );
}

#[test]
fn external_local_with_local_endpoint_uses_the_local_chain() {
    let p = load_balancer(true);
    let eps = [
        endpoint("10.244.0.7:8080", "node-a"),
        endpoint("10.244.1.5:8080", "node-b"),
    ];
    let plan = PortPlan::new(&p, &eps, &node());
    assert!(plan.uses_local_chain() && plan.uses_cluster_chain());
    assert_eq!(plan.local.len(), 1);
    assert_eq!(plan.cluster.len(), 2);
    // No detector: no pod short-circuit.
    assert_eq!(
        plan.external_chain,
        [
            ExternalStep::MasqueradeFromNode,
            ExternalStep::FromNodeToCluster,
            ExternalStep::ToPolicy,
        ]
    );
    let (backends, fell_back) = plan.backends(&plan.external);
    assert_eq!(backends[0].addr, eps[0].addr);
    assert!(!fell_back);
}

#[test]
fn internal_local_without_local_endpoint_drops_cluster_ip_traffic_only() {
    let p = ServicePort {
        internal_policy_local: true,
        ..port()
    };
    let eps = [endpoint("10.244.1.5:8080", "node-b")];
    let plan = PortPlan::new(&p, &eps, &node());
    assert!(plan.has_endpoints);
    assert_eq!(plan.internal.unserved, Some(Unserved::Drop));
    // Not externally reachable: the Cluster policy is never used, so no chain at all.
    assert!(!plan.uses_cluster_chain() && !plan.uses_local_chain());
    assert!(plan.reachable.is_empty());
    assert_eq!(plan.backends(&plan.internal), (&[][..], false));
}

#[test]
fn firewall_lets_the_node_in_when_its_primary_ip_is_in_a_range() {
    let mut p = load_balancer(false);
    p.load_balancer_source_ranges = vec!["203.0.113.0/25".parse().unwrap()];
    let mut n = node();
    // The first address of the node's family is the primary one.
    n.node_ips = vec![
        "2001:db8::1".parse().unwrap(),
        "203.0.113.4".parse().unwrap(),
    ];
    let plan = PortPlan::new(&p, &[], &n);
    let fw = plan.firewall.as_ref().expect("LB IP with source ranges");
    assert!(fw.allow_from_node);
    assert_eq!(fw.sources, p.load_balancer_source_ranges);
    // Without endpoints, iptables mode writes no firewall.
    assert_eq!(plan.firewall_if_served(), None);
    n.node_ips = vec!["198.51.100.1".parse().unwrap()];
    let plan = PortPlan::new(&p, &[], &n);
    assert!(!plan.firewall.as_ref().unwrap().allow_from_node);
}

#[test]
fn no_firewall_without_load_balancer_ips() {
    let mut p = port();
    p.load_balancer_source_ranges = vec!["203.0.113.0/25".parse().unwrap()];
    let plan = PortPlan::new(&p, &[], &node());
    assert_eq!(plan.firewall, None);
}

#[test]
fn cluster_ip_masquerade_follows_masquerade_all_and_the_detector_family() {
    let p = port();
    let eps = [endpoint("10.244.1.5:8080", "node-b")];
    let mut n = node();
    assert_eq!(PortPlan::new(&p, &eps, &n).cluster_ip_masquerade, None);
    n.local_detector = LocalDetector::ClusterCidr("fd00:10::/64".parse().unwrap());
    assert!(!detects_local(&n));
    assert_eq!(PortPlan::new(&p, &eps, &n).cluster_ip_masquerade, None);
    n.local_detector = LocalDetector::InterfaceNamePrefix("veth".into());
    assert_eq!(
        PortPlan::new(&p, &eps, &n).cluster_ip_masquerade,
        Some(ClusterIpMasquerade::OffCluster)
    );
    n.masquerade_all = true;
    assert_eq!(
        PortPlan::new(&p, &eps, &n).cluster_ip_masquerade,
        Some(ClusterIpMasquerade::All)
    );
}

#[test]
fn terminating_local_endpoints_are_reachable_next_to_the_cluster_ones() {
    let p = load_balancer(true);
    let mut local = endpoint("10.244.0.7:8080", "node-a");
    local.ready = false;
    local.terminating = true;
    let eps = [local, endpoint("10.244.1.5:8080", "node-b")];
    let plan = PortPlan::new(&p, &eps, &node());
    assert_eq!(plan.local.len(), 1);
    assert_eq!(plan.cluster.len(), 1);
    assert_eq!(plan.reachable.len(), 2);
    assert!(plan.external.has_endpoints());
}

#[test]
fn affinity_and_service_plan() {
    let mut p = port();
    p.session_affinity = SessionAffinity::ClientIp {
        timeout_seconds: 300,
    };
    let q = ServicePort {
        port: 443,
        ..p.clone()
    };
    let plan = ServicePlan::new([(&p, &[][..]), (&q, &[][..])], &node());
    assert_eq!(plan.ports.len(), 2);
    assert_eq!(plan.ports[0].affinity, Some(300));
    assert_eq!(plan.ports[1].port.port, 443);
}

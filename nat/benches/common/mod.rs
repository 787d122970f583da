//! What the nat benchmarks and the `compile_10k` example share: the synthetic cluster (one
//! ClusterIP Service a number, its endpoints), the node settings, and the timing helpers.
//! Benchmarks include it as `mod common;`, the example by `#[path]`.
#![allow(dead_code)] // each includer uses a part

use podnet_nat::iptables::Protocol;
use podnet_nat::kube::{
    Endpoint, IpFamily, ServiceKey, ServicePort, ServicePortName, ServiceType, SessionAffinity,
    TargetPort,
};
use podnet_nat::kube_proxy::{LocalDetector, NodeSettings};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// `false` (with a line on stderr) when the benchmark cannot run: it needs root for its
/// network namespaces, and `cargo bench -- --list` only lists.
pub(crate) fn can_run(bench: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if euid != 0 || std::env::args().any(|a| a == "--list") {
        eprintln!("{bench}: needs root (it uses network namespaces); skipped");
        return false;
    }
    true
}

/// The number in environment variable `name`, else `default`.
pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The name of Service `i`'s port: `ns<i % 100>/svc<i>:http`, TCP.
pub(crate) fn port_name(i: u32) -> ServicePortName {
    ServicePortName {
        service: ServiceKey::new(format!("ns{}", i % 100), format!("svc{i}")),
        port: "http".into(),
        protocol: Protocol::Tcp,
    }
}

/// Service `i`: ClusterIP 10.96.0.(i + 10) and on (in 10.96.0.0/12), port 80 to 8080.
pub(crate) fn cluster_ip_service(i: u32) -> ServicePort {
    ServicePort {
        name: port_name(i),
        cluster_ip: IpAddr::V4(Ipv4Addr::from(0x0a60_0000 + i + 10)),
        port: 80,
        node_port: None,
        external_ips: vec![],
        load_balancer_vips: vec![],
        load_balancer_source_ranges: vec![],
        session_affinity: SessionAffinity::None,
        health_check_node_port: None,
        external_policy_local: false,
        internal_policy_local: false,
        service_type: ServiceType::ClusterIp,
        target_port: TargetPort::Number(8080),
    }
}

/// A ready endpoint: pod address number `n` in 10.244.0.0/16, port 8080, on `node`.
pub(crate) fn endpoint(n: u32, node: String) -> Endpoint {
    Endpoint {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + n)), 8080),
        node_name: Some(node),
        zone: None,
        ready: true,
        serving: true,
        terminating: false,
        topology: Default::default(),
    }
}

/// node-1, IPv4, node address 198.18.0.2, pods in 10.244.0.0/16.
pub(crate) fn node_settings() -> NodeSettings {
    let mut node = NodeSettings::new("node-1", IpFamily::V4);
    node.node_ips = vec!["198.18.0.2".parse().unwrap()];
    node.local_detector = LocalDetector::ClusterCidr("10.244.0.0/16".parse().unwrap());
    node
}

/// The median of `v`.
pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `d` in milliseconds.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

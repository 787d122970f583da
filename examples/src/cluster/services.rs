//! Services on the simulated cluster: kube-proxy on every node, fed with the Services of a
//! file and EndpointSlices that podnet-cluster writes for them (every pod backs every Service,
//! unless the Service carries the label `podnet.io/node: nodeN`), and the checks
//! that ClusterIP and NodePort traffic is balanced over pods on different nodes.

use super::report::CheckResult;
use super::traffic::{ECHO_PORT, tcp_echo_from};
use super::{Cluster, ClusterError, other};
use podnet_nat::kube::{KubeObject, parse_objects};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// One Service port as the demo checks it.
#[derive(Debug, Clone)]
pub struct ServiceUnderTest {
    /// `namespace/name:port`.
    pub name: String,
    /// Its cluster IP.
    pub cluster_ip: Option<IpAddr>,
    /// Its port.
    pub port: u16,
    /// Its node port, if any.
    pub node_port: Option<u16>,
}

/// Reads the Services of `text` and returns them with the EndpointSlices (JSON) that back them
/// with the cluster's pods.
pub fn endpoint_slices(
    text: &str,
    source: &str,
    cluster: &Cluster,
) -> Result<(Vec<ServiceUnderTest>, String), ClusterError> {
    let (objects, warnings) = parse_objects(text, source);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let mut slices = Vec::new();
    let mut under_test = Vec::new();
    for o in objects {
        let KubeObject::Service(svc) = o else {
            continue;
        };
        let name = svc.metadata.name.clone();
        let ns = svc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let node_only = svc
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("podnet.io/node"))
            .cloned();
        let mut ports = Vec::new();
        for p in svc.spec.ports.clone().unwrap_or_default() {
            let target = p
                .target_port
                .as_ref()
                .and_then(|t| t.as_i64())
                .unwrap_or(i64::from(ECHO_PORT));
            ports.push(serde_json::json!({
                "name": p.name.clone().unwrap_or_default(),
                "port": target,
                "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            }));
            under_test.push(ServiceUnderTest {
                name: format!("{ns}/{name}:{}", p.name.clone().unwrap_or_default()),
                cluster_ip: svc.spec.cluster_ip.as_ref().and_then(|c| c.parse().ok()),
                port: u16::try_from(p.port).map_err(|_| other(format!("{name}: bad port")))?,
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
            });
        }
        let endpoints: Vec<serde_json::Value> = cluster
            .pods
            .iter()
            .filter(|p| {
                node_only
                    .as_deref()
                    .is_none_or(|n| n == format!("node{}", p.node))
            })
            .map(|p| {
                serde_json::json!({
                    "addresses": [p.ip.to_string()],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": format!("node{}", p.node),
                })
            })
            .collect();
        slices.push(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{name}-podnet"),
                "namespace": ns,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }));
    }
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": slices});
    Ok((
        under_test,
        serde_json::to_string_pretty(&list).unwrap_or_default(),
    ))
}

/// Writes each node's kube-proxy config directory (the Services file and the EndpointSlices).
pub fn write_config(
    cluster: &Cluster,
    services: &Path,
) -> Result<Vec<ServiceUnderTest>, ClusterError> {
    let text = std::fs::read_to_string(services)
        .map_err(|e| other(format!("{}: {e}", services.display())))?;
    let (under_test, slices) = endpoint_slices(&text, &services.display().to_string(), cluster)?;
    for n in &cluster.nodes {
        let dir = cluster.kube_proxy_dir(n.index);
        std::fs::create_dir_all(&dir).map_err(|e| other(e.to_string()))?;
        std::fs::write(dir.join("services.yaml"), &text).map_err(|e| other(e.to_string()))?;
        std::fs::write(dir.join("endpointslices.json"), &slices)
            .map_err(|e| other(e.to_string()))?;
    }
    Ok(under_test)
}

/// Connects `tries` times and returns the labels of the servers that answered.
fn spread(
    src: &podnet_netns::NetNs,
    dst: SocketAddr,
    tries: usize,
) -> Result<BTreeSet<String>, String> {
    let mut seen = BTreeSet::new();
    for _ in 0..tries {
        let (_, label) = tcp_echo_from(src, dst)?;
        seen.insert(label);
    }
    Ok(seen)
}

/// ClusterIP from a pod on the first node and NodePort from the fabric, each balanced over pods
/// on more than one node.
pub fn check(cluster: &Cluster, services: &[ServiceUnderTest]) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let nodes_of = |labels: &BTreeSet<String>| -> BTreeSet<String> {
        labels
            .iter()
            .map(|l| l.split('-').next().unwrap_or("").to_owned())
            .collect()
    };
    let Some(client) = cluster.pods.first() else {
        return out;
    };
    for s in services {
        if let Some(ip) = s.cluster_ip {
            let what = format!("svc  {} -> ClusterIP {ip}:{}", client.label(), s.port);
            match spread(&client.ns, SocketAddr::new(ip, s.port), 30) {
                Ok(l) if nodes_of(&l).len() > 1 || cluster.nodes.len() == 1 => {
                    out.push(CheckResult::ok(
                        what,
                        format!(
                            "answered by {} pods on {} nodes",
                            l.len(),
                            nodes_of(&l).len()
                        ),
                    ))
                }
                Ok(l) => out.push(CheckResult::fail(what, format!("only {l:?} answered"))),
                Err(e) => out.push(CheckResult::fail(what, e)),
            }
        }
        if let Some(np) = s.node_port {
            let node_ip = cluster.nodes[0].ip;
            let what = format!("svc  fabric -> NodePort {node_ip}:{np}");
            match spread(&cluster.fabric, SocketAddr::new(node_ip.into(), np), 30) {
                Ok(l) if nodes_of(&l).len() > 1 || cluster.nodes.len() == 1 => {
                    out.push(CheckResult::ok(
                        what,
                        format!(
                            "answered by {} pods on {} nodes",
                            l.len(),
                            nodes_of(&l).len()
                        ),
                    ))
                }
                Ok(l) => out.push(CheckResult::fail(what, format!("only {l:?} answered"))),
                Err(e) => out.push(CheckResult::fail(what, e)),
            }
        }
    }
    out
}

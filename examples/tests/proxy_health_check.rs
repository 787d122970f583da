//! Health-check node ports on the simulated cluster: a LoadBalancer Service with
//! `externalTrafficPolicy: Local` whose pods run on node2 only. Asked from the other node and
//! from the fabric (where a cloud load balancer's probes come from), node2 answers 200 with
//! its two local endpoints, node1 503 with none, in upstream's JSON; endpoints going not
//! ready turn node2's answer to 503; a new `healthCheckNodePort` moves the server, and the
//! Service's deletion closes it.

mod kube_proxy_cluster;

use kube_proxy_cluster::up_with;
use podnet_netns::NetNs;
use podnet_testsupport::require_root;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SERVICES: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: lb
    namespace: demo
    labels: {podnet.io/node: node2}
  spec:
    type: LoadBalancer
    externalTrafficPolicy: Local
    healthCheckNodePort: 32082
    clusterIP: 10.96.0.15
    ports: [{name: tcp, port: 80, targetPort: 7777, nodePort: 30085, protocol: TCP}]
- apiVersion: v1
  kind: Service
  metadata: {name: echo, namespace: demo}
  spec:
    type: NodePort
    clusterIP: 10.96.0.10
    ports: [{name: tcp, port: 80, targetPort: 7777, nodePort: 30080, protocol: TCP}]
"#;

/// `GET /` on `addr` from inside `ns`.
fn get(ns: &NetNs, addr: SocketAddr) -> std::io::Result<(u16, String)> {
    ns.run(|| podnet_examples::http::get(addr, "/"))
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// Asks until `ok` holds for the answer (or the connection error), for at most 10 s.
fn until(
    ns: &NetNs,
    addr: SocketAddr,
    what: &str,
    ok: impl Fn(&std::io::Result<(u16, String)>) -> bool,
) -> std::io::Result<(u16, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(ns, addr);
        if ok(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{addr}: {what}; last: {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn health_check_node_ports_answer_from_another_node() {
    require_root!();
    let g = up_with("kphc", "iptables", SERVICES);
    let c = g.0.as_ref().unwrap();
    let (node1, node2) = (&c.nodes[0], &c.nodes[1]);
    let at = |n: &podnet_examples::cluster::Node, port| SocketAddr::new(n.ip.into(), port);

    // node2 has both of the Service's pods: 200, from node1 and from the fabric.
    for from in [&node1.ns, &c.fabric] {
        let (code, body) = get(from, at(node2, 32082)).unwrap();
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "service": {"namespace": "demo", "name": "lb"},
                "localEndpoints": 2,
                "serviceProxyHealthy": true
            })
        );
        // Upstream's layout, tab-indented.
        assert!(
            body.starts_with("{\n\t\"service\": {\n\t\t\"namespace\": \"demo\",\n"),
            "{body:?}"
        );
    }
    // node1 has none: 503, same shape.
    let (code, body) = get(&node2.ns, at(node1, 32082)).unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"localEndpoints\": 0,"), "{body}");
    assert!(body.contains("\"serviceProxyHealthy\": true"), "{body}");
    // The Service keeps working through its node port on node2.
    let _servers: Vec<podnet_examples::cluster::EchoServer> = c
        .pods
        .iter()
        .map(|p| {
            podnet_examples::cluster::EchoServer::start_named(&p.ns, 7777, &p.label()).unwrap()
        })
        .collect();
    let (_, label) =
        podnet_examples::cluster::traffic::tcp_echo_from(&c.fabric, at(node2, 30085)).unwrap();
    assert!(label.starts_with("node2"), "{label}");

    // node2's endpoints go not ready (terminating, as in a rollout): 503.
    let dir = c.kube_proxy_dir(2);
    let slices = dir.join("endpointslices.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&slices).unwrap()).unwrap();
    for item in v["items"].as_array_mut().unwrap() {
        if item["metadata"]["labels"]["kubernetes.io/service-name"] == "lb" {
            for ep in item["endpoints"].as_array_mut().unwrap() {
                ep["conditions"] =
                    serde_json::json!({"ready": false, "serving": true, "terminating": true});
            }
        }
    }
    std::fs::write(&slices, serde_json::to_string(&v).unwrap()).unwrap();
    let (_, body) = until(&node1.ns, at(node2, 32082), "still 200", |r| {
        matches!(r, Ok((503, _)))
    })
    .unwrap();
    assert!(body.contains("\"localEndpoints\": 0,"), "{body}");

    // A new healthCheckNodePort: the old port closes, the new one answers.
    let services = dir.join("services.yaml");
    let text = std::fs::read_to_string(&services).unwrap();
    assert!(text.contains("healthCheckNodePort: 32082"));
    std::fs::write(
        &services,
        text.replace("healthCheckNodePort: 32082", "healthCheckNodePort: 32083"),
    )
    .unwrap();
    until(&node1.ns, at(node2, 32083), "not listening", |r| {
        matches!(r, Ok((503, _)))
    })
    .unwrap();
    let err = until(&node1.ns, at(node2, 32082), "still listening", |r| {
        // A connection accepted as the server closes is reset: not closed yet.
        matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    })
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");

    // The Service goes: its health check closes; the other Service never had one.
    std::fs::write(&services, "apiVersion: v1\nkind: List\nitems: []\n").unwrap();
    let err = until(&node1.ns, at(node2, 32083), "still listening", |r| {
        // A connection accepted as the server closes is reset: not closed yet.
        matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    })
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    // node1's server (its files unchanged) still answers.
    assert_eq!(get(&node2.ns, at(node1, 32082)).unwrap().0, 503);

    // node2's metrics counted the changes: two Services at start, then the endpoint edit,
    // the port change and the deletion (upstream's counters), and split full and partial
    // syncs.
    let m = |name: &str| kube_proxy_cluster::metric(&node2.ns, name, "iptables");
    assert!(m("kubeproxy_sync_proxy_rules_service_changes_total") >= 4.0);
    assert!(m("kubeproxy_sync_proxy_rules_endpoint_changes_total") >= 2.0);
    assert!(m("kubeproxy_sync_full_proxy_rules_duration_seconds_count") >= 1.0);
    assert!(m("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds") > 0.0);
    assert_eq!(
        m("kubeproxy_sync_proxy_rules_iptables_restore_failures_total"),
        0.0
    );
}

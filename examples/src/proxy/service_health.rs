//! Health-check node ports, as upstream's `pkg/proxy/healthcheck/service_health.go` serves
//! them: every Service with a `healthCheckNodePort` (type LoadBalancer with
//! `externalTrafficPolicy: Local`) gets an HTTP server on that port, on every address it
//! listens on, answering any path with
//!
//! ```text
//! {
//!     "service": {
//!         "namespace": "demo",
//!         "name": "web"
//!     },
//!     "localEndpoints": 2,
//!     "serviceProxyHealthy": true
//! }
//! ```
//!
//! (indented with tabs where this shows four spaces, no final newline, `application/json` with `X-Content-Type-Options:
//! nosniff`): 200 when this node has ready endpoints of the Service (counted by distinct IP)
//! and the proxy itself is healthy, 503 otherwise, so that a cloud load balancer sends traffic
//! only to nodes that can serve it locally. Servers are opened and closed as Services come,
//! go and change port, after each successful sync; a port that cannot be bound is logged and
//! tried again on the next sync, as upstream does.

use super::health::ProxierHealth;
use crate::http::{Handler, Request, Response, serve};
use podnet_nat::kube::{ClusterState, ServiceKey};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The health-check node port of every Service that has one (upstream's
/// `HealthCheckNodePorts`).
pub fn health_check_node_ports(state: &ClusterState) -> BTreeMap<ServiceKey, u16> {
    state
        .services
        .iter()
        .filter_map(|(name, port)| Some((name.service.clone(), port.health_check_node_port?)))
        .collect()
}

/// The number of ready endpoints on `node` of every Service that has any, counted by distinct
/// IP (an endpoint serving two ports counts once), as upstream's `LocalReadyEndpoints`.
/// Terminating (not ready) endpoints do not count: a node left with only those fails the
/// health check.
pub fn local_ready_endpoints(state: &ClusterState, node: &str) -> BTreeMap<ServiceKey, usize> {
    let mut ips: BTreeMap<ServiceKey, BTreeSet<IpAddr>> = BTreeMap::new();
    for (name, eps) in &state.endpoints {
        for ep in eps.iter().filter(|e| e.ready && e.is_local(node)) {
            ips.entry(name.service.clone()).or_default().insert(ep.ip());
        }
    }
    ips.into_iter().map(|(k, v)| (k, v.len())).collect()
}

/// What one Service's server reads on every request.
#[derive(Debug)]
struct Shared {
    /// Ready local endpoints.
    endpoints: AtomicUsize,
    /// The server is being closed (it answers as upstream answers a closed health check).
    closed: AtomicBool,
}

/// One open health check.
#[derive(Debug)]
struct Instance {
    port: u16,
    shared: Arc<Shared>,
    /// Stops this Service's servers.
    stop: Arc<AtomicBool>,
}

impl Instance {
    fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The answer for Service `key` with `count` ready local endpoints and the proxy's own health.
pub fn answer(key: &ServiceKey, count: usize, proxy_healthy: bool) -> Response {
    let status = if count != 0 && proxy_healthy {
        200
    } else {
        503
    };
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\
         \"localEndpoints\": {count},\n\t\"serviceProxyHealthy\": {proxy_healthy}\n}}",
        go_quote(&key.namespace),
        go_quote(&key.name)
    );
    Response::json(status, body)
}

/// `s` as Go's `%q` writes it, for the characters a Kubernetes name can hold and a few
/// more; anything unusual is escaped as JSON would be, which Go's syntax shares.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The health-check node port servers of one proxy (upstream's `ServiceHealthServer`).
#[derive(Debug)]
pub struct ServiceHealthServer {
    node: String,
    addresses: Vec<IpAddr>,
    proxier: Arc<ProxierHealth>,
    services: BTreeMap<ServiceKey, Instance>,
}

impl ServiceHealthServer {
    /// Servers for node `node` (endpoints with that `nodeName` are local), listening on
    /// `addresses` (upstream: the node's addresses within `--nodeport-addresses`; empty means
    /// every address, `0.0.0.0`), reporting `proxier`'s health as `serviceProxyHealthy`.
    pub fn new(
        node: impl Into<String>,
        addresses: Vec<IpAddr>,
        proxier: Arc<ProxierHealth>,
    ) -> ServiceHealthServer {
        let addresses = if addresses.is_empty() {
            vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
        } else {
            addresses
        };
        ServiceHealthServer {
            node: node.into(),
            addresses,
            proxier,
            services: BTreeMap::new(),
        }
    }

    /// Brings the servers and their endpoint counts in step with `state`.
    pub fn sync(&mut self, state: &ClusterState) {
        self.sync_services(&health_check_node_ports(state));
        self.sync_endpoints(&local_ready_endpoints(state, &self.node));
    }

    /// Opens a server for each Service of `wanted` not served yet, closes those no longer
    /// wanted or wanted on another port, and leaves the rest alone. A port that cannot be
    /// bound is logged and left out (the next call tries again).
    pub fn sync_services(&mut self, wanted: &BTreeMap<ServiceKey, u16>) {
        self.services.retain(|key, inst| {
            let keep = wanted.get(key) == Some(&inst.port);
            if !keep {
                tracing::info!(service = %key, port = inst.port, "closing health check");
                inst.close();
            }
            keep
        });
        for (key, &port) in wanted {
            if self.services.contains_key(key) {
                continue;
            }
            match self.open(key, port) {
                Ok(inst) => {
                    tracing::info!(service = %key, port, "opened health check");
                    self.services.insert(key.clone(), inst);
                }
                Err(e) => tracing::error!(
                    service = %key,
                    port,
                    "failed to start health check: {e}; trying again on the next sync"
                ),
            }
        }
    }

    /// Sets each served Service's ready local endpoint count from `counts`; Services missing
    /// from it have none.
    pub fn sync_endpoints(&mut self, counts: &BTreeMap<ServiceKey, usize>) {
        for (key, inst) in &self.services {
            let n = counts.get(key).copied().unwrap_or(0);
            inst.shared.endpoints.store(n, Ordering::Relaxed);
        }
    }

    /// The Services served, with their ports.
    pub fn ports(&self) -> BTreeMap<ServiceKey, u16> {
        self.services
            .iter()
            .map(|(k, i)| (k.clone(), i.port))
            .collect()
    }

    fn open(&self, key: &ServiceKey, port: u16) -> std::io::Result<Instance> {
        let shared = Arc::new(Shared {
            endpoints: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (k, s, proxier) = (key.clone(), shared.clone(), self.proxier.clone());
        let handler: Handler = Arc::new(move |_: &Request| {
            if s.closed.load(Ordering::Relaxed) {
                // Upstream's handler writes nothing for a closed health check: Go sends an
                // empty 200.
                return Response {
                    status: 200,
                    headers: Vec::new(),
                    body: String::new(),
                };
            }
            answer(
                &k,
                s.endpoints.load(Ordering::Relaxed),
                proxier.is_healthy(),
            )
        });
        for ip in &self.addresses {
            if let Err(e) = serve(SocketAddr::new(*ip, port), handler.clone(), stop.clone()) {
                // What was opened is closed again, so that a later try can bind it.
                stop.store(true, Ordering::Relaxed);
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", SocketAddr::new(*ip, port)),
                ));
            }
        }
        Ok(Instance { port, shared, stop })
    }
}

impl Drop for ServiceHealthServer {
    fn drop(&mut self) {
        for inst in self.services.values() {
            inst.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_nat::kube::{IpFamily, parse_objects};
    use std::time::Duration;

    const OBJECTS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: lb, namespace: demo}
  spec:
    type: LoadBalancer
    externalTrafficPolicy: Local
    healthCheckNodePort: 32100
    clusterIP: 10.96.0.20
    ports:
    - {name: http, port: 80, targetPort: 8080, nodePort: 30100}
    - {name: https, port: 443, targetPort: 8443, nodePort: 30101}
- apiVersion: v1
  kind: Service
  metadata: {name: cluster, namespace: demo}
  spec:
    type: LoadBalancer
    healthCheckNodePort: 32101
    clusterIP: 10.96.0.21
    ports: [{name: http, port: 80, nodePort: 30102}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: lb-1, namespace: demo, labels: {kubernetes.io/service-name: lb}}
  addressType: IPv4
  ports: [{name: http, port: 8080}, {name: https, port: 8443}]
  endpoints:
  - {addresses: [10.244.1.2], nodeName: node1}
  - {addresses: [10.244.1.3], nodeName: node1, conditions: {ready: false, serving: true, terminating: true}}
  - {addresses: [10.244.2.2], nodeName: node2}
"#;

    fn state() -> ClusterState {
        let (objects, warnings) = parse_objects(OBJECTS, "test");
        assert!(warnings.is_empty(), "{warnings:?}");
        ClusterState::from_objects(&objects, IpFamily::V4).0
    }

    #[test]
    fn ports_only_for_local_policy_load_balancers() {
        let ports = health_check_node_ports(&state());
        assert_eq!(
            ports.into_iter().collect::<Vec<_>>(),
            [(ServiceKey::new("demo", "lb"), 32100)]
        );
    }

    #[test]
    fn local_ready_endpoints_by_distinct_ip() {
        let s = state();
        let lb = ServiceKey::new("demo", "lb");
        // Two ports on 10.244.1.2 count once; the terminating one not at all.
        assert_eq!(local_ready_endpoints(&s, "node1").get(&lb), Some(&1));
        assert_eq!(local_ready_endpoints(&s, "node2").get(&lb), Some(&1));
        assert_eq!(local_ready_endpoints(&s, "node3").get(&lb), None);
        assert!(local_ready_endpoints(&s, "").is_empty());
    }

    #[test]
    fn answers_as_upstream() {
        let key = ServiceKey::new("demo", "lb");
        let r = answer(&key, 2, true);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"demo\",\n\t\t\"name\": \"lb\"\n\t},\n\t\
             \"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
        );
        assert_eq!(
            r.headers,
            [
                ("Content-Type", "application/json".to_owned()),
                ("X-Content-Type-Options", "nosniff".to_owned())
            ]
        );
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["service"]["name"], "lb");
        // No endpoints, or the proxy itself unhealthy: 503, with the same body shape.
        assert_eq!(answer(&key, 0, true).status, 503);
        let r = answer(&key, 3, false);
        assert_eq!(r.status, 503);
        assert!(r.body.contains("\"localEndpoints\": 3,"), "{}", r.body);
        assert!(r.body.ends_with("\"serviceProxyHealthy\": false\n}"));
        assert_eq!(go_quote("a\"b\\c\u{1}"), r#""a\"b\\c\x01""#);
    }

    #[test]
    fn servers_open_answer_and_close() {
        let health = Arc::new(ProxierHealth::new(Duration::from_secs(30)));
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut s = ServiceHealthServer::new("node1", vec![lo], health);
        // A free port, found by binding 0 (then released).
        let port = std::net::TcpListener::bind((lo, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let key = ServiceKey::new("demo", "lb");
        s.sync_services(&BTreeMap::from([(key.clone(), port)]));
        assert_eq!(s.ports(), BTreeMap::from([(key.clone(), port)]));
        let addr = SocketAddr::new(lo, port);
        let (code, body) = crate::http::get(addr, "/any/path").unwrap();
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("\"localEndpoints\": 0,"), "{body}");
        s.sync_endpoints(&BTreeMap::from([(key.clone(), 2)]));
        let (code, body) = crate::http::get(addr, "/").unwrap();
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"localEndpoints\": 2,"), "{body}");
        // Missing from the counts: none.
        s.sync_endpoints(&BTreeMap::new());
        assert_eq!(crate::http::get(addr, "/").unwrap().0, 503);
        // The Service goes: the port closes.
        s.sync_services(&BTreeMap::new());
        assert!(s.ports().is_empty());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(addr).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "{addr} still listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A port taken by someone else: logged, not served, tried again later.
        let taken = std::net::TcpListener::bind((lo, 0)).unwrap();
        let busy = taken.local_addr().unwrap().port();
        s.sync_services(&BTreeMap::from([(key.clone(), busy)]));
        assert!(s.ports().is_empty());
        drop(taken);
        s.sync_services(&BTreeMap::from([(key.clone(), busy)]));
        assert_eq!(s.ports(), BTreeMap::from([(key, busy)]));
    }
}

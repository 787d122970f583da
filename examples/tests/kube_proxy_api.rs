//! kube-proxy's input from the API server, against the test API server
//! (`podnet_testsupport::kube_api`, a fixture): the sync loop with a recording proxy mode (no
//! kernel, no root), `--dry-run` from the API server equal to `--dry-run` from files, and the
//! in-cluster config from a service account directory.

use podnet_examples::proxy::node_addrs::NodeIpSource;
use podnet_examples::proxy::{
    HttpAddresses, Input, KubeInput, Mode, ProxyOptions, SyncOutcome, run_with,
};
use podnet_nat::kube::{ClusterState, IpFamily};
use podnet_testsupport::kube_api::{ApiServer, ApiServerOptions, Kind};
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn service(name: &str, ip: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "demo", "labels": labels},
           "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                    "trafficDistribution": "PreferClose",
                    "ports": [{"name": "tcp", "port": 80, "protocol": "TCP", "targetPort": 7777}]}})
}

/// A slice of Service `svc` with endpoints `(ip, zone)`, changed at `trigger` (RFC 3339).
fn slice(name: &str, svc: &str, eps: &[(&str, &str)], trigger: Option<&str>) -> Value {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|(ip, zone)| {
            json!({"addresses": [ip], "conditions": {"ready": true}, "zone": zone,
                   "nodeName": format!("node-{zone}")})
        })
        .collect();
    let mut annotations = json!({});
    if let Some(t) = trigger {
        annotations["endpoints.kubernetes.io/last-change-trigger-time"] = json!(t);
    }
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": name, "namespace": "demo", "annotations": annotations,
                        "labels": {"kubernetes.io/service-name": svc}},
           "addressType": "IPv4",
           "ports": [{"name": "tcp", "port": 7777, "protocol": "TCP"}],
           "endpoints": endpoints})
}

fn node(name: &str, zone: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}})
}

/// A free port on loopback (bound, then let go).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A proxy mode that keeps what it was asked to sync.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<ClusterState>>>);

impl Recorder {
    fn last(&self) -> Option<ClusterState> {
        self.0.lock().unwrap().last().cloned()
    }

    fn syncs(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The endpoints of `demo/<svc>:tcp` in the last sync, as `ip:port`.
    fn endpoints(&self, svc: &str) -> Option<Vec<String>> {
        let s = self.last()?;
        s.endpoints.iter().find_map(|(n, eps)| {
            (&*n.service.name == svc).then(|| eps.iter().map(|e| e.addr.to_string()).collect())
        })
    }

    /// The Cluster-policy endpoints of `demo/<svc>:tcp` on node-a, as `ip:port`.
    fn chosen(&self, svc: &str) -> Vec<String> {
        let Some(s) = self.last() else {
            return Vec::new();
        };
        let Some((name, port)) = s.services.iter().find(|(n, _)| &*n.service.name == svc) else {
            return Vec::new();
        };
        podnet_nat::kube::categorize_endpoints(s.endpoints_of(name), port, "node-a")
            .cluster
            .iter()
            .map(|e| e.addr.to_string())
            .collect()
    }

    fn services(&self) -> Vec<String> {
        self.last()
            .map(|s| {
                s.services
                    .keys()
                    .map(|n| n.service.name.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Mode for Recorder {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn sync(&mut self, state: &ClusterState, full: bool) -> Result<SyncOutcome, String> {
        self.0.lock().unwrap().push(state.clone());
        Ok(SyncOutcome {
            full,
            duration: Duration::from_millis(1),
            rules: state.services.len(),
            conntrack_deleted: 0,
        })
    }

    fn dry_run(&self, _: &ClusterState) -> String {
        String::new()
    }

    fn cleanup(&mut self) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    fn set_node_ips(&mut self, _: Vec<std::net::IpAddr>) {}
}

/// The sync loop on the API server: nothing synced and `/healthz` 503 (saying what is
/// missing) until the first lists; then every watch event reaches the mode: a Service added,
/// an endpoint added and removed, a Service of another proxy ignored, a 410 Gone relist, a
/// deleted Service; topology from the Node's zone; network programming latency observed.
#[test]
fn the_sync_loop_follows_the_api_server() {
    let api_port = free_port();
    let healthz = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let input = KubeInput::start(
        &podnet_examples::kubeapi::KubeOptions {
            kubeconfig: None,
            master: Some(format!("http://127.0.0.1:{api_port}")),
        },
        "node-a",
    )
    .unwrap();
    let rec = Recorder::default();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = ProxyOptions {
        config_dir: Default::default(),
        sync_period: Duration::from_secs(30),
        min_sync_period: Duration::from_millis(50),
        http: HttpAddresses {
            metrics: Some(metrics),
            healthz: Some(healthz),
        },
        node_ips: NodeIpSource::Fixed(vec!["192.0.2.1".parse().unwrap()]),
        node_name: "node-a".into(),
        health_check_addresses: Vec::new(),
    };
    let (r, s) = (rec.clone(), stop.clone());
    let loop_ =
        std::thread::spawn(move || run_with(Box::new(r), opts, Box::new(input), IpFamily::V4, s));
    let _stop = StopOnDrop(stop.clone());

    // No API server yet: no sync, and /healthz says why.
    until("/healthz", 10, || {
        podnet_examples::http::get(healthz, "/healthz").is_ok()
    });
    std::thread::sleep(Duration::from_millis(500));
    let (code, body) = podnet_examples::http::get(healthz, "/healthz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("waiting for the first list of Services"),
        "{body}"
    );
    assert_eq!(rec.syncs(), 0);

    let server = ApiServer::start(ApiServerOptions {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, api_port)),
        ..ApiServerOptions::default()
    })
    .unwrap();
    server.create(node("node-a", "a")).unwrap();
    server
        .create(service("web", "10.96.0.10", json!({})))
        .unwrap();
    server
        .create(service(
            "other",
            "10.96.0.11",
            json!({"service.kubernetes.io/service-proxy-name": "someone-else"}),
        ))
        .unwrap();
    let trigger = "2020-01-01T00:00:00Z";
    server
        .create(slice("web-1", "web", &[("10.244.1.2", "a")], Some(trigger)))
        .unwrap();
    until("the first sync", 30, || {
        rec.endpoints("web") == Some(vec!["10.244.1.2:7777".into()])
    });
    assert_eq!(
        rec.services(),
        ["web"],
        "the other proxy's Service is not ours"
    );
    let (code, body) = podnet_examples::http::get(healthz, "/healthz").unwrap();
    assert_eq!(code, 200, "{body}");

    // An endpoint in another zone: PreferClose keeps traffic in node-a's zone.
    server
        .apply(slice(
            "web-1",
            "web",
            &[("10.244.1.2", "a"), ("10.244.2.2", "b")],
            Some("2020-01-01T00:00:01Z"),
        ))
        .unwrap();
    until("the added endpoint", 10, || {
        rec.endpoints("web").is_some_and(|e| e.len() == 2)
    });
    assert_eq!(rec.chosen("web"), ["10.244.1.2:7777"]);
    // node-a moves to zone b.
    server.apply(node("node-a", "b")).unwrap();
    until("the zone change", 10, || {
        rec.chosen("web") == ["10.244.2.2:7777"]
    });

    // 410 Gone: the watches relist; a change made meanwhile arrives.
    server.compact();
    server.expire_watches();
    server
        .apply(slice("web-1", "web", &[("10.244.2.2", "b")], None))
        .unwrap();
    until("the removed endpoint, after the relist", 30, || {
        rec.endpoints("web") == Some(vec!["10.244.2.2:7777".into()])
    });
    // The expired watch is relisted (after a backoff; the change may have come before it).
    until("the relist", 30, || {
        server
            .requests()
            .iter()
            .filter(|r| r.contains("/endpointslices") && !r.contains("watch="))
            .count()
            >= 2
    });
    assert_eq!(rec.endpoints("web"), Some(vec!["10.244.2.2:7777".into()]));

    // The Service deleted: its rules go.
    server.delete(Kind::Service, "demo", "web").unwrap();
    until("the deleted Service", 10, || rec.services().is_empty());

    // Network programming latency: the two annotated slice changes, observed after their
    // syncs (long after 2020).
    let (_, text) = podnet_examples::http::get(metrics, "/metrics").unwrap();
    let count = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "kubeproxy_network_programming_duration_seconds_count{mode=\"iptables\"} ",
            )
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(count.trim(), "2", "{text}");
    assert!(
        text.contains(
            "kubeproxy_network_programming_duration_seconds_bucket{mode=\"iptables\",le=\"300.0\"} 0"
        ),
        "{text}"
    );

    stop.store(true, Ordering::SeqCst);
    loop_.join().unwrap().unwrap();
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The objects of nat's golden fixture, with a Service of another proxy added.
fn fixture_objects() -> Vec<Value> {
    let text = include_str!("../../nat/tests/fixtures/overall.yaml");
    let mut out = Vec::new();
    let mut stack: Vec<Value> = Vec::new();
    for doc in text.split("\n---") {
        let v: Value = yaml_serde::from_str(doc).unwrap_or(Value::Null);
        stack.push(v);
    }
    while let Some(v) = stack.pop() {
        match v {
            Value::Null => {}
            Value::Array(items) => stack.extend(items),
            v if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) => {
                stack.extend(v["items"].as_array().cloned().unwrap_or_default());
            }
            v => out.push(v),
        }
    }
    out
}

fn dry_run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-proxy"))
        .args(["--dry-run", "--hostname-override", "test-node"])
        .args(["--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8"])
        .args(args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sorted(text: &str) -> Vec<&str> {
    let mut v: Vec<&str> = text.lines().collect();
    v.sort();
    v
}

/// `--dry-run --master URL` writes exactly what `--dry-run --config-dir` writes for the same
/// objects, in every mode.
#[test]
fn dry_run_from_the_api_server_equals_dry_run_from_files() {
    let server = ApiServer::start(ApiServerOptions::default()).unwrap();
    let objects = fixture_objects();
    assert!(objects.len() > 10, "{}", objects.len());
    for o in &objects {
        server.create(o.clone()).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("podnet-kp-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("overall.yaml"),
        include_str!("../../nat/tests/fixtures/overall.yaml"),
    )
    .unwrap();
    for mode in ["iptables", "nftables", "ipvs"] {
        let (ok, files, err) = dry_run(
            &["--proxy-mode", mode, "--config-dir", dir.to_str().unwrap()],
            &[],
        );
        assert!(ok, "{err}");
        let (ok, api, err) = dry_run(&["--proxy-mode", mode, "--master", &server.url()], &[]);
        assert!(ok, "{err}");
        assert!(files.lines().count() > 50, "{mode}: {files}");
        assert_eq!(sorted(&api), sorted(&files), "{mode}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With neither --kubeconfig nor --master, the in-cluster config: HTTPS to
/// `KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT` with the service account's token and CA
/// (their directory moved by `PODNET_SERVICE_ACCOUNT_DIR`); each missing piece is named.
#[test]
fn in_cluster_config_from_the_service_account() {
    use podnet_testsupport::kube_api::ServerTls;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let server = ApiServer::start(ApiServerOptions {
        token: Some("sa-token".into()),
        tls: Some(ServerTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: ca.pem(),
        }),
        ..ApiServerOptions::default()
    })
    .unwrap();
    server
        .create(service("web", "10.96.0.10", json!({})))
        .unwrap();
    server
        .create(slice("web-1", "web", &[("10.244.1.2", "a")], None))
        .unwrap();
    let sa = std::env::temp_dir().join(format!("podnet-kp-sa-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&sa);
    std::fs::create_dir_all(&sa).unwrap();
    // As the kubelet writes it: no newline (kube-rs sends the file as it is).
    std::fs::write(sa.join("token"), "sa-token").unwrap();
    std::fs::write(sa.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(sa.join("namespace"), "kube-system\n").unwrap();
    let port = server.addr().port().to_string();
    let sa_dir = sa.to_str().unwrap();
    let (ok, out, err) = dry_run(
        &[],
        &[
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", &port),
            ("PODNET_SERVICE_ACCOUNT_DIR", sa_dir),
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("10.96.0.10") && out.contains("10.244.1.2:7777"),
        "{out}"
    );
    // Missing pieces are named.
    let (ok, _, err) = dry_run(&[], &[("PODNET_SERVICE_ACCOUNT_DIR", sa_dir)]);
    assert!(!ok && err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
    std::fs::remove_file(sa.join("token")).unwrap();
    let (ok, _, err) = dry_run(
        &[],
        &[
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", &port),
            ("PODNET_SERVICE_ACCOUNT_DIR", sa_dir),
        ],
    );
    assert!(!ok && err.contains("token"), "{err}");
    let _ = std::fs::remove_dir_all(&sa);
}

/// The input alone: Service CIDRs from the API server, and the Node by name only.
#[test]
fn service_cidrs_and_the_own_node() {
    let server = ApiServer::start(ApiServerOptions::default()).unwrap();
    server
        .create(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
                       "metadata": {"name": "kubernetes"},
                       "spec": {"cidrs": ["10.96.0.0/16", "fd00:10:96::/112"]}}),
        )
        .unwrap();
    server.create(node("node-a", "a")).unwrap();
    server.create(node("node-b", "b")).unwrap();
    let mut input = KubeInput::start(
        &podnet_examples::kubeapi::KubeOptions {
            kubeconfig: None,
            master: Some(server.url()),
        },
        "node-a",
    )
    .unwrap();
    until("the first lists", 30, || input.synced().is_ok());
    let cidrs: Vec<String> = input
        .service_cidrs()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(cidrs, ["10.96.0.0/16", "fd00:10:96::/112"]);
    let read = input.read();
    let nodes: Vec<&str> = read
        .objects
        .iter()
        .filter_map(|o| match o {
            podnet_nat::kube::KubeObject::Node(n) => Some(n.metadata.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(nodes, ["node-a"]);
    // A new ServiceCIDR wakes the input.
    let _ = input.wait(Duration::from_millis(10));
    server
        .create(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
                       "metadata": {"name": "extra"}, "spec": {"cidrs": ["10.97.0.0/24"]}}),
        )
        .unwrap();
    until("the new ServiceCIDR", 10, || {
        input.wait(Duration::from_millis(100));
        input.service_cidrs().is_some_and(|c| c.len() == 3)
    });
}

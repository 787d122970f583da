//! kube-proxy's HTTP endpoints against upstream's behaviour, with a proxy mode that fails on
//! demand: idle connections do not stall `/healthz`, `/healthz` and `/livez` turn 503 (with
//! upstream's JSON body and headers) once a queued sync is overdue, `/metrics` is served on the
//! metrics address only. Inside a test namespace, on its loopback.

use podnet_examples::proxy::{HttpAddresses, Mode, ProxyOptions, SyncOutcome, run};
use podnet_nat::kube::{ClusterState, IpFamily};
use podnet_testsupport::{TestNs, require_root};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A mode whose syncs fail while `failing` is set.
struct Flaky {
    failing: Arc<AtomicBool>,
    syncs: Arc<AtomicUsize>,
}

impl Mode for Flaky {
    fn name(&self) -> &'static str {
        "iptables"
    }
    fn sync(&mut self, _: &ClusterState, full: bool) -> Result<SyncOutcome, String> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if self.failing.load(Ordering::Relaxed) {
            return Err("iptables-restore: exit status 4 (a test failure)".into());
        }
        Ok(SyncOutcome {
            full,
            duration: Duration::from_millis(1),
            rules: 3,
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

const HEALTHZ: &str = "127.0.0.1:10256";
const METRICS: &str = "127.0.0.1:10249";

/// One raw HTTP/1.1 exchange: status, headers (lower-cased names) and body.
fn get(addr: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {reply:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A proxy loop started by [`start`]: stops it and removes its config directory when dropped,
/// also when the test fails.
struct Running {
    stop: Arc<AtomicBool>,
    dir: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the proxy loop inside `ns` with `mode` until the returned guard's flag is set.
fn start(ns: &TestNs, mode: Flaky, sync_period: Duration) -> Running {
    let dir = std::env::temp_dir().join(format!(
        "podnet-kphttp-{}-{}",
        std::process::id(),
        ns.name()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("services.yaml"), "kind: List\nitems: []\n").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let running = Running {
        stop: stop.clone(),
        dir: dir.clone(),
    };
    let opts = ProxyOptions {
        config_dir: dir,
        sync_period,
        min_sync_period: Duration::from_millis(100),
        http: HttpAddresses {
            metrics: Some(METRICS.parse().unwrap()),
            healthz: Some(HEALTHZ.parse().unwrap()),
        },
        node_ips: podnet_examples::proxy::node_addrs::NodeIpSource::Fixed(Vec::new()),
        node_name: "node1".into(),
        health_check_addresses: Vec::new(),
    };
    let (ns2, stop2) = (ns.ns().clone(), stop.clone());
    std::thread::spawn(move || {
        ns2.run(move || run(Box::new(mode), opts, IpFamily::V4, stop2))
            .unwrap()
            .unwrap();
    });
    // Listening once the loop started.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns.run(|| TcpStream::connect(HEALTHZ).is_err()).unwrap() {
        assert!(
            Instant::now() < deadline,
            "kube-proxy's healthz never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

#[test]
fn idle_connections_do_not_stall_healthz() {
    require_root!();
    let ns = TestNs::new("kphttp-idle");
    let mode = Flaky {
        failing: Arc::new(AtomicBool::new(false)),
        syncs: Arc::new(AtomicUsize::new(0)),
    };
    let stop = start(&ns, mode, Duration::from_secs(30));
    let took = ns
        .run(|| {
            // Ten clients that connect and say nothing, and ten that stop mid-request.
            let mut idle: Vec<TcpStream> = Vec::new();
            for i in 0..20 {
                let mut s = TcpStream::connect(HEALTHZ).unwrap();
                if i % 2 == 1 {
                    s.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
                }
                idle.push(s);
            }
            let t = Instant::now();
            let (status, _, _) = get(HEALTHZ, "/healthz");
            assert_eq!(status, 200);
            let (status, _, _) = get(METRICS, "/metrics");
            assert_eq!(status, 200);
            drop(idle);
            t.elapsed()
        })
        .unwrap();
    drop(stop);
    assert!(
        took < Duration::from_millis(500),
        "/healthz and /metrics took {took:?} behind 20 idle connections"
    );
}

#[test]
fn healthz_turns_503_when_syncs_fail_and_metrics_stay_on_their_port() {
    require_root!();
    let ns = TestNs::new("kphttp-stale");
    let failing = Arc::new(AtomicBool::new(false));
    let syncs = Arc::new(AtomicUsize::new(0));
    let mode = Flaky {
        failing: failing.clone(),
        syncs: syncs.clone(),
    };
    // A full resync every second: the health timeout is two periods, 2 s.
    let stop = start(&ns, mode, Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while syncs.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no sync");
        std::thread::sleep(Duration::from_millis(50));
    }
    ns.run(|| {
        // Healthy: upstream's JSON body and headers.
        for path in ["/healthz", "/livez"] {
            let (status, headers, body) = get(HEALTHZ, path);
            assert_eq!(status, 200, "{path}: {body}");
            assert_eq!(header(&headers, "content-type"), Some("application/json"));
            assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
            let v: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            assert!(
                v["lastUpdated"].as_str().unwrap().contains(" +0000 UTC"),
                "{body}"
            );
            assert!(v["currentTime"].is_string(), "{body}");
            assert_eq!(
                v.get("nodeEligible").is_some(),
                path == "/healthz",
                "{body}"
            );
        }
        // /metrics on the metrics address only; nothing but the health endpoints on healthz.
        let (status, _, body) = get(METRICS, "/metrics");
        assert_eq!(status, 200);
        assert!(
            body.contains("kubeproxy_sync_proxy_rules_duration_seconds_count"),
            "{body}"
        );
        assert_eq!(get(METRICS, "/proxyMode").2, "iptables");
        assert_eq!(get(METRICS, "/healthz").0, 200);
        for path in ["/metrics", "/proxyMode", "/", "/healthzx"] {
            let (status, _, body) = get(HEALTHZ, path);
            assert_eq!(status, 404, "{path} on the healthz port: {body}");
        }
    })
    .unwrap();

    // Every sync fails from now on: 200 while the queued resync is younger than 2 s, then 503.
    failing.store(true, Ordering::Relaxed);
    let failed_at = Instant::now();
    let turned = ns
        .run(|| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (status, headers, body) = get(HEALTHZ, "/healthz");
                if status == 503 {
                    assert_eq!(header(&headers, "content-type"), Some("application/json"));
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert_ne!(v["lastUpdated"], v["currentTime"], "{body}");
                    assert_eq!(v["nodeEligible"], true, "{body}");
                    assert_eq!(get(HEALTHZ, "/livez").0, 503);
                    return Instant::now();
                }
                assert!(
                    Instant::now() < deadline,
                    "still {status} after 10 s of failures"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .unwrap();
    let after = turned - failed_at;
    assert!(
        after >= Duration::from_millis(1500),
        "503 after only {after:?}: upstream waits for twice the sync period"
    );

    // Syncs succeed again: healthy again.
    failing.store(false, Ordering::Relaxed);
    ns.run(|| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while get(HEALTHZ, "/healthz").0 != 200 {
            assert!(Instant::now() < deadline, "not healthy again");
            std::thread::sleep(Duration::from_millis(100));
        }
        let (_, _, body) = get(METRICS, "/metrics");
        assert!(
            body.contains("kubeproxy_proxy_healthz_total{code=\"503\"}"),
            "{body}"
        );
    })
    .unwrap();
    drop(stop);
}

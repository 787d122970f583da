//! What the flanneld cluster tests share: a cluster torn down when a test ends, its options,
//! the full traffic check, and waiting for a peer to be programmed.
#![allow(dead_code, unreachable_pub)]

use podnet_examples::cluster::{Cluster, Options, run_checks};
use podnet_links::Handle;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// Tears the cluster down when the test ends, passing or failing.
pub struct Guard(pub Option<Cluster>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.down();
        }
    }
}

impl std::ops::Deref for Guard {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        self.0.as_ref().expect("cluster")
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Cluster {
        self.0.as_mut().expect("cluster")
    }
}

pub fn options(tag: &str, backend: &str, nodes: usize, pods: usize, etcd: bool) -> Options {
    let prefix = format!("{}{}-{tag}", podnet_testsupport::PREFIX, std::process::id());
    let mut o = Options::new(&prefix);
    o.backend = backend.into();
    o.nodes = nodes;
    o.pods = pods;
    o.etcd = etcd;
    o.flanneld = PathBuf::from(env!("CARGO_BIN_EXE_flanneld"));
    o.cni = PathBuf::from(env!("CARGO_BIN_EXE_podnet-cni"));
    o
}

pub fn up(opts: Options) -> Guard {
    let c = Cluster::up(opts, &mut |m| eprintln!("{m}")).expect("cluster up");
    Guard(Some(c))
}

pub fn check_all(c: &Cluster) {
    let report = run_checks(c, &AtomicBool::new(false));
    eprintln!("{report}");
    assert!(report.passed(), "failed checks:\n{report}");
    assert_eq!(
        report.results.len(),
        3 * 2 * 4 * 2 + 6,
        "every pair and every pod checked"
    );
}

/// Waits until node `h` routes `subnet` over flannel.1 and has the peer's FDB entry.
pub fn wait_programmed(
    h: &Handle,
    subnet: &str,
    peer_ip: &str,
    timeout: Duration,
    log: &std::path::Path,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let routed = h
            .route()
            .list()
            .unwrap()
            .iter()
            .any(|r| r.dst.to_string() == subnet && r.onlink);
        let fdb = h
            .fdb()
            .list(Some("flannel.1".into()))
            .unwrap()
            .iter()
            .any(|e| e.dst.map(|d| d.to_string()) == Some(peer_ip.to_string()));
        if routed && fdb {
            return;
        }
        if Instant::now() >= deadline {
            let routes: Vec<String> = h
                .route()
                .list()
                .unwrap()
                .iter()
                .map(|r| r.to_string())
                .collect();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "{subnet} via {peer_ip} not programmed in {timeout:?}; routes: {routes:?}\nflanneld log (newest first):\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

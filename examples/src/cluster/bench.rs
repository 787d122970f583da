//! `podnet-cluster bench`: iperf3 TCP throughput pod to pod across two nodes for each flannel
//! backend, and over a plain veth pair (the limit), in the same run.

use super::{Cluster, ClusterError, Options, other};
use podnet_links::{Handle, Veth};
use podnet_netns::NetNs;
use std::process::{Child, Stdio};
use std::time::Duration;

/// One measured path.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// What was measured.
    pub path: String,
    /// Gbit/s received.
    pub gbps: f64,
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// iperf3 from `client` to `server_ip` (an iperf3 server runs in `server`) for `secs`.
pub fn iperf3(
    client: &NetNs,
    server: &NetNs,
    server_ip: &str,
    secs: u32,
) -> Result<f64, ClusterError> {
    let _srv = Server(
        server
            .command("iperf3")
            .args(["-s", "-1", "-p", "5201"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| other(format!("iperf3 (Debian package iperf3): {e}")))?,
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = client
        .command("iperf3")
        .args(["-c", server_ip, "-p", "5201", "-J", "-t", &secs.to_string()])
        .output()
        .map_err(|e| other(format!("iperf3: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| other(format!("iperf3 output: {e}")))?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| other(format!("iperf3 failed: {}", v["error"])))
}

/// Two namespaces joined directly by a veth pair: the limit any overlay is measured against.
/// Deleted on drop.
struct VethPath {
    a: NetNs,
    b: NetNs,
    names: [String; 2],
}

impl VethPath {
    fn new(prefix: &str) -> Result<VethPath, ClusterError> {
        let names = [format!("{prefix}-veth-a"), format!("{prefix}-veth-b")];
        let a = NetNs::add(&names[0])?;
        let b = match NetNs::add(&names[1]) {
            Ok(b) => b,
            Err(e) => {
                let _ = NetNs::del(&names[0]);
                return Err(e.into());
            }
        };
        let path = VethPath { a, b, names };
        let ha = Handle::in_ns(&path.a)?;
        let hb = Handle::in_ns(&path.b)?;
        for h in [&ha, &hb] {
            h.link().set("lo").up().apply()?;
        }
        ha.link()
            .add(&Veth::new("eth0").peer("eth0").peer_netns(&path.b))?;
        ha.addr().add(
            "eth0",
            "10.244.255.1/30"
                .parse::<podnet_links::IpNet>()
                .expect("literal"),
        )?;
        hb.addr().add(
            "eth0",
            "10.244.255.2/30"
                .parse::<podnet_links::IpNet>()
                .expect("literal"),
        )?;
        ha.link().set("eth0").up().apply()?;
        hb.link().set("eth0").up().apply()?;
        Ok(path)
    }
}

impl Drop for VethPath {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = NetNs::del(n);
        }
    }
}

/// Measures the veth path and each backend (2 nodes, 1 pod each), `secs` seconds each, in
/// `rounds` interleaved rounds, keeping each path's best round (other load on the machine only
/// ever lowers a figure).
pub fn run(
    base: &Options,
    backends: &[&str],
    secs: u32,
    rounds: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<BenchResult>, ClusterError> {
    progress("plain veth pair (the limit)");
    let veth = VethPath::new(&base.prefix)?;
    let mut clusters = Vec::new();
    for backend in backends {
        progress(&format!("flannel {backend}: 2 nodes x 1 pod"));
        let mut opts = base.clone();
        opts.prefix = format!("{}-{}", base.prefix, backend.replace('-', ""));
        opts.state_dir = super::state_dir(&opts.prefix);
        opts.backend = (*backend).to_owned();
        opts.nodes = 2;
        opts.pods = 1;
        match Cluster::up(opts, progress) {
            Ok(c) => clusters.push(c),
            Err(e) => {
                for c in clusters {
                    c.down();
                }
                return Err(e);
            }
        }
    }
    let mut results = vec![BenchResult {
        path: "veth (no overlay)".into(),
        gbps: 0.0,
    }];
    results.extend(backends.iter().map(|b| BenchResult {
        path: format!("flannel {b}"),
        gbps: 0.0,
    }));
    let mut outcome = Ok(());
    'rounds: for r in 1..=rounds.max(1) {
        progress(&format!("round {r}"));
        match iperf3(&veth.a, &veth.b, "10.244.255.2", secs) {
            Ok(g) => results[0].gbps = results[0].gbps.max(g),
            Err(e) => {
                outcome = Err(e);
                break 'rounds;
            }
        }
        for (i, c) in clusters.iter().enumerate() {
            let (a, b) = (&c.pods[0], &c.pods[1]);
            match iperf3(&a.ns, &b.ns, &b.ip.to_string(), secs) {
                Ok(g) => results[i + 1].gbps = results[i + 1].gbps.max(g),
                Err(e) => {
                    outcome = Err(e);
                    break 'rounds;
                }
            }
        }
    }
    for c in clusters {
        c.down();
    }
    drop(veth);
    outcome.map(|()| results)
}

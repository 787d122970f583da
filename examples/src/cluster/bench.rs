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
fn veth_path(prefix: &str, secs: u32) -> Result<f64, ClusterError> {
    let a = NetNs::create(&format!("{prefix}-veth-a"))?;
    let b = NetNs::create(&format!("{prefix}-veth-b"))?;
    let run = || -> Result<f64, ClusterError> {
        let ha = Handle::in_ns(&a)?;
        let hb = Handle::in_ns(&b)?;
        for h in [&ha, &hb] {
            h.link().set("lo").up().apply()?;
        }
        ha.link()
            .add(&Veth::new("eth0").peer("eth0").peer_netns(&b))?;
        ha.addr()
            .add("eth0", "10.244.255.1/30".parse().expect("literal"))?;
        hb.addr()
            .add("eth0", "10.244.255.2/30".parse().expect("literal"))?;
        ha.link().set("eth0").up().apply()?;
        hb.link().set("eth0").up().apply()?;
        iperf3(&a, &b, "10.244.255.2", secs)
    };
    let result = run();
    let _ = NetNs::delete(&format!("{prefix}-veth-a"));
    let _ = NetNs::delete(&format!("{prefix}-veth-b"));
    result
}

/// Measures the veth path and each backend (2 nodes, 1 pod each), `secs` seconds each.
pub fn run(
    base: &Options,
    backends: &[&str],
    secs: u32,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<BenchResult>, ClusterError> {
    let mut results = Vec::new();
    progress("plain veth pair (the limit)");
    results.push(BenchResult {
        path: "veth (no overlay)".into(),
        gbps: veth_path(&base.prefix, secs)?,
    });
    for backend in backends {
        progress(&format!("flannel {backend}: 2 nodes x 1 pod"));
        let mut opts = base.clone();
        opts.backend = (*backend).to_owned();
        opts.nodes = 2;
        opts.pods = 1;
        let cluster = Cluster::up(opts, progress)?;
        let (a, b) = (cluster.pods[0].clone(), cluster.pods[1].clone());
        let r = iperf3(&a.ns, &b.ns, &b.ip.to_string(), secs);
        cluster.down();
        results.push(BenchResult {
            path: format!("flannel {backend}"),
            gbps: r?,
        });
    }
    Ok(results)
}

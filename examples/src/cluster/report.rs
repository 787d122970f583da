//! What the demo prints: a picture of the cluster and a results table.

use super::{Cluster, FABRIC_IP, OUTSIDE_IP};
use std::fmt;

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// What was checked.
    pub what: String,
    /// Whether it passed.
    pub ok: bool,
    /// Details (a latency, an error).
    pub detail: String,
    /// Round-trip time, for pings.
    pub latency_ms: Option<f64>,
}

impl CheckResult {
    /// A passed check.
    pub fn ok(what: impl Into<String>, detail: impl Into<String>) -> CheckResult {
        CheckResult {
            what: what.into(),
            ok: true,
            detail: detail.into(),
            latency_ms: None,
        }
    }

    /// A failed check.
    pub fn fail(what: impl Into<String>, detail: impl Into<String>) -> CheckResult {
        CheckResult {
            what: what.into(),
            ok: false,
            detail: detail.into(),
            latency_ms: None,
        }
    }

    /// With a round-trip time.
    pub fn with_latency(mut self, ms: f64) -> CheckResult {
        self.latency_ms = Some(ms);
        self
    }
}

/// All results of a demo run.
#[derive(Debug, Default)]
pub struct Report {
    /// Every check.
    pub results: Vec<CheckResult>,
    /// A TCP throughput sample: which pair, Gbit/s.
    pub throughput: Option<(String, f64)>,
}

impl Report {
    /// `true` when every check passed.
    pub fn passed(&self) -> bool {
        !self.results.is_empty() && self.results.iter().all(|r| r.ok)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            writeln!(
                f,
                "  [{}] {:<52} {}",
                if r.ok { " ok " } else { "FAIL" },
                r.what,
                r.detail
            )?;
        }
        let lat: Vec<f64> = self.results.iter().filter_map(|r| r.latency_ms).collect();
        let passed = self.results.iter().filter(|r| r.ok).count();
        writeln!(f)?;
        writeln!(f, "  checks passed        {passed}/{}", self.results.len())?;
        if !lat.is_empty() {
            let avg = lat.iter().sum::<f64>() / lat.len() as f64;
            let max = lat.iter().cloned().fold(0.0, f64::max);
            writeln!(
                f,
                "  pod-to-pod ping      avg {avg:.3} ms, max {max:.3} ms ({} pings)",
                lat.len()
            )?;
        }
        if let Some((pair, g)) = &self.throughput {
            writeln!(
                f,
                "  TCP throughput       {g:.2} Gbit/s ({pair}, 1 s, one stream)"
            )?;
        }
        Ok(())
    }
}

/// A text picture of the cluster as built.
pub fn picture(c: &Cluster) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "  fabric ({}): bridge fabric0 {FABRIC_IP}/24, outside address {OUTSIDE_IP}\n",
        c.fabric.name().unwrap_or("?")
    ));
    for n in &c.nodes {
        let subnet = match (n.subnet, n.subnet6) {
            (Some(a), Some(b)) => format!("{a} + {b}"),
            (Some(a), None) => a.to_string(),
            (None, Some(b)) => b.to_string(),
            (None, None) => "-".into(),
        };
        let dev = match (c.opts.backend.as_str(), c.opts.families) {
            ("vxlan", super::Families::V4) => "flannel.1 (VXLAN 8472)",
            ("vxlan", super::Families::Dual) => "flannel.1 + flannel-v6.1 (VXLAN 8472)",
            ("vxlan", super::Families::V6) => "flannel-v6.1 (VXLAN 8472)",
            ("udp", _) => "flannel0 (TUN, UDP 8285)",
            _ => "routes via peers' eth0",
        };
        let eth0 = match n.ip6 {
            Some(v6) => format!("{} {v6}", n.ip),
            None => n.ip.to_string(),
        };
        s.push_str(&format!(
            "   |\n   +-- eth0 {eth0} [{}] flanneld, {dev}\n   |     cni0 {subnet} mtu {}\n",
            n.name(),
            n.mtu
        ));
        for p in c.pods.iter().filter(|p| p.node == n.index) {
            let addrs = match (p.ip.is_unspecified(), p.ip6) {
                (false, Some(v6)) => format!("{} {v6}", p.ip),
                (true, Some(v6)) => v6.to_string(),
                _ => p.ip.to_string(),
            };
            s.push_str(&format!("   |       +-- veth -- {} {addrs}\n", p.label()));
        }
    }
    s
}

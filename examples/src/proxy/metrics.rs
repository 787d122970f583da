//! The proxy's Prometheus metrics: a sync duration histogram and rule counts.

use super::SyncOutcome;
use std::fmt::Write;

const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048,
];

/// Counters of the sync loop.
#[derive(Debug, Clone)]
pub struct Metrics {
    mode: &'static str,
    counts: [u64; BUCKETS.len()],
    sum: f64,
    syncs: u64,
    full_syncs: u64,
    /// Failed syncs.
    pub failures: u64,
    rules: usize,
    services: usize,
    conntrack_deleted: u64,
    last_sync: Option<std::time::SystemTime>,
}

impl Metrics {
    /// Empty metrics for `mode`.
    pub fn new(mode: &'static str) -> Metrics {
        Metrics {
            mode,
            counts: [0; BUCKETS.len()],
            sum: 0.0,
            syncs: 0,
            full_syncs: 0,
            failures: 0,
            rules: 0,
            services: 0,
            conntrack_deleted: 0,
            last_sync: None,
        }
    }

    /// Records one successful sync.
    pub fn record(&mut self, o: &SyncOutcome, services: usize) {
        let s = o.duration.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += s;
        self.syncs += 1;
        if o.full {
            self.full_syncs += 1;
        }
        self.rules = o.rules;
        self.services = services;
        self.conntrack_deleted += o.conntrack_deleted as u64;
        self.last_sync = Some(std::time::SystemTime::now());
    }

    /// `true` once a sync succeeded.
    pub fn healthy(&self) -> bool {
        self.last_sync.is_some()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let m = self.mode;
        let _ = writeln!(
            s,
            "# HELP kubeproxy_sync_proxy_rules_duration_seconds SyncProxyRules latency in seconds"
        );
        let _ = writeln!(
            s,
            "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "kubeproxy_sync_proxy_rules_duration_seconds_bucket{{mode=\"{m}\",le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            s,
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{{mode=\"{m}\",le=\"+Inf\"}} {}",
            self.syncs
        );
        let _ = writeln!(
            s,
            "kubeproxy_sync_proxy_rules_duration_seconds_sum{{mode=\"{m}\"}} {}",
            self.sum
        );
        let _ = writeln!(
            s,
            "kubeproxy_sync_proxy_rules_duration_seconds_count{{mode=\"{m}\"}} {}",
            self.syncs
        );
        let _ = writeln!(s, "# HELP kubeproxy_sync_full_proxy_rules_total Full syncs");
        let _ = writeln!(s, "# TYPE kubeproxy_sync_full_proxy_rules_total counter");
        let _ = writeln!(
            s,
            "kubeproxy_sync_full_proxy_rules_total{{mode=\"{m}\"}} {}",
            self.full_syncs
        );
        let _ = writeln!(
            s,
            "# HELP kubeproxy_sync_proxy_rules_failures_total Failed syncs"
        );
        let _ = writeln!(
            s,
            "# TYPE kubeproxy_sync_proxy_rules_failures_total counter"
        );
        let _ = writeln!(
            s,
            "kubeproxy_sync_proxy_rules_failures_total{{mode=\"{m}\"}} {}",
            self.failures
        );
        let _ = writeln!(
            s,
            "# HELP kubeproxy_sync_proxy_rules_rules_total Rules in the kernel after the last sync"
        );
        let _ = writeln!(s, "# TYPE kubeproxy_sync_proxy_rules_rules_total gauge");
        let _ = writeln!(
            s,
            "kubeproxy_sync_proxy_rules_rules_total{{mode=\"{m}\"}} {}",
            self.rules
        );
        let _ = writeln!(
            s,
            "# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds The last time proxy rules were successfully synced"
        );
        let _ = writeln!(
            s,
            "# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge"
        );
        let last = self
            .last_sync
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        let _ = writeln!(
            s,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds{{mode=\"{m}\"}} {last}"
        );
        let _ = writeln!(s, "# HELP kubeproxy_services Service ports proxied");
        let _ = writeln!(s, "# TYPE kubeproxy_services gauge");
        let _ = writeln!(s, "kubeproxy_services{{mode=\"{m}\"}} {}", self.services);
        let _ = writeln!(
            s,
            "# HELP kubeproxy_conntrack_entries_deleted_total Stale conntrack flows deleted"
        );
        let _ = writeln!(
            s,
            "# TYPE kubeproxy_conntrack_entries_deleted_total counter"
        );
        let _ = writeln!(
            s,
            "kubeproxy_conntrack_entries_deleted_total{{mode=\"{m}\"}} {}",
            self.conntrack_deleted
        );
        s
    }
}

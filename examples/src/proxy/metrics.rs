//! The proxy's Prometheus metrics, kept and written by the `prometheus-client` crate (the
//! OpenMetrics text format, which Prometheus scrapes): a sync duration histogram, sync and
//! failure counts, rule and Service counts, and the proxier health's `/healthz` and `/livez`
//! answer counts. The names are upstream kube-proxy's; every sync metric carries the
//! `mode` label.

use super::SyncOutcome;
use super::health::ProxierHealth;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048,
];

/// The content type of [`Metrics::render`]'s text.
pub(super) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of the sync loop (and, once [`Metrics::register_health`] is called, of the
/// proxier health).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    duration: Histogram,
    full_syncs: Counter,
    failures: Counter,
    rules: Gauge,
    services: Gauge,
    conntrack_deleted: Counter,
    last_sync: Gauge<f64, AtomicU64>,
}

impl Metrics {
    /// Empty metrics for `mode`.
    pub fn new(mode: &'static str) -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            duration: Histogram::new(BUCKETS),
            full_syncs: Counter::default(),
            failures: Counter::default(),
            rules: Gauge::default(),
            services: Gauge::default(),
            conntrack_deleted: Counter::default(),
            last_sync: Gauge::default(),
        };
        let mut registry = Registry::default();
        let r = registry.sub_registry_with_label(("mode".into(), mode.into()));
        r.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            m.duration.clone(),
        );
        r.register(
            "kubeproxy_sync_full_proxy_rules",
            "Full syncs",
            m.full_syncs.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_failures",
            "Failed syncs",
            m.failures.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_rules_total",
            "Rules in the kernel after the last sync",
            m.rules.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last_sync.clone(),
        );
        r.register(
            "kubeproxy_services",
            "Service ports proxied",
            m.services.clone(),
        );
        r.register(
            "kubeproxy_conntrack_entries_deleted",
            "Stale conntrack flows deleted",
            m.conntrack_deleted.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Adds upstream's `kubeproxy_proxy_healthz_total` and `kubeproxy_proxy_livez_total` (by
    /// HTTP status code) of `health`.
    pub fn register_health(&mut self, health: &ProxierHealth) {
        let (healthz, livez) = health.counters();
        self.registry.register(
            "kubeproxy_proxy_healthz",
            "Cumulative proxy healthz HTTP status",
            healthz,
        );
        self.registry.register(
            "kubeproxy_proxy_livez",
            "Cumulative proxy livez HTTP status",
            livez,
        );
    }

    /// Records one successful sync.
    pub fn record(&mut self, o: &SyncOutcome, services: usize) {
        self.duration.observe(o.duration.as_secs_f64());
        if o.full {
            self.full_syncs.inc();
        }
        self.rules.set(i64::try_from(o.rules).unwrap_or(i64::MAX));
        self.services
            .set(i64::try_from(services).unwrap_or(i64::MAX));
        self.conntrack_deleted.inc_by(o.conntrack_deleted as u64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_sync.set(now);
    }

    /// Records one failed sync.
    pub fn record_failure(&mut self) {
        self.failures.inc();
    }

    /// Failed syncs so far.
    pub fn failures(&self) -> u64 {
        self.failures.get()
    }

    /// `true` once a sync succeeded.
    pub fn healthy(&self) -> bool {
        self.last_sync.get() > 0.0
    }

    /// The text exposition (OpenMetrics text, `application/openmetrics-text; version=1.0.0`).
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut s, &self.registry);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn value(text: &str, sample: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {sample} in\n{text}"));
        line[sample.len() + 1..].parse().unwrap()
    }

    #[test]
    fn samples_keep_upstream_names_with_the_mode_label() {
        let health = ProxierHealth::new(Duration::from_secs(30));
        let mut m = Metrics::new("nftables");
        m.register_health(&health);
        let text = m.render();
        assert!(!m.healthy());
        assert_eq!(
            value(
                &text,
                "kubeproxy_sync_proxy_rules_last_timestamp_seconds{mode=\"nftables\"}"
            ),
            0.0
        );
        let o = |ms, full| SyncOutcome {
            full,
            duration: Duration::from_millis(ms),
            rules: 42,
            conntrack_deleted: 2,
        };
        m.record(&o(3, true), 5);
        m.record(&o(100, false), 6);
        m.record_failure();
        health.healthz();
        let text = m.render();
        let mode = "{mode=\"nftables\"}";
        let get = |name: &str| value(&text, &format!("{name}{mode}"));
        assert_eq!(get("kubeproxy_sync_full_proxy_rules_total"), 1.0);
        assert_eq!(get("kubeproxy_sync_proxy_rules_failures_total"), 1.0);
        assert_eq!(get("kubeproxy_sync_proxy_rules_rules_total"), 42.0);
        assert_eq!(get("kubeproxy_services"), 6.0);
        assert_eq!(get("kubeproxy_conntrack_entries_deleted_total"), 4.0);
        assert_eq!(
            get("kubeproxy_sync_proxy_rules_duration_seconds_count"),
            2.0
        );
        assert!((get("kubeproxy_sync_proxy_rules_duration_seconds_sum") - 0.103).abs() < 1e-9);
        let bucket = |le: &str| {
            value(
                &text,
                &format!(
                    "kubeproxy_sync_proxy_rules_duration_seconds_bucket{{mode=\"nftables\",le=\"{le}\"}}"
                ),
            )
        };
        assert_eq!(bucket("0.002"), 0.0);
        assert_eq!(bucket("0.004"), 1.0);
        assert_eq!(bucket("0.128"), 2.0);
        assert_eq!(bucket("+Inf"), 2.0);
        assert!(get("kubeproxy_sync_proxy_rules_last_timestamp_seconds") > 0.0);
        assert_eq!(
            value(&text, "kubeproxy_proxy_healthz_total{code=\"200\"}"),
            1.0
        );
        assert_eq!(
            value(&text, "kubeproxy_proxy_healthz_total{code=\"503\"}"),
            0.0
        );
        assert_eq!(
            value(&text, "kubeproxy_proxy_livez_total{code=\"200\"}"),
            0.0
        );
        assert!(text.ends_with("# EOF\n"));
        assert!(m.healthy());
        assert_eq!(m.failures(), 1);
    }
}

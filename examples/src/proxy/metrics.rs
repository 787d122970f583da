//! The proxy's Prometheus metrics, kept and written by the `prometheus-client` crate (the
//! OpenMetrics text format, which Prometheus scrapes): a sync duration histogram, sync and
//! failure counts, rule and Service counts, and the proxier health's `/healthz` and `/livez`
//! answer counts. The names are upstream kube-proxy's; every sync metric carries the
//! `mode` label.

use super::SyncOutcome;
use super::health::ProxierHealth;
use podnet_nat::kube::{ClusterState, ServiceKey, ServicePortName};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Upstream's sync duration buckets: `ExponentialBuckets(0.001, 2, 15)`, 1 ms to 16.384 s.
const BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

/// Upstream's network programming latency buckets: 0.25 s and 0.5 s, each second from 1 s to
/// 59 s, every 5 s from 60 s to 115 s, every 30 s from 2 min to 5 min.
pub(super) fn programming_buckets() -> Vec<f64> {
    let mut b = vec![0.25, 0.5];
    b.extend((1..=59).map(f64::from));
    b.extend((0..12).map(|i| 60.0 + 5.0 * f64::from(i)));
    b.extend((0..7).map(|i| 120.0 + 30.0 * f64::from(i)));
    b
}

/// The number of Services (by namespace and name) whose ports, and whose endpoints, differ
/// between `old` and `new`: upstream's service and endpoint change counts for one update.
pub(super) fn state_changes(old: &ClusterState, new: &ClusterState) -> (usize, usize) {
    type ByService<'a, T> =
        std::collections::BTreeMap<&'a ServiceKey, Vec<(&'a ServicePortName, &'a T)>>;
    fn by_service<T: PartialEq>(
        m: &std::collections::BTreeMap<ServicePortName, T>,
    ) -> ByService<'_, T> {
        let mut out: std::collections::BTreeMap<_, Vec<_>> = std::collections::BTreeMap::new();
        for (k, v) in m {
            out.entry(&k.service).or_default().push((k, v));
        }
        out
    }
    fn differ<T: PartialEq>(
        a: &std::collections::BTreeMap<ServicePortName, T>,
        b: &std::collections::BTreeMap<ServicePortName, T>,
    ) -> usize {
        let (a, b) = (by_service(a), by_service(b));
        let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).collect();
        keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).count()
    }
    (
        differ(&old.services, &new.services),
        differ(&old.endpoints, &new.endpoints),
    )
}

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
    full_duration: Histogram,
    partial_duration: Histogram,
    last_queued: Gauge<f64, AtomicU64>,
    service_changes: Counter,
    endpoint_changes: Counter,
    service_changes_pending: Gauge,
    endpoint_changes_pending: Gauge,
    restore_failures: Counter,
    programming: Histogram,
    /// iptables or ipvs mode: failed syncs are (ip|ip6)tables-restore failures.
    restores: bool,
}

/// Now, in seconds since the epoch.
fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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
            full_duration: Histogram::new(BUCKETS),
            partial_duration: Histogram::new(BUCKETS),
            last_queued: Gauge::default(),
            service_changes: Counter::default(),
            endpoint_changes: Counter::default(),
            service_changes_pending: Gauge::default(),
            endpoint_changes_pending: Gauge::default(),
            restore_failures: Counter::default(),
            programming: Histogram::new(programming_buckets()),
            restores: matches!(mode, "iptables" | "ipvs"),
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
            "Rules the proxy holds in the kernel after the last sync, counted from what it wrote",
            m.rules.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last_sync.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            m.last_queued.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            m.service_changes.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules Endpoint changes",
            m.endpoint_changes.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_service_changes_pending",
            "Pending proxy rules Service changes",
            m.service_changes_pending.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
            "Pending proxy rules Endpoint changes",
            m.endpoint_changes_pending.clone(),
        );
        // As upstream registers them: full and partial durations in iptables mode, restore
        // failures in iptables and ipvs modes.
        if mode == "iptables" {
            r.register(
                "kubeproxy_sync_full_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds for full resyncs",
                m.full_duration.clone(),
            );
            r.register(
                "kubeproxy_sync_partial_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds for partial resyncs",
                m.partial_duration.clone(),
            );
        }
        if m.restores {
            r.register(
                "kubeproxy_sync_proxy_rules_iptables_restore_failures",
                "Cumulative proxy iptables restore failures",
                m.restore_failures.clone(),
            );
        }
        r.register(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            m.programming.clone(),
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

    /// A sync was queued (upstream's last-queued timestamp).
    pub fn queued(&mut self) {
        self.last_queued.set(now_seconds());
    }

    /// An update changed `services` Services and the endpoints of `endpoints` Services
    /// (see [`state_changes`]): counted, and pending until the next successful sync.
    pub fn changes(&mut self, services: usize, endpoints: usize) {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        self.service_changes.inc_by(n(services));
        self.endpoint_changes.inc_by(n(endpoints));
        let g = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.service_changes_pending.inc_by(g(services));
        self.endpoint_changes_pending.inc_by(g(endpoints));
    }

    /// Records one successful sync.
    pub fn record(&mut self, o: &SyncOutcome, services: usize) {
        self.duration.observe(o.duration.as_secs_f64());
        if o.full {
            self.full_syncs.inc();
            self.full_duration.observe(o.duration.as_secs_f64());
        } else {
            self.partial_duration.observe(o.duration.as_secs_f64());
        }
        self.service_changes_pending.set(0);
        self.endpoint_changes_pending.set(0);
        self.rules.set(i64::try_from(o.rules).unwrap_or(i64::MAX));
        self.services
            .set(i64::try_from(services).unwrap_or(i64::MAX));
        self.conntrack_deleted.inc_by(o.conntrack_deleted as u64);
        self.last_sync.set(now_seconds());
    }

    /// A sync that ended at `end` programmed changes triggered at `triggers` (their
    /// EndpointSlices' `endpoints.kubernetes.io/last-change-trigger-time`): each is observed
    /// in `kubeproxy_network_programming_duration_seconds` (a time after `end`, from a
    /// clock ahead of ours, counts as zero).
    pub fn programmed(&mut self, triggers: &[std::time::SystemTime], end: std::time::SystemTime) {
        for t in triggers {
            let latency = end.duration_since(*t).unwrap_or_default();
            self.programming.observe(latency.as_secs_f64());
        }
    }

    /// Records one failed sync (in iptables and ipvs modes also a restore failure: applying
    /// the rules is what fails there).
    pub fn record_failure(&mut self) {
        self.failures.inc();
        if self.restores {
            self.restore_failures.inc();
        }
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

    /// A Service `name` in namespace `d` with two ports, as YAML.
    fn svc(name: &str, ip: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: d}}\n\
             spec: {{clusterIP: {ip}, ports: [{{name: a, port: 80}}, {{name: b, port: 81}}]}}\n"
        )
    }

    /// The EndpointSlice of Service `name` with one endpoint at `ip`, as YAML.
    fn slice(name: &str, ip: &str) -> String {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {name}-1, namespace: d, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{name: a, port: 80}}, {{name: b, port: 81}}]\n\
             endpoints: [{{addresses: [{ip}]}}]\n"
        )
    }

    #[test]
    fn upstreams_sync_metrics_and_change_counts() {
        use podnet_nat::kube::{IpFamily, parse_objects};
        let state = |text: &str| {
            let (objects, w) = parse_objects(text, "t");
            assert!(w.is_empty(), "{w:?}");
            ClusterState::from_objects(&objects, IpFamily::V4).0
        };
        let one = state(&format!(
            "{}---\n{}",
            svc("x", "10.96.0.1"),
            slice("x", "10.0.0.1")
        ));
        // Two ports of one Service are one change.
        assert_eq!(state_changes(&ClusterState::default(), &one), (1, 1));
        assert_eq!(state_changes(&one, &one), (0, 0));
        let moved = state(&format!(
            "{}---\n{}",
            svc("x", "10.96.0.1"),
            slice("x", "10.0.0.2")
        ));
        assert_eq!(state_changes(&one, &moved), (0, 1));
        let two = state(&format!(
            "{}---\n{}---\n{}",
            svc("x", "10.96.0.9"),
            svc("y", "10.96.0.2"),
            slice("x", "10.0.0.1")
        ));
        assert_eq!(state_changes(&one, &two), (2, 0));

        let mut m = Metrics::new("iptables");
        m.queued();
        m.changes(2, 3);
        let text = m.render();
        let get = |text: &str, name: &str| value(text, &format!("{name}{{mode=\"iptables\"}}"));
        assert_eq!(
            get(&text, "kubeproxy_sync_proxy_rules_service_changes_total"),
            2.0
        );
        assert_eq!(
            get(&text, "kubeproxy_sync_proxy_rules_endpoint_changes_total"),
            3.0
        );
        assert_eq!(
            get(&text, "kubeproxy_sync_proxy_rules_endpoint_changes_pending"),
            3.0
        );
        assert!(
            get(
                &text,
                "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"
            ) > 0.0
        );
        let o = |ms, full| SyncOutcome {
            full,
            duration: Duration::from_millis(ms),
            rules: 1,
            conntrack_deleted: 0,
        };
        m.record(&o(5, true), 1);
        m.record(&o(20_000, false), 1);
        m.record_failure();
        let text = m.render();
        assert_eq!(
            get(&text, "kubeproxy_sync_proxy_rules_service_changes_pending"),
            0.0
        );
        assert_eq!(
            get(
                &text,
                "kubeproxy_sync_full_proxy_rules_duration_seconds_count"
            ),
            1.0
        );
        assert_eq!(
            get(
                &text,
                "kubeproxy_sync_partial_proxy_rules_duration_seconds_count"
            ),
            1.0
        );
        assert_eq!(
            get(
                &text,
                "kubeproxy_sync_proxy_rules_iptables_restore_failures_total"
            ),
            1.0
        );
        // Upstream's 15 buckets, the last at 16.384 s: 20 s is only in +Inf.
        let bucket = |le: &str| {
            value(
                &text,
                &format!(
                    "kubeproxy_sync_proxy_rules_duration_seconds_bucket{{mode=\"iptables\",le=\"{le}\"}}"
                ),
            )
        };
        assert_eq!(bucket("16.384"), 1.0);
        assert_eq!(bucket("+Inf"), 2.0);
        // Network programming latency, in upstream's buckets.
        let b = programming_buckets();
        assert_eq!(b.len(), 80);
        assert_eq!(
            (b[0], b[1], b[2], b[60], b[61], b[73], b[79]),
            (0.25, 0.5, 1.0, 59.0, 60.0, 120.0, 300.0)
        );
        let end = std::time::SystemTime::now();
        m.programmed(
            &[
                end - Duration::from_millis(700),
                end - Duration::from_secs(200),
            ],
            end,
        );
        let text = m.render();
        let npd = |le: &str| {
            value(
                &text,
                &format!(
                    "kubeproxy_network_programming_duration_seconds_bucket{{mode=\"iptables\",le=\"{le}\"}}"
                ),
            )
        };
        assert_eq!(npd("0.5"), 0.0);
        assert_eq!(npd("1.0"), 1.0);
        assert_eq!(npd("180.0"), 1.0);
        assert_eq!(npd("210.0"), 2.0);
        assert_eq!(
            get(
                &text,
                "kubeproxy_network_programming_duration_seconds_count"
            ),
            2.0
        );
        // nftables mode has neither the full/partial split nor restore failures.
        let text = Metrics::new("nftables").render();
        assert!(!text.contains("full_proxy_rules_duration"), "{text}");
        assert!(!text.contains("restore_failures"), "{text}");
    }
}

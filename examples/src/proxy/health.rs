//! kube-proxy's proxier health, as upstream's `pkg/proxy/healthcheck` defines it: healthy while
//! starting up and while every queued change has been synced, or is queued for less than the
//! health timeout (twice the sync period); `/healthz` and `/livez` answer 503 once a queued
//! change waited longer, with upstream's JSON body and headers.

use crate::http::Response;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
struct State {
    last_updated: SystemTime,
    oldest_pending: Option<Instant>,
}

/// Answers counted by HTTP status code (the `code` label).
pub(super) type CodeCounts = Family<[(&'static str, &'static str); 1], Counter>;

/// The two answers counted.
const CODES: [&str; 2] = ["200", "503"];

fn code_counts() -> CodeCounts {
    let f = CodeCounts::default();
    for code in CODES {
        // Both codes are reported from the start, at zero.
        let _ = f.get_or_create(&[("code", code)]);
    }
    f
}

/// The health of the sync loop, shared with the HTTP servers.
#[derive(Debug)]
pub struct ProxierHealth {
    timeout: Duration,
    state: Mutex<State>,
    healthz: CodeCounts,
    livez: CodeCounts,
    /// Why no sync may happen yet (the API server's first lists are not complete).
    waiting: Mutex<Option<String>>,
}

impl ProxierHealth {
    /// Health with upstream's timeout for `sync_period` (twice it); healthy from the start, as
    /// upstream's sync loop marks itself updated before its first sync.
    pub fn new(sync_period: Duration) -> ProxierHealth {
        process_start();
        ProxierHealth {
            timeout: sync_period.saturating_mul(2),
            state: Mutex::new(State {
                last_updated: SystemTime::now(),
                oldest_pending: None,
            }),
            healthz: code_counts(),
            livez: code_counts(),
            waiting: Mutex::new(None),
        }
    }

    fn state(&self) -> State {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Work is waiting for a sync (upstream's `QueuedUpdate`): the oldest such moment counts.
    pub fn queued(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.oldest_pending.get_or_insert_with(Instant::now);
    }

    /// A sync succeeded (upstream's `Updated`): nothing is waiting any more.
    pub fn updated(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.oldest_pending = None;
        s.last_updated = SystemTime::now();
    }

    /// The input is not ready for a sync (`Some(why)`), or is (`None`). While it is not,
    /// `/healthz` answers 503 with the reason (podnet's addition: kube-proxy with no Services
    /// listed yet has programmed nothing a node's traffic could rely on).
    pub fn set_waiting(&self, why: Option<String>) {
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Why no sync may happen yet, if so.
    pub fn waiting(&self) -> Option<String> {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `true` unless a queued change has waited the health timeout or longer.
    pub fn is_healthy(&self) -> bool {
        self.state()
            .oldest_pending
            .is_none_or(|t| t.elapsed() < self.timeout)
    }

    /// Upstream's answer: 200 or 503, `{"lastUpdated": ..,"currentTime": ..}` (and
    /// `"nodeEligible"` for `/healthz`; this proxy sees no Node object, so always true).
    fn answer(&self, with_node: bool) -> (bool, Response) {
        let waiting = if with_node { self.waiting() } else { None };
        let healthy = self.is_healthy() && waiting.is_none();
        let now = SystemTime::now();
        let current = go_time(now, true);
        let last = if healthy {
            // Upstream reports "now" while healthy, for compatibility with older releases.
            current.clone()
        } else {
            go_time(self.state().last_updated, true)
        };
        let body = if let Some(why) = waiting {
            let why = serde_json::Value::String(why);
            format!(
                r#"{{"lastUpdated": "{last}","currentTime": "{current}", "nodeEligible": true, "reason": {why}}}"#
            )
        } else if with_node {
            format!(
                r#"{{"lastUpdated": "{last}","currentTime": "{current}", "nodeEligible": true}}"#
            )
        } else {
            format!(r#"{{"lastUpdated": "{last}","currentTime": "{current}"}}"#)
        };
        (
            healthy,
            Response::json(if healthy { 200 } else { 503 }, body),
        )
    }

    /// `GET /healthz` on the healthz address.
    pub fn healthz(&self) -> Response {
        let (ok, r) = self.answer(true);
        self.healthz
            .get_or_create(&[("code", CODES[usize::from(!ok)])])
            .inc();
        r
    }

    /// `GET /livez` on the healthz address.
    pub fn livez(&self) -> Response {
        let (ok, r) = self.answer(false);
        self.livez
            .get_or_create(&[("code", CODES[usize::from(!ok)])])
            .inc();
        r
    }

    /// The `/healthz` and `/livez` answer counts (shared, not copied), for the metrics
    /// registry.
    pub(super) fn counters(&self) -> (CodeCounts, CodeCounts) {
        (self.healthz.clone(), self.livez.clone())
    }

    /// Upstream's `kubeproxy_proxy_healthz_total` and `kubeproxy_proxy_livez_total`, alone, as
    /// text.
    pub fn render_metrics(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        let (healthz, livez) = self.counters();
        registry.register(
            "kubeproxy_proxy_healthz",
            "Cumulative proxy healthz HTTP status",
            healthz,
        );
        registry.register(
            "kubeproxy_proxy_livez",
            "Cumulative proxy livez HTTP status",
            livez,
        );
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &registry);
        s
    }
}

/// When this process started measuring, for Go's monotonic clock reading (`m=+1.5`).
fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// `t` as Go's `time.Time.String()` prints a UTC time (what upstream's `%q` writes):
/// `2023-11-14 22:13:20.5 +0000 UTC`, with ` m=+3.000000001` when `monotonic`.
fn go_time(t: SystemTime, monotonic: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, mo, day) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    let mut s = format!(
        "{y:04}-{mo:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    if d.subsec_nanos() != 0 {
        let frac = format!("{:09}", d.subsec_nanos());
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    if monotonic {
        let m = process_start().elapsed();
        s.push_str(&format!(" m=+{}.{:09}", m.as_secs(), m.subsec_nanos()));
    }
    s
}

/// Year, month, day of the `z`th day after 1970-01-01 (the proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_go_prints_them() {
        assert_eq!(go_time(UNIX_EPOCH, false), "1970-01-01 00:00:00 +0000 UTC");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000);
        assert_eq!(go_time(t, false), "2023-11-14 22:13:20.5 +0000 UTC");
        let t = UNIX_EPOCH + Duration::new(951_782_400, 123); // a leap day
        assert_eq!(go_time(t, false), "2000-02-29 00:00:00.000000123 +0000 UTC");
        assert!(go_time(t, true).contains(" +0000 UTC m=+"));
    }

    #[test]
    fn stale_after_twice_the_sync_period() {
        let h = ProxierHealth::new(Duration::from_millis(50));
        assert!(h.is_healthy(), "healthy while starting");
        h.queued();
        assert!(h.is_healthy(), "queued, not late yet");
        std::thread::sleep(Duration::from_millis(120));
        assert!(!h.is_healthy(), "queued for longer than 2 x 50 ms");
        let r = h.healthz();
        assert_eq!(r.status, 503);
        assert!(r.body.contains(r#""nodeEligible": true}"#), "{}", r.body);
        assert_eq!(h.livez().status, 503);
        h.updated();
        assert_eq!(h.healthz().status, 200);
        assert!(
            h.render_metrics()
                .contains("kubeproxy_proxy_healthz_total{code=\"503\"} 1")
        );
        // Waiting for the input: /healthz says why, /livez stays as upstream's.
        h.set_waiting(Some("waiting for the first list of \"Services\"".into()));
        let r = h.healthz();
        assert_eq!(r.status, 503);
        assert!(
            r.body
                .ends_with(r#""reason": "waiting for the first list of \"Services\""}"#),
            "{}",
            r.body
        );
        assert_eq!(h.livez().status, 200);
        h.set_waiting(None);
        assert_eq!(h.healthz().status, 200);
        // Any sync period works.
        assert!(ProxierHealth::new(Duration::MAX).is_healthy());
    }
}

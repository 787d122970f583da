//! kube-proxy's flag values: every value a user can type is either a clear error naming the
//! flag or works (never a panic further on).

use std::time::Duration;

/// Parses a duration the way kube-proxy's flags take one: Go's syntax (`30s`, `1m30s`, `500ms`,
/// `2h`, `1.5m`) or, as podnet always accepted, a plain number of seconds (`30`, `0.5`).
///
/// Refused, with a reason: text that is neither, values that are not finite (`inf`, `NaN`),
/// negative ones, and ones longer than a [`Duration`] holds (about 1.8e19 s).
///
/// ```
/// use podnet_examples::proxy::flags::parse_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
/// assert!(parse_duration("inf").is_err());
/// assert!(parse_duration("1e20").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty; expected a duration such as 30s, 1m30s or 0.5".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return seconds(secs);
    }
    let rest = t.strip_prefix('+').unwrap_or(t);
    if rest.starts_with('-') {
        return Err("must not be negative".into());
    }
    let mut rest = rest;
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{t:?} is not a duration (expected e.g. 30s, 1m30s, 500ms)"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("{t:?}: a number without a unit inside a duration")),
            other => {
                return Err(format!(
                    "{t:?}: unknown unit {other:?} (ns, us, ms, s, m, h)"
                ));
            }
        };
        total += value * scale;
        rest = next;
    }
    seconds(total)
}

/// `secs` seconds as a [`Duration`], or why not.
fn seconds(secs: f64) -> Result<Duration, String> {
    if secs.is_nan() {
        return Err("not a number".into());
    }
    if secs < 0.0 {
        return Err("must not be negative".into());
    }
    if secs.is_infinite() {
        return Err("must be finite".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| {
        format!(
            "{secs} s is longer than this program can wait (at most {} s)",
            u64::MAX
        )
    })
}

/// The IPVS schedulers kube-proxy's `--ipvs-scheduler` accepts (upstream's
/// `validateIPVSSchedulerMethod`, and `mh`); empty means `rr`.
pub const IPVS_SCHEDULERS: [&str; 11] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sh", "dh", "sed", "nq", "mh",
];

/// Checks `--ipvs-scheduler`: one of [`IPVS_SCHEDULERS`], or empty for `rr`.
pub fn ipvs_scheduler(name: &str) -> Result<&str, String> {
    match name {
        "" => Ok("rr"),
        n if IPVS_SCHEDULERS.contains(&n) => Ok(n),
        n => Err(format!(
            "--ipvs-scheduler {n:?}: unknown scheduler (one of {})",
            IPVS_SCHEDULERS.join(", ")
        )),
    }
}

/// Checks the sync periods together, as upstream's validation does: the full resync period
/// above zero, the minimum period at most the full one.
pub fn check_sync_periods(sync: Duration, min_sync: Duration) -> Result<(), String> {
    if sync.is_zero() {
        return Err("--iptables-sync-period: must be greater than 0".into());
    }
    if min_sync > sync {
        return Err(format!(
            "--iptables-min-sync-period {}: must be at most --iptables-sync-period ({})",
            min_sync.as_secs_f64(),
            sync.as_secs_f64()
        ));
    }
    Ok(())
}

/// kube-proxy's `--conntrack-*` settings, applied through the sysctls of the network
/// namespace the proxy runs in. Only what is set is written (podnet leaves the kernel's values
/// alone by default, unlike upstream, whose defaults apply 24h/1h TCP timeouts and a
/// per-core maximum); `nf_conntrack_max` is raised only, never lowered, and the global
/// `hashsize` module parameter is never touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConntrackSettings {
    /// `--conntrack-max-per-core` (0: leave the maximum alone).
    pub max_per_core: Option<u32>,
    /// `--conntrack-min`.
    pub min: Option<u32>,
    /// `--conntrack-tcp-timeout-established` (0: leave).
    pub tcp_established: Option<Duration>,
    /// `--conntrack-tcp-timeout-close-wait` (0: leave).
    pub tcp_close_wait: Option<Duration>,
    /// `--conntrack-tcp-be-liberal`.
    pub tcp_be_liberal: bool,
    /// `--conntrack-udp-timeout` (0: leave).
    pub udp: Option<Duration>,
    /// `--conntrack-udp-timeout-stream` (0: leave).
    pub udp_stream: Option<Duration>,
}

/// Where the conntrack sysctls live.
const NETFILTER: &str = "/proc/sys/net/netfilter";

impl ConntrackSettings {
    /// The sysctls (names under `net/netfilter`) and values these settings ask for, given the
    /// current `nf_conntrack_max` and the number of CPUs.
    pub fn sysctls(&self, current_max: u64, cpus: u64) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        if let Some(per_core) = self.max_per_core.filter(|n| *n > 0) {
            let want = (u64::from(per_core) * cpus).max(u64::from(self.min.unwrap_or(0)));
            if want > current_max {
                out.push(("nf_conntrack_max", want));
            }
        }
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs()).filter(|s| *s > 0);
        for (name, d) in [
            ("nf_conntrack_tcp_timeout_established", self.tcp_established),
            ("nf_conntrack_tcp_timeout_close_wait", self.tcp_close_wait),
            ("nf_conntrack_udp_timeout", self.udp),
            ("nf_conntrack_udp_timeout_stream", self.udp_stream),
        ] {
            if let Some(s) = secs(d) {
                out.push((name, s));
            }
        }
        if self.tcp_be_liberal {
            out.push(("nf_conntrack_tcp_be_liberal", 1));
        }
        out
    }

    /// Writes [`ConntrackSettings::sysctls`] in this thread's network namespace; returns one
    /// message per sysctl that could not be written (each naming its flag's sysctl).
    pub fn apply(&self) -> Vec<String> {
        let read = |name: &str| -> Option<u64> {
            std::fs::read_to_string(format!("{NETFILTER}/{name}"))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let wanted = self.sysctls(read("nf_conntrack_max").unwrap_or(0), cpus);
        let mut errors = Vec::new();
        for (name, value) in wanted {
            if read(name) == Some(value) {
                continue;
            }
            if let Err(e) = std::fs::write(format!("{NETFILTER}/{name}"), value.to_string()) {
                errors.push(format!("setting net.netfilter.{name} to {value}: {e}"));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_both_spellings() {
        for (text, want) in [
            ("30", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("1.5", Duration::from_millis(1500)),
            ("1e3", Duration::from_secs(1000)),
            ("30s", Duration::from_secs(30)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5m", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
            ("500ms", Duration::from_millis(500)),
            ("+1s", Duration::from_secs(1)),
            ("250us", Duration::from_micros(250)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn every_odd_value_is_an_error_not_a_panic() {
        for text in [
            "",
            " ",
            "inf",
            "-inf",
            "infinity",
            "NaN",
            "-1",
            "-0.5",
            "1e20",
            "1e300",
            "-1s",
            "30x",
            "s",
            "1m30",
            "..s",
            "1.2.3s",
            "ms",
            "9999999999999999999999h",
            "1e19h",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
        // -0 is zero.
        assert_eq!(parse_duration("-0"), Ok(Duration::ZERO));
    }

    #[test]
    fn periods_are_checked_together() {
        let s = Duration::from_secs;
        assert!(check_sync_periods(s(30), s(1)).is_ok());
        assert!(check_sync_periods(s(1), s(1)).is_ok());
        assert!(check_sync_periods(Duration::ZERO, Duration::ZERO).is_err());
        assert!(check_sync_periods(s(1), s(2)).is_err());
        assert_eq!(ipvs_scheduler(""), Ok("rr"));
        assert_eq!(ipvs_scheduler("mh"), Ok("mh"));
        assert!(ipvs_scheduler("bogus").is_err());
    }

    #[test]
    fn conntrack_sysctls_only_for_what_is_set() {
        assert!(ConntrackSettings::default().sysctls(0, 4).is_empty());
        let c = ConntrackSettings {
            max_per_core: Some(32768),
            min: Some(131_072),
            tcp_established: Some(Duration::from_secs(86_400)),
            tcp_close_wait: Some(Duration::from_secs(3600)),
            tcp_be_liberal: true,
            udp: Some(Duration::ZERO),
            udp_stream: None,
        };
        assert_eq!(
            c.sysctls(65_536, 2),
            [
                ("nf_conntrack_max", 131_072),
                ("nf_conntrack_tcp_timeout_established", 86_400),
                ("nf_conntrack_tcp_timeout_close_wait", 3600),
                ("nf_conntrack_tcp_be_liberal", 1),
            ]
        );
        // Per core times cores above the minimum; never lowered.
        assert_eq!(c.sysctls(0, 8)[0], ("nf_conntrack_max", 262_144));
        assert_eq!(
            c.sysctls(1 << 20, 8)[0].0,
            "nf_conntrack_tcp_timeout_established"
        );
    }
}

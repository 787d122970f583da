//! Deadlines and expiry times that never overflow: a caller may pass any `Duration`, up to
//! `Duration::MAX`, and gets "never" where the clock cannot count that far.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The moment `timeout` from now, or `None` (no deadline) when that is past what `Instant` can
/// hold.
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// How long until `deadline` (`Duration::MAX` without one; zero once it passed).
pub(crate) fn left(deadline: Option<Instant>) -> Duration {
    deadline.map_or(Duration::MAX, |d| {
        d.saturating_duration_since(Instant::now())
    })
}

/// `true` once `deadline` passed (never without one).
pub(crate) fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// `now + ttl`, or the latest time this module represents (about 292 billion years after
/// 1970, past any lease) when the sum does not fit in a `SystemTime`.
pub(crate) fn expiry(now: SystemTime, ttl: Duration) -> SystemTime {
    now.checked_add(ttl).unwrap_or_else(far_future)
}

fn far_future() -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(i64::MAX as u64 / 2))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_durations_mean_never() {
        assert_eq!(deadline(Duration::MAX), None);
        assert_eq!(left(None), Duration::MAX);
        assert!(!passed(None));
        assert!(passed(deadline(Duration::ZERO)));
        let now = SystemTime::now();
        assert!(expiry(now, Duration::MAX) > now + Duration::from_secs(1 << 40));
        assert_eq!(
            expiry(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }
}

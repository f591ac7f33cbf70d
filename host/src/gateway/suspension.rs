//! Suspending a plugin instance whose callback ran past its deadline.
//!
//! The deadline stops a runaway callback, but only after it has held its worker thread for the
//! whole deadline, and with it every other request on that worker. A plugin that overruns on
//! every request (or every tick) would keep the workers that busy. So an overrun suspends the
//! instance, process-wide, for its backoff (the middleware's `backoff`, Envoy's reload backoff):
//! new requests get its failure policy without entering the VM (`closed` → 500, `open` → the
//! plugin is skipped), and its ticks and queue notifications are skipped. Streams already open
//! on it go on. Each overrun that follows the end of a suspension within `max_interval` doubles
//! the next one, up to `max_interval`; after a quiet `max_interval` it starts over at the base.
//!
//! Other traps do not suspend: they end at once, so they cost the worker little, and a plugin
//! that traps on some requests only (a malformed token) would otherwise be disabled for all.

use crate::model::Backoff;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One plugin instance's suspensions (shared by its replicas on every worker).
pub(super) struct Suspension {
    backoff: Backoff,
    /// When the running suspension ends, in [`now_ms`]; 0 when none runs (one load per request
    /// on the fast path).
    until_ms: AtomicU64,
    /// Overruns in a row and when the last suspension ends; only touched on an overrun.
    streak: Mutex<Streak>,
    /// Suspensions started, for `/__barbacane/metrics`.
    pub(super) started: AtomicU64,
    /// Requests that got the failure policy because the plugin was suspended.
    pub(super) requests: AtomicU64,
}

#[derive(Default)]
struct Streak {
    overruns: u32,
    last_end_ms: u64,
}

impl Suspension {
    pub(super) fn new(backoff: Backoff) -> Suspension {
        Suspension {
            backoff,
            until_ms: AtomicU64::new(0),
            streak: Mutex::new(Streak::default()),
            started: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// Whether the plugin is suspended now.
    #[inline]
    pub(super) fn is_active(&self) -> bool {
        self.until_ms.load(Ordering::Relaxed) != 0 && self.active_at(now_ms())
    }

    /// Records an overrun: starts a suspension, unless one is already running (several workers
    /// may overrun at once; they make one suspension). Returns its length when it starts one.
    pub(super) fn overran(&self) -> Option<Duration> {
        self.overran_at(now_ms())
    }

    #[cold]
    fn active_at(&self, now: u64) -> bool {
        let until = self.until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if now < until {
            return true;
        }
        // Over: later requests take the fast path again (unless another overrun began one).
        let _ = self
            .until_ms
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    fn overran_at(&self, now: u64) -> Option<Duration> {
        let mut streak = self
            .streak
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.active_at(now) {
            return None;
        }
        if now.saturating_sub(streak.last_end_ms) > self.backoff.max_ms {
            streak.overruns = 0;
        }
        let factor = 1u64.checked_shl(streak.overruns).unwrap_or(u64::MAX);
        streak.overruns = streak.overruns.saturating_add(1);
        let length = self
            .backoff
            .base_ms
            .saturating_mul(factor)
            .min(self.backoff.max_ms);
        streak.last_end_ms = now.saturating_add(length);
        self.until_ms.store(streak.last_end_ms, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        Some(Duration::from_millis(length))
    }
}

/// Milliseconds since the first call, never 0 (0 means "no suspension").
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suspension(base_ms: u64, max_ms: u64) -> Suspension {
        Suspension::new(Backoff { base_ms, max_ms })
    }

    #[test]
    fn an_overrun_suspends_for_the_base_then_the_suspension_ends() {
        let s = suspension(1000, 10_000);
        assert!(!s.active_at(5));
        assert_eq!(s.overran_at(5), Some(Duration::from_secs(1)));
        assert!(s.active_at(5) && s.active_at(1004));
        assert!(!s.active_at(1005));
        assert_eq!(
            s.until_ms.load(Ordering::Relaxed),
            0,
            "back on the fast path"
        );
        assert_eq!(s.started.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn overruns_during_a_suspension_make_no_second_one() {
        let s = suspension(1000, 10_000);
        assert!(s.overran_at(5).is_some());
        assert_eq!(s.overran_at(500), None);
        assert!(!s.active_at(1005), "not extended");
        assert_eq!(s.started.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn overruns_in_a_row_double_the_suspension_up_to_the_max() {
        let s = suspension(1000, 5000);
        let mut now = 1;
        let mut lengths = Vec::new();
        for _ in 0..5 {
            let length = s.overran_at(now).unwrap();
            lengths.push(length.as_millis());
            // The next overrun comes right after this suspension ends.
            now += length.as_millis() as u64;
        }
        assert_eq!(lengths, [1000, 2000, 4000, 5000, 5000]);
    }

    #[test]
    fn a_quiet_max_interval_starts_the_backoff_over() {
        let s = suspension(1000, 5000);
        assert_eq!(s.overran_at(1).unwrap().as_millis(), 1000);
        assert_eq!(
            s.overran_at(1001 + 5000).unwrap().as_millis(),
            2000,
            "within max"
        );
        let end = 1001 + 5000 + 2000;
        assert_eq!(s.overran_at(end + 5001).unwrap().as_millis(), 1000, "quiet");
    }

    #[test]
    fn long_streaks_and_huge_bases_stay_at_the_max() {
        let s = suspension(u64::MAX / 2, u64::MAX / 2);
        assert_eq!(s.overran_at(1).unwrap().as_millis() as u64, u64::MAX / 2);
        let s = suspension(1, 3_600_000);
        let mut now = 1;
        for _ in 0..100 {
            now += s.overran_at(now).unwrap().as_millis() as u64;
        }
        assert_eq!(s.overran_at(now).unwrap().as_millis(), 3_600_000);
    }
}

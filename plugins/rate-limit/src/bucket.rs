//! The token bucket, as the generic cell rate algorithm (GCRA): a bucket of `burst` tokens that
//! refills continuously at `limit` tokens per `window`, kept as one number, the theoretical
//! arrival time (TAT) — the instant at which the bucket will be full again. A full bucket is any
//! TAT in the past, so the state of an idle client is the same as no state at all (which is what
//! lets the shared table reuse its slot).
//!
//! Everything is in nanoseconds since the Unix epoch, with saturating arithmetic: no input can
//! overflow or panic.

/// The bucket's rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Nanoseconds one token takes to come back (`window / limit`, at least 1).
    emission: u64,
    /// Nanoseconds an empty bucket takes to fill (`emission × burst`).
    capacity: u64,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed: store `tat`.
    Allow {
        /// The new TAT.
        tat: u64,
        /// Whole tokens left.
        remaining: u64,
        /// Nanoseconds until the bucket is full again.
        reset: u64,
    },
    /// Refused; nothing to store.
    Limit {
        /// Nanoseconds until one token is back.
        retry_after: u64,
        /// Nanoseconds until the bucket is full again.
        reset: u64,
    },
}

impl Bucket {
    /// `limit` tokens per `window` seconds, at most `burst` at once. Callers keep `limit` and
    /// `burst` at least 1.
    pub fn new(limit: u64, window: u64, burst: u64) -> Bucket {
        let emission = window.saturating_mul(1_000_000_000) / limit.max(1);
        let emission = emission.max(1);
        Bucket {
            emission,
            capacity: emission.saturating_mul(burst.max(1)),
        }
    }

    /// Takes one token at `now` from the bucket whose TAT is `tat` (`None`: never used).
    pub fn take(&self, tat: Option<u64>, now: u64) -> Decision {
        let tat = tat.map_or(now, |t| t.max(now));
        let next = tat.saturating_add(self.emission);
        let ahead = next - now;
        if ahead <= self.capacity {
            Decision::Allow {
                tat: next,
                remaining: (self.capacity - ahead) / self.emission,
                reset: ahead,
            }
        } else {
            Decision::Limit {
                retry_after: ahead - self.capacity,
                reset: tat - now,
            }
        }
    }

    /// Whether a bucket with this TAT is full at `now` (it holds no information).
    pub fn is_full(tat: u64, now: u64) -> bool {
        tat <= now
    }
}

/// Nanoseconds as whole seconds, rounded up (a client waiting that long is never early).
pub fn ceil_seconds(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// Takes tokens at `now` until refused; returns how many were allowed and the final state.
    fn drain(bucket: &Bucket, mut tat: Option<u64>, now: u64) -> (u64, Option<u64>, Decision) {
        let mut allowed = 0;
        loop {
            match bucket.take(tat, now) {
                Decision::Allow { tat: next, .. } => {
                    allowed += 1;
                    tat = Some(next);
                }
                refused => return (allowed, tat, refused),
            }
        }
    }

    #[test]
    fn a_fresh_bucket_allows_burst_then_refuses() {
        let bucket = Bucket::new(10, 60, 10);
        let now = 1_000 * S;
        assert_eq!(
            bucket.take(None, now),
            Decision::Allow {
                tat: now + 6 * S,
                remaining: 9,
                reset: 6 * S
            }
        );
        let (allowed, tat, refused) = drain(&bucket, None, now);
        assert_eq!(allowed, 10);
        assert_eq!(tat, Some(now + 60 * S));
        assert_eq!(
            refused,
            Decision::Limit {
                retry_after: 6 * S,
                reset: 60 * S
            }
        );
    }

    #[test]
    fn tokens_come_back_over_time() {
        let bucket = Bucket::new(10, 60, 10);
        let now = 1_000 * S;
        let (_, tat, _) = drain(&bucket, None, now);
        // 6 s later, exactly one token.
        let (allowed, _, _) = drain(&bucket, tat, now + 6 * S);
        assert_eq!(allowed, 1);
        // After a whole window, a full bucket, and an old TAT counts as none.
        let (allowed, _, _) = drain(&bucket, tat, now + 60 * S);
        assert_eq!(allowed, 10);
        assert!(Bucket::is_full(tat.unwrap_or(0), now + 60 * S));
        assert!(!Bucket::is_full(tat.unwrap_or(0), now + 59 * S));
    }

    #[test]
    fn burst_is_the_capacity_and_limit_the_rate() {
        // 2 per second sustained, 5 at once.
        let bucket = Bucket::new(2, 1, 5);
        let now = 1_000 * S;
        let (allowed, tat, refused) = drain(&bucket, None, now);
        assert_eq!(allowed, 5);
        assert_eq!(
            refused,
            Decision::Limit {
                retry_after: S / 2,
                reset: 5 * S / 2
            }
        );
        let (allowed, _, _) = drain(&bucket, tat, now + S);
        assert_eq!(allowed, 2);
        // A burst below the limit smooths traffic: one at a time, every 1/10 s.
        let smooth = Bucket::new(10, 1, 1);
        assert_eq!(drain(&smooth, None, now).0, 1);
    }

    #[test]
    fn extremes_do_not_overflow() {
        let bucket = Bucket::new(1, 365 * 24 * 3600, 1_000_000_000);
        assert!(matches!(
            bucket.take(None, u64::MAX - 5),
            Decision::Allow { .. }
        ));
        assert!(matches!(
            Bucket::new(1, 1, 1).take(Some(u64::MAX), 0),
            Decision::Limit { reset, .. } if reset == u64::MAX
        ));
        let fast = Bucket::new(1_000_000_000, 1, 1_000_000_000);
        assert!(
            matches!(fast.take(None, 0), Decision::Allow { remaining, .. } if remaining == 999_999_999)
        );
        // A clock before the epoch reads as 0; a TAT far ahead is just a long wait.
        assert!(
            matches!(Bucket::new(1, 1, 1).take(Some(10 * S), 0), Decision::Limit { retry_after, .. } if retry_after == 10 * S)
        );
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_seconds(0), 0);
        assert_eq!(ceil_seconds(1), 1);
        assert_eq!(ceil_seconds(S), 1);
        assert_eq!(ceil_seconds(S + 1), 2);
    }
}

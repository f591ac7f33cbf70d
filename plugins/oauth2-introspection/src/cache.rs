//! Introspection answers kept for a while, so that a token is not introspected on every request.
//!
//! It lives in the root context's memory: one cache per worker replica, not shared data, because
//! shared data has no delete and a 16 MiB cap per plugin (entries would outlive their TTL and
//! fill it), and because claims are better kept inside the one VM that needs them. The cost is
//! one introspection per token per TTL per worker.
//!
//! Keys are the SHA-256 of the token, never the token. The cache is bounded by entries and by
//! bytes; when full, the oldest insertions go first (TTLs are alike, so that is close to "the
//! soonest to expire").

use crate::answer::Answer;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// The cache key of a token.
pub type Key = [u8; 32];

/// The key of `token`.
pub fn key(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

/// The most bytes of answers kept (the VM has 64 MiB in all).
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// What one entry costs beyond its answer's size: the key, the bookkeeping.
const ENTRY_OVERHEAD: usize = 128;

struct Entry {
    answer: Rc<Answer>,
    /// Nanoseconds since the epoch.
    expires: u64,
    cost: usize,
    /// Which insertion this is, to tell stale `order` items apart.
    seq: u64,
}

/// The cache.
pub struct Cache {
    entries: HashMap<Key, Entry>,
    /// Keys in insertion order, with the insertion's `seq` (stale once the key is re-inserted
    /// or removed).
    order: VecDeque<(Key, u64)>,
    max_entries: usize,
    bytes: usize,
    seq: u64,
}

impl Cache {
    /// An empty cache of at most `max_entries` answers.
    pub fn new(max_entries: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            max_entries: max_entries.max(1),
            bytes: 0,
            seq: 0,
        }
    }

    /// The answer for `key` if it has not expired at `now` (nanoseconds).
    pub fn get(&mut self, key: &Key, now: u64) -> Option<Rc<Answer>> {
        let entry = self.entries.get(key)?;
        if entry.expires > now {
            return Some(entry.answer.clone());
        }
        self.remove(key);
        None
    }

    /// Keeps `answer` (of `size` bytes as received) until `expires` (nanoseconds).
    pub fn put(&mut self, key: Key, answer: Rc<Answer>, size: usize, expires: u64) {
        let cost = size.saturating_add(ENTRY_OVERHEAD);
        if cost > MAX_BYTES / 16 {
            // One huge answer must not push out hundreds of ordinary ones.
            return;
        }
        self.remove(&key);
        while self.entries.len() >= self.max_entries || self.bytes + cost > MAX_BYTES {
            let Some((oldest, seq)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&oldest).is_some_and(|e| e.seq == seq) {
                self.remove(&oldest);
            }
        }
        self.seq += 1;
        self.bytes += cost;
        self.order.push_back((key, self.seq));
        self.entries.insert(
            key,
            Entry {
                answer,
                expires,
                cost,
                seq: self.seq,
            },
        );
        // Re-inserted and removed keys leave stale items behind; drop them before they
        // outnumber the live ones.
        if self.order.len() > 2 * self.max_entries {
            let entries = &self.entries;
            self.order
                .retain(|(k, seq)| entries.get(k).is_some_and(|e| e.seq == *seq));
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.cost;
        }
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Until when to keep an answer received at `now` (nanoseconds since the epoch): an active
/// token's answer for `ttl` seconds but never beyond its `exp`; an inactive one (or an expired
/// one) for `negative_ttl` seconds. `None`: do not keep it.
pub fn expiry(answer: &Answer, now: u64, ttl: u64, negative_ttl: u64) -> Option<u64> {
    const NANOS: u64 = 1_000_000_000;
    let after =
        |seconds: u64| (seconds > 0).then(|| now.saturating_add(seconds.saturating_mul(NANOS)));
    match answer {
        Answer::Inactive => after(negative_ttl),
        Answer::Active(active) => {
            let Some(exp) = active.exp else {
                return after(ttl);
            };
            let exp = u64::try_from(exp).unwrap_or(0).saturating_mul(NANOS);
            if exp <= now {
                after(negative_ttl)
            } else {
                after(ttl).map(|until| until.min(exp))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use crate::answer::Active;

    const S: u64 = 1_000_000_000;

    fn active(exp: Option<i64>) -> Answer {
        Answer::Active(Active {
            claims: serde_json::Map::new(),
            exp,
            nbf: None,
        })
    }

    #[test]
    fn entries_expire() {
        let mut cache = Cache::new(10);
        let k = key("token");
        assert_ne!(k, key("token2"));
        cache.put(k, Rc::new(Answer::Inactive), 20, 10 * S);
        assert_eq!(cache.get(&k, 9 * S).as_deref(), Some(&Answer::Inactive));
        assert_eq!(cache.get(&k, 10 * S), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn bounded_by_entries_oldest_first() {
        let mut cache = Cache::new(3);
        for i in 0..5u8 {
            cache.put([i; 32], Rc::new(Answer::Inactive), 10, 100 * S);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&[0; 32], 0).is_none());
        assert!(cache.get(&[1; 32], 0).is_none());
        assert!(cache.get(&[4; 32], 0).is_some());
        // Re-inserting a key refreshes it; the stale order items do not evict anything live.
        for _ in 0..20 {
            cache.put([2; 32], Rc::new(Answer::Inactive), 10, 100 * S);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.order.len() <= 6);
        cache.put([9; 32], Rc::new(Answer::Inactive), 10, 100 * S);
        assert!(cache.get(&[3; 32], 0).is_none(), "the oldest went");
        assert!(cache.get(&[2; 32], 0).is_some());
    }

    #[test]
    fn bounded_by_bytes() {
        let mut cache = Cache::new(100_000);
        let big = MAX_BYTES / 16 - ENTRY_OVERHEAD;
        for i in 0..40u8 {
            cache.put([i; 32], Rc::new(Answer::Inactive), big, 100 * S);
        }
        assert!(cache.bytes <= MAX_BYTES);
        assert_eq!(cache.len(), 16);
        // Too big to keep at all.
        cache.put([99; 32], Rc::new(Answer::Inactive), MAX_BYTES, 100 * S);
        assert!(cache.get(&[99; 32], 0).is_none());
    }

    #[test]
    fn expiries() {
        let now = 1000 * S;
        assert_eq!(expiry(&Answer::Inactive, now, 60, 10), Some(1010 * S));
        assert_eq!(expiry(&Answer::Inactive, now, 60, 0), None);
        assert_eq!(expiry(&active(None), now, 60, 10), Some(1060 * S));
        assert_eq!(expiry(&active(Some(1030)), now, 60, 10), Some(1030 * S));
        // Never beyond exp, to the nanosecond.
        assert_eq!(
            expiry(&active(Some(1030)), now + S / 2, 60, 10),
            Some(1030 * S)
        );
        assert_eq!(expiry(&active(Some(5000)), now, 60, 10), Some(1060 * S));
        assert_eq!(expiry(&active(Some(1000)), now, 60, 10), Some(1010 * S));
        assert_eq!(expiry(&active(Some(-5)), now, 60, 10), Some(1010 * S));
        assert_eq!(expiry(&active(None), now, 0, 10), None);
        assert_eq!(expiry(&active(Some(2000)), now, 0, 10), None);
    }
}

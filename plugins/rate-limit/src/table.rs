//! The buckets of one policy in Proxy-Wasm shared data, so that every worker's replica counts
//! against the same limit.
//!
//! **Bounded:** shared data has no delete (the ABI's `remove` writes an empty value, and the
//! host caps a plugin's shared data at 16 MiB), so buckets live in a fixed table of `slots`
//! keys, `rl:<table>:<slot>`. A partition key is hashed (SHA-256; whatever its length, nothing of
//! it is stored but a fingerprint) to a start slot and probes [`PROBES`] slots from there. A slot
//! holds `owner fingerprint (8 bytes) ‖ TAT (8 bytes, big-endian)`. A slot whose bucket is full
//! again ([`Bucket::is_full`]) carries no information, so any partition may take it over: the
//! table only needs room for the partitions active at the same time.
//!
//! **Atomic:** each update is a read (value and CAS) then a write with that CAS; a
//! `CAS_MISMATCH` means another replica changed the slot in between, and the whole step is
//! retried from a fresh read, at most [`MAX_ATTEMPTS`] times.
//!
//! The store is behind [`Store`] so that this logic is unit-tested natively, races included.

use crate::bucket::{Bucket, Decision};
use crate::partition::Key;
use foldhash::SharedSeed;
use foldhash::fast::SeedableRandomState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

/// Slots probed from a partition's start slot.
pub const PROBES: u64 = 4;

/// Read-decide-write rounds before giving up. Each lost round means another request was
/// counted, so running out takes extreme contention — or a store that refuses every write
/// (the host's cap).
pub const MAX_ATTEMPTS: u32 = 64;

/// The CAS written when creating a slot. The ABI creates a missing key whatever the CAS, but
/// refuses a non-zero CAS that differs from an existing key's: so when two replicas race to
/// create the same slot, the second write fails instead of overwriting the first (CAS 0 would
/// always write). CAS values are handed out from 1 upwards, so an existing key carries this one
/// only after four billion writes, and only then could such a race lose one count.
const CREATE_CAS: u32 = u32::MAX;

/// Shared data as this module needs it.
pub trait Store {
    /// The value and CAS of `key`; `(None, None)` when it is missing.
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` under `key` if its CAS is still `cas`; false on a mismatch.
    fn set(&self, key: &str, value: &[u8], cas: u32) -> bool;
}

/// A partition key's place in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    owner: [u8; 8],
    start: u64,
}

impl Fingerprint {
    /// The fingerprint of partition key `key`.
    pub fn of(key: &str) -> Fingerprint {
        let digest = Sha256::digest(key.as_bytes());
        let mut owner = [0; 8];
        let mut start = [0; 8];
        owner.copy_from_slice(&digest[..8]);
        start.copy_from_slice(&digest[8..16]);
        Fingerprint {
            owner,
            start: u64::from_be_bytes(start),
        }
    }
}

/// The fingerprints of recent partition keys: a client sends many requests, and hashing its key
/// is a good part of what counting one costs. Addresses are remembered as addresses, so that a
/// known client's key is never written out. Bounded: forgotten all at once when full.
pub struct Fingerprints {
    ips: Remembered<Option<IpAddr>>,
    texts: Remembered<String>,
}

/// Keys and their fingerprints, hashed with foldhash rather than std's SipHash, which cost
/// several times as much per lookup in the compiled Wasm. Keyed per VM from the host's
/// randomness (std's `RandomState` draws it through WASI `random_get`), so that a client cannot
/// choose addresses that collide; the map is bounded in any case ([`REMEMBERED`]).
type Remembered<K> = HashMap<K, Fingerprint, SeedableRandomState>;

impl Default for Fingerprints {
    fn default() -> Fingerprints {
        let keyed = || {
            let seed = std::hash::RandomState::new().hash_one(0u8);
            SeedableRandomState::with_seed(seed, SharedSeed::global_random())
        };
        Fingerprints {
            ips: HashMap::with_hasher(keyed()),
            texts: HashMap::with_hasher(keyed()),
        }
    }
}

/// Keys remembered by [`Fingerprints`], of each kind.
const REMEMBERED: usize = 4096;

impl Fingerprints {
    /// The fingerprint of `key`, hashed only when it is not remembered.
    pub fn of(&mut self, key: Key) -> Fingerprint {
        match key {
            Key::Ip(ip) => remembered(&mut self.ips, ip, |ip| {
                Fingerprint::of(&Key::Ip(*ip).text())
            }),
            Key::Text(text) => remembered(&mut self.texts, text, |text| Fingerprint::of(text)),
        }
    }
}

/// The fingerprint `map` remembers under `key`, else `fingerprint(&key)`, remembered.
fn remembered<K: Eq + Hash>(
    map: &mut Remembered<K>,
    key: K,
    fingerprint: impl FnOnce(&K) -> Fingerprint,
) -> Fingerprint {
    if let Some(fp) = map.get(&key) {
        return *fp;
    }
    if map.len() >= REMEMBERED {
        map.clear();
    }
    let fp = fingerprint(&key);
    map.insert(key, fp);
    fp
}

/// What [`take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The bucket's answer.
    Decided(Decision),
    /// Every probed slot holds another partition's active bucket.
    Full,
    /// Every attempt lost its CAS (contention, or the store refusing writes).
    Contended,
}

/// One table: its name and size.
pub struct Table<'a> {
    /// The policy's table name.
    pub name: &'a str,
    /// Slots.
    pub slots: u32,
}

/// A slot as read.
struct Slot {
    key: String,
    cas: u32,
    /// The TAT when the slot is the partition's own and its bucket is not full.
    tat: Option<u64>,
}

impl Table<'_> {
    fn key(&self, slot: u64) -> String {
        // By hand, not `format!`: made on every request (see `fields::ratelimit`).
        ["rl:", self.name, ":", itoa::Buffer::new().format(slot)].concat()
    }

    /// The partition's own slot if it has one, else the first free one (missing, full,
    /// or unreadable), else `None`.
    fn find<S: Store + ?Sized>(&self, store: &S, fp: Fingerprint, now: u64) -> Option<Slot> {
        let slots = u64::from(self.slots.max(1));
        let mut free = None;
        for probe in 0..PROBES.min(slots) {
            let key = self.key(fp.start.wrapping_add(probe) % slots);
            let (value, cas) = store.get(&key);
            let Some(value) = value else {
                if free.is_none() {
                    free = Some(Slot {
                        key,
                        cas: CREATE_CAS,
                        tat: None,
                    });
                }
                continue;
            };
            // A key that exists has a CAS; without one the write below can only mismatch.
            let cas = cas.unwrap_or(CREATE_CAS);
            match decode(&value) {
                Some((owner, tat)) if owner == fp.owner => {
                    let tat = (!Bucket::is_full(tat, now)).then_some(tat);
                    return Some(Slot { key, cas, tat });
                }
                Some((_, tat)) if !Bucket::is_full(tat, now) => {}
                _ => {
                    if free.is_none() {
                        free = Some(Slot {
                            key,
                            cas,
                            tat: None,
                        });
                    }
                }
            }
        }
        free
    }
}

/// Takes a token at `now` for the partition `fp` from `table`, retrying on CAS mismatches.
pub fn take<S: Store + ?Sized>(
    store: &S,
    table: &Table<'_>,
    bucket: &Bucket,
    fp: Fingerprint,
    now: u64,
) -> Outcome {
    for _ in 0..MAX_ATTEMPTS {
        let Some(slot) = table.find(store, fp, now) else {
            return Outcome::Full;
        };
        let decision = bucket.take(slot.tat, now);
        match decision {
            Decision::Allow { tat, .. } => {
                if store.set(&slot.key, &encode(fp.owner, tat), slot.cas) {
                    return Outcome::Decided(decision);
                }
            }
            // A refusal changes nothing, and the read it rests on cannot be too pessimistic:
            // other replicas only ever take tokens from an active bucket.
            Decision::Limit { .. } => return Outcome::Decided(decision),
        }
    }
    Outcome::Contended
}

fn encode(owner: [u8; 8], tat: u64) -> [u8; 16] {
    let mut value = [0; 16];
    value[..8].copy_from_slice(&owner);
    value[8..].copy_from_slice(&tat.to_be_bytes());
    value
}

fn decode(value: &[u8]) -> Option<([u8; 8], u64)> {
    let owner: [u8; 8] = value.get(..8)?.try_into().ok()?;
    let tat: [u8; 8] = value.get(8..16)?.try_into().ok()?;
    (value.len() == 16).then_some((owner, u64::from_be_bytes(tat)))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    const S: u64 = 1_000_000_000;

    /// Another replica's work, run just before a write.
    type Hook = Box<dyn FnMut(&Memory)>;

    /// The ABI's shared data semantics: global CAS counter, a missing key created whatever the
    /// CAS, a non-zero CAS that differs refused.
    #[derive(Default)]
    struct Memory {
        entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        last_cas: Cell<u32>,
        /// Called before each write: lets a test slip in another replica's write.
        before_set: RefCell<Option<Hook>>,
        /// Refuse every write (the host's cap).
        full: Cell<bool>,
    }

    impl Store for Memory {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            match self.entries.borrow().get(key) {
                Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                None => (None, None),
            }
        }

        fn set(&self, key: &str, value: &[u8], cas: u32) -> bool {
            let hook = self.before_set.borrow_mut().take();
            if let Some(mut hook) = hook {
                hook(self);
            }
            if self.full.get() {
                return false;
            }
            let mut entries = self.entries.borrow_mut();
            if let Some((_, current)) = entries.get(key)
                && cas != 0
                && cas != *current
            {
                return false;
            }
            self.last_cas.set(self.last_cas.get() + 1);
            entries.insert(key.to_string(), (value.to_vec(), self.last_cas.get()));
            true
        }
    }

    fn allowed(outcome: Outcome) -> bool {
        matches!(outcome, Outcome::Decided(Decision::Allow { .. }))
    }

    #[test]
    fn counts_per_partition() {
        let store = Memory::default();
        let table = Table {
            name: "t",
            slots: 1000,
        };
        let bucket = Bucket::new(3, 60, 3);
        let a = Fingerprint::of("ip:10.0.0.1");
        let b = Fingerprint::of("ip:10.0.0.2");
        let now = 100 * S;
        let results: Vec<bool> = (0..4)
            .map(|_| allowed(take(&store, &table, &bucket, a, now)))
            .collect();
        assert_eq!(results, [true, true, true, false]);
        assert!(allowed(take(&store, &table, &bucket, b, now)));
        assert_eq!(
            take(&store, &table, &bucket, a, now),
            Outcome::Decided(Decision::Limit {
                retry_after: 20 * S,
                reset: 60 * S
            })
        );
        // Refilled after the window.
        assert!(allowed(take(&store, &table, &bucket, a, now + 60 * S)));
    }

    #[test]
    fn a_lost_cas_is_retried_from_a_fresh_read() {
        let store = Memory::default();
        let table = Table {
            name: "t",
            slots: 16,
        };
        let bucket = Bucket::new(2, 60, 2);
        let a = Fingerprint::of("a");
        let now = 100 * S;
        assert!(allowed(take(&store, &table, &bucket, a, now)));
        // Another replica takes the last token between our read and our write.
        *store.before_set.borrow_mut() = Some(Box::new(move |store: &Memory| {
            let table = Table {
                name: "t",
                slots: 16,
            };
            assert!(allowed(take(store, &table, &bucket, a, now)));
        }));
        // Our write fails, the retry sees an empty bucket.
        assert!(matches!(
            take(&store, &table, &bucket, a, now),
            Outcome::Decided(Decision::Limit { .. })
        ));
    }

    #[test]
    fn racing_creations_do_not_overwrite_each_other() {
        let store = Memory::default();
        let table = Table {
            name: "t",
            slots: 16,
        };
        let bucket = Bucket::new(1, 60, 1);
        let a = Fingerprint::of("a");
        let now = 100 * S;
        // Both replicas read a missing slot; the other one creates it first.
        *store.before_set.borrow_mut() = Some(Box::new(move |store: &Memory| {
            let table = Table {
                name: "t",
                slots: 16,
            };
            assert!(allowed(take(store, &table, &bucket, a, now)));
        }));
        assert!(matches!(
            take(&store, &table, &bucket, a, now),
            Outcome::Decided(Decision::Limit { .. })
        ));
        assert_eq!(store.entries.borrow().len(), 1);
    }

    #[test]
    fn full_buckets_give_their_slot_away_and_active_ones_do_not() {
        let store = Memory::default();
        // With 4 slots and 4 probes, every partition probes the whole table.
        let table = Table {
            name: "t",
            slots: 4,
        };
        let bucket = Bucket::new(1, 10, 1);
        let now = 100 * S;
        let partitions: Vec<Fingerprint> =
            (0..5).map(|i| Fingerprint::of(&format!("p{i}"))).collect();
        for p in &partitions[..4] {
            assert!(allowed(take(&store, &table, &bucket, *p, now)));
        }
        // Four active buckets fill the table: a fifth partition finds no slot.
        assert_eq!(
            take(&store, &table, &bucket, partitions[4], now),
            Outcome::Full
        );
        // Each is still limited where it is.
        assert!(!allowed(take(&store, &table, &bucket, partitions[0], now)));
        // Once they are full again, their slots are free.
        assert!(allowed(take(
            &store,
            &table,
            &bucket,
            partitions[4],
            now + 10 * S
        )));
        assert_eq!(store.entries.borrow().len(), 4);
    }

    #[test]
    fn a_partition_keeps_its_slot_when_an_earlier_one_frees_up() {
        let store = Memory::default();
        let table = Table {
            name: "t",
            slots: 4,
        };
        let bucket = Bucket::new(1, 100, 1);
        let a = Fingerprint::of("a");
        let now = 100 * S;
        // Another partition's bucket, active for one more second, on a's start slot.
        let first = table.key(a.start % 4);
        let other = encode(Fingerprint::of("b").owner, now + S);
        store
            .entries
            .borrow_mut()
            .insert(first.clone(), (other.to_vec(), 1));
        store.last_cas.set(1);
        assert!(allowed(take(&store, &table, &bucket, a, now)));
        assert_eq!(
            decode(&store.get(&first).0.unwrap()).unwrap().0,
            Fingerprint::of("b").owner
        );
        // That bucket refills: a must still find its own, active, one beyond it.
        assert!(!allowed(take(&store, &table, &bucket, a, now + 2 * S)));
    }

    #[test]
    fn a_store_that_refuses_writes_gives_up() {
        let store = Memory::default();
        store.full.set(true);
        let table = Table {
            name: "t",
            slots: 16,
        };
        let bucket = Bucket::new(1, 1, 1);
        assert_eq!(
            take(&store, &table, &bucket, Fingerprint::of("a"), S),
            Outcome::Contended
        );
    }

    #[test]
    fn a_key_has_the_fingerprint_of_its_text_however_it_is_remembered() {
        let mut remembered = Fingerprints::default();
        let ip = Key::Ip(Some("203.0.113.7".parse().unwrap()));
        let text = Key::Text(String::from("header:k"));
        for _ in 0..2 {
            assert_eq!(remembered.of(ip.clone()), Fingerprint::of("ip:203.0.113.7"));
            assert_eq!(remembered.of(text.clone()), Fingerprint::of("header:k"));
            assert_eq!(remembered.of(Key::Ip(None)), Fingerprint::of("ip:unknown"));
        }
        assert_ne!(
            Fingerprint::of("ip:203.0.113.7"),
            Fingerprint::of("header:k")
        );
    }

    #[test]
    fn values_round_trip_and_garbage_is_a_free_slot() {
        assert_eq!(decode(&encode([1; 8], 42)), Some(([1; 8], 42)));
        assert_eq!(decode(b"short"), None);
        assert_eq!(decode(&[0; 17]), None);
        let store = Memory::default();
        let table = Table {
            name: "t",
            slots: 1,
        };
        store
            .entries
            .borrow_mut()
            .insert(table.key(0), (b"garbage".to_vec(), 7));
        assert!(allowed(take(
            &store,
            &table,
            &Bucket::new(1, 1, 1),
            Fingerprint::of("a"),
            S
        )));
    }
}

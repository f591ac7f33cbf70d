//! Tokens this VM has already verified, as Envoy's `jwt_authn` `jwt_cache_config`: a client
//! sends the same token on many requests, and decoding it and checking its signature is most of
//! the plugin's cost. An entry holds what the verification produced — the identity to forward,
//! whose consumer carries the claims, and the token's `exp` and `nbf` — so that a hit skips
//! decoding, the signature and the static claims (issuer, audience, required claims: settings
//! are fixed for a VM's life) and checks only the times again. Entries are keyed by the exact
//! token text and evicted oldest first; the whole cache is emptied when the key set changes (a
//! removed key must not keep its tokens alive).

use crate::verify::Identity;
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::rc::Rc;

/// foldhash, not the standard SipHash: hashing the token is a good part of a cached request's
/// cost. Its weaker flooding resistance does not matter here: only tokens whose signature
/// verified are ever stored, so a client cannot fill the map with colliding keys.
type Hasher = foldhash::fast::RandomState;

/// What a verified token produced.
pub struct Verified {
    /// The consumer (with the claims) and forwarded headers.
    pub identity: Identity,
    /// The consumer, encoded once for the request's filter state.
    pub consumer: Vec<u8>,
    /// The token's `exp` and `nbf`, the claims a hit checks again (the others cannot change).
    pub times: crate::verify::Times,
}

/// A bounded map from token text to its verification.
pub struct TokenCache {
    capacity: usize,
    hasher: Hasher,
    /// A `HashTable` rather than a `HashMap` for its lookup with our own equality ([`same`]).
    entries: HashTable<(String, Rc<Verified>)>,
    /// Insertion order, for eviction.
    order: VecDeque<String>,
}

/// Whether two tokens are the same text, compared eight bytes at a time: `==` on strings calls
/// wasi-libc's `memcmp`, a byte loop (and the gateway checks its deadline on every turn of a
/// loop), which was most of a cache hit's cost for tokens of a few hundred bytes.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let word = |chunk: &[u8]| <[u8; 8]>::try_from(chunk).map_or(0, u64::from_ne_bytes);
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest = a_words.remainder() == b_words.remainder();
    rest && a_words.zip(b_words).all(|(x, y)| word(x) == word(y))
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0: nothing is kept).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            hasher: Hasher::default(),
            entries: HashTable::new(),
            order: VecDeque::new(),
        }
    }

    /// The verification of `token`, if it is cached.
    pub fn get(&self, token: &str) -> Option<Rc<Verified>> {
        let hash = self.hasher.hash_one(token);
        let (_, verified) = self.entries.find(hash, |(t, _)| same(t, token))?;
        Some(verified.clone())
    }

    /// Remembers `token`'s verification, evicting the oldest entry when full.
    pub fn insert(&mut self, token: &str, verified: Rc<Verified>) {
        let hash = self.hasher.hash_one(token);
        if self.capacity == 0 || self.entries.find(hash, |(t, _)| same(t, token)).is_some() {
            return;
        }
        if self.entries.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            let oldest_hash = self.hasher.hash_one(&oldest);
            if let Ok(entry) = self
                .entries
                .find_entry(oldest_hash, |(t, _)| same(t, &oldest))
            {
                entry.remove();
            }
        }
        let hasher = &self.hasher;
        self.entries
            .insert_unique(hash, (token.to_string(), verified), |(t, _)| {
                hasher.hash_one(t)
            });
        self.order.push_back(token.to_string());
    }

    /// Forgets every token (the key set changed).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barbacane_sdk::consumer::Consumer;

    fn verified(id: &str) -> Rc<Verified> {
        Rc::new(Verified {
            identity: Identity {
                consumer: Consumer {
                    id: id.to_string(),
                    ..Consumer::default()
                },
                headers: Vec::new(),
            },
            consumer: Vec::new(),
            times: Default::default(),
        })
    }

    #[test]
    fn tokens_are_the_same_only_when_every_byte_is() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig";
        let copy = String::from(token);
        assert!(same(token, &copy), "another copy of the same text");
        assert!(same("", ""));
        for at in 0..token.len() {
            let mut other = token.as_bytes().to_vec();
            other[at] ^= 1;
            assert!(
                !same(token, std::str::from_utf8(&other).unwrap()),
                "byte {at}"
            );
        }
        assert!(!same(token, &token[..token.len() - 1]));
    }

    #[test]
    fn keeps_at_most_capacity_and_evicts_the_oldest() {
        let mut cache = TokenCache::new(2);
        cache.insert("a", verified("a"));
        cache.insert("b", verified("b"));
        cache.insert("c", verified("c"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a").is_none());
        assert_eq!(
            cache.get("b").map(|v| v.identity.consumer.id.clone()),
            Some("b".into())
        );
        assert!(cache.get("c").is_some());
    }

    #[test]
    fn capacity_zero_keeps_nothing_and_clear_empties() {
        let mut off = TokenCache::new(0);
        off.insert("a", verified("a"));
        assert!(off.is_empty());
        let mut cache = TokenCache::new(4);
        cache.insert("a", verified("a"));
        cache.insert("a", verified("other"));
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.get("a").map(|v| v.identity.consumer.id.clone()),
            Some("a".into())
        );
        cache.clear();
        assert!(cache.get("a").is_none());
    }
}

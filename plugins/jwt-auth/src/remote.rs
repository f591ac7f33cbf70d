//! The remote JWKS's state in one VM: the last good key set, the fetch in flight, when the next
//! one is due, and the requests waiting for it. Pure bookkeeping (the clock is passed in);
//! `lib.rs` sends the fetches and answers the waiting requests.
//!
//! * A good answer (200, a JWKS with at least one usable key) replaces the key set; the next
//!   refresh is `refresh_interval` later.
//! * Anything else — an error status, a timeout, a body that is not a JWKS — keeps the last good
//!   key set and retries after `retry_interval`.
//! * A token naming an unknown `kid` may trigger a fetch early (a key rotation the plugin has not
//!   seen yet), at most once per `min_refetch_interval`.

use crate::extract::Found;
use crate::keys::{self, Key};
use crate::settings::Remote;
use crate::token::Token;
use std::rc::Rc;

/// A request paused until the fetch in flight completes.
#[derive(Debug, Clone)]
pub struct Waiter {
    /// Its http context.
    pub context_id: u32,
    /// Its parsed token.
    pub token: Token,
    /// Where the token was found (to strip it).
    pub found: Found,
}

/// The most requests that may wait for one fetch; more are answered at once.
pub const MAX_WAITERS: usize = 4096;

/// The fetch in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
struct InFlight {
    token: u32,
    /// After this the answer is given up on (its context may be gone, so it may never come).
    deadline: f64,
}

/// What a fetch's answer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The key set was replaced: this many keys, these skipped (index, reason).
    Loaded(usize, Vec<(usize, String)>),
    /// The answer was refused; the last good key set stays. `repeated`: the previous fetch
    /// failed the same way (not worth another warning).
    Failed {
        /// Why.
        why: String,
        /// Whether the previous fetch failed for the same reason.
        repeated: bool,
    },
}

/// The remote JWKS's state.
#[derive(Debug)]
pub struct RemoteState {
    /// The settings.
    pub settings: Remote,
    /// The last good key set (`None` until a fetch succeeds).
    pub keys: Option<Rc<Vec<Key>>>,
    in_flight: Option<InFlight>,
    /// When the last fetch was started.
    last_started: Option<f64>,
    /// When the next scheduled fetch is due.
    next_fetch: f64,
    /// Requests waiting for the fetch in flight.
    pub waiters: Vec<Waiter>,
    /// Why the last fetch failed, if it did.
    pub last_error: Option<String>,
}

impl RemoteState {
    /// A state with no keys yet and a fetch due now.
    pub fn new(settings: Remote) -> RemoteState {
        RemoteState {
            settings,
            keys: None,
            in_flight: None,
            last_started: None,
            next_fetch: 0.0,
            waiters: Vec::new(),
            last_error: None,
        }
    }

    /// Whether a fetch is in flight.
    pub fn fetching(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether a scheduled fetch is due (none in flight, its time has come).
    pub fn due(&self, now: f64) -> bool {
        self.in_flight.is_none() && now >= self.next_fetch
    }

    /// Whether a token with an unknown `kid` may trigger a fetch now.
    pub fn may_refetch(&self, now: f64) -> bool {
        self.settings.refetch_on_unknown_kid
            && self.in_flight.is_none()
            && self
                .last_started
                .is_none_or(|t| now - t >= f64::from(self.settings.min_refetch_interval))
    }

    /// A fetch was sent as callout `token`.
    pub fn started(&mut self, token: u32, now: f64) {
        // The callout's own timeout answers first; the margin covers a lost answer.
        let deadline = now + f64::from(self.settings.timeout_ms) / 1000.0 + 5.0;
        self.in_flight = Some(InFlight { token, deadline });
        self.last_started = Some(now);
    }

    /// A fetch could not be sent.
    pub fn not_sent(&mut self, why: String, now: f64) {
        self.last_started = Some(now);
        self.fail(why, now);
    }

    fn fail(&mut self, why: String, now: f64) {
        self.in_flight = None;
        self.next_fetch = now + f64::from(self.settings.retry_interval);
        self.last_error = Some(why);
    }

    /// The fetch in flight is past its deadline: give up on it. True when there was one.
    pub fn expire(&mut self, now: f64) -> bool {
        match self.in_flight {
            Some(f) if now >= f.deadline => {
                self.fail(String::from("no answer from the JWKS upstream"), now);
                true
            }
            _ => false,
        }
    }

    /// The answer to callout `token`: `None` when it is not the fetch in flight.
    pub fn answered(
        &mut self,
        token: u32,
        status: Option<&str>,
        body: &[u8],
        now: f64,
    ) -> Option<Outcome> {
        if self.in_flight.map(|f| f.token) != Some(token) {
            return None;
        }
        let result = match status {
            Some("200") => parse(body),
            Some(status) => Err(format!("the JWKS upstream answered {status}")),
            None => Err(String::from("the JWKS fetch failed (no response)")),
        };
        Some(match result {
            Ok(jwks) => {
                let count = jwks.keys.len();
                self.keys = Some(Rc::new(jwks.keys));
                self.in_flight = None;
                self.next_fetch = now + f64::from(self.settings.refresh_interval);
                self.last_error = None;
                Outcome::Loaded(count, jwks.skipped)
            }
            Err(why) => {
                let repeated = self.last_error.as_deref() == Some(why.as_str());
                self.fail(why.clone(), now);
                Outcome::Failed { why, repeated }
            }
        })
    }

    /// Seconds until the next fetch attempt, for `retry-after` (at least 1).
    pub fn retry_after(&self, now: f64) -> u32 {
        let wait = if self.in_flight.is_some() {
            f64::from(self.settings.timeout_ms) / 1000.0
        } else {
            self.next_fetch - now
        };
        wait.ceil().clamp(1.0, f64::from(u32::MAX)) as u32
    }
}

/// A JWKS body with at least one usable key.
fn parse(body: &[u8]) -> Result<keys::Jwks, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| String::from("the JWKS is not JSON"))?;
    let jwks = keys::parse_jwks(&doc)?;
    if jwks.keys.is_empty() {
        return Err(String::from("the JWKS has no usable signature key"));
    }
    Ok(jwks)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    fn remote() -> RemoteState {
        RemoteState::new(Remote {
            upstream: "idp".into(),
            path: "/jwks".into(),
            authority: "idp".into(),
            timeout_ms: 2000,
            refresh_interval: 300,
            retry_interval: 5,
            refetch_on_unknown_kid: true,
            min_refetch_interval: 30,
        })
    }

    const JWKS: &[u8] = br#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "e", "x": "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE"}, {"kty": "XX"}]}"#;

    #[test]
    fn good_answers_replace_the_keys_and_schedule_a_refresh() {
        let mut r = remote();
        assert!(r.due(0.0));
        r.started(1, 100.0);
        assert!(r.fetching() && !r.due(1000.0));
        assert_eq!(
            r.answered(2, Some("200"), JWKS, 100.1),
            None,
            "not our callout"
        );
        assert_eq!(
            r.answered(1, Some("200"), JWKS, 100.1),
            Some(Outcome::Loaded(1, vec![(1, "unsupported kty 'XX'".into())]))
        );
        assert_eq!(r.keys.as_ref().unwrap().len(), 1);
        assert!(!r.due(399.0) && r.due(400.1));
    }

    #[test]
    fn failures_keep_the_last_good_keys_and_retry_sooner() {
        let mut r = remote();
        r.started(1, 0.0);
        r.answered(1, Some("200"), JWKS, 0.0);
        for (status, body, why) in [
            (Some("500"), &b""[..], "answered 500"),
            (Some("200"), b"<html>", "not JSON"),
            (Some("200"), b"{\"keys\": []}", "no usable"),
            (Some("200"), b"[]", "'keys' array"),
            (None, b"", "no response"),
        ] {
            r.started(2, 10.0);
            assert!(
                matches!(r.answered(2, status, body, 10.0), Some(Outcome::Failed { why: w, repeated: false }) if w.contains(why))
            );
            assert_eq!(r.keys.as_ref().unwrap().len(), 1, "{why}");
            assert!(!r.due(14.9) && r.due(15.0));
            assert_eq!(r.retry_after(10.0), 5);
        }
        r.started(3, 20.0);
        assert!(matches!(
            r.answered(3, None, b"", 20.0),
            Some(Outcome::Failed { repeated: true, .. })
        ));
    }

    #[test]
    fn lost_answers_expire() {
        let mut r = remote();
        r.started(1, 0.0);
        assert!(!r.expire(6.9));
        assert!(r.expire(7.0));
        assert!(!r.fetching());
        assert_eq!(r.answered(1, Some("200"), JWKS, 7.1), None);
        assert!(r.due(12.0));
    }

    #[test]
    fn unknown_kid_refetches_are_rate_limited() {
        let mut r = remote();
        assert!(r.may_refetch(0.0));
        r.started(1, 0.0);
        assert!(!r.may_refetch(1.0), "one in flight");
        r.answered(1, Some("200"), JWKS, 0.5);
        assert!(!r.may_refetch(29.0));
        assert!(r.may_refetch(30.0));
        r.settings.refetch_on_unknown_kid = false;
        assert!(!r.may_refetch(100.0));
    }
}

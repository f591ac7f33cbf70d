//! The partition key: which bucket a request counts against. Keys are prefixed by where they
//! come from (`ip:`, `header:`, `consumer:`, `claim:`), so a header value that happens to be an
//! IP address does not share the bucket of that address.

use crate::config::{Fallback, KeySource, Policy};
use barbacane_sdk::Problem;
use barbacane_sdk::consumer::Consumer;
use std::borrow::Cow;
use std::net::IpAddr;

/// What the request offers to identify its client (only what the policy needs is read).
#[derive(Debug, Default)]
pub struct Request {
    /// The client's IP address.
    pub ip: Option<IpAddr>,
    /// The configured header's value.
    pub header: Option<String>,
    /// The consumer an auth plugin set.
    pub consumer: Option<Consumer>,
}

/// A partition key. A client's address is kept as an address: the text is only needed to
/// fingerprint a key not seen before (see `table::Fingerprints`), and most keys are addresses.
#[derive(Debug, Clone)]
pub enum Key {
    /// The client's address (`None`: the host gave none).
    Ip(Option<IpAddr>),
    /// A key from a header, the consumer or a claim, as text.
    Text(String),
}

impl Key {
    /// The key as text, `ip:…`, `header:…`, `consumer:…` or `claim:…`.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Key::Ip(ip) => Cow::Owned(ip_key(*ip)),
            Key::Text(text) => Cow::Borrowed(text),
        }
    }
}

/// The partition key of `request`, or the refusal when it has none and the policy says refuse.
pub fn key(policy: &Policy, request: &Request) -> Result<Key, Problem> {
    let found = match &policy.key {
        KeySource::Ip => return Ok(Key::Ip(request.ip)),
        KeySource::Header(_) => request
            .header
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| format!("header:{v}")),
        KeySource::Consumer => request
            .consumer
            .as_ref()
            .map(|c| c.id.as_str())
            .filter(|id| !id.is_empty())
            .map(|id| format!("consumer:{id}")),
        KeySource::Claim(path) => request
            .consumer
            .as_ref()
            .map(|c| c.claim_strings(path))
            .filter(|values| !values.is_empty())
            .map(|values| format!("claim:{}", values.join(" "))),
    };
    match (found, policy.fallback) {
        (Some(key), _) => Ok(Key::Text(key)),
        (None, Fallback::Ip) => Ok(Key::Ip(request.ip)),
        (None, Fallback::Refuse) => Err(refusal(&policy.key)),
    }
}

/// Everyone whose address the host does not give shares one bucket (the gateway always gives
/// one; this is for hosts that do not).
fn ip_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(ip) => format!("ip:{ip}"),
        None => String::from("ip:unknown"),
    }
}

/// The reply when the key is missing and the fallback is `refuse`: the client can fix a
/// missing header (400); a missing identity is not its request's form but its standing (403).
fn refusal(source: &KeySource) -> Problem {
    const KIND: &str = "rate-limit-key-missing";
    match source {
        KeySource::Header(name) => Problem::new(
            400,
            KIND,
            format!("the {name} header is required (requests are rate limited by it)"),
        ),
        KeySource::Claim(path) => Problem::new(
            403,
            KIND,
            format!(
                "requests must come from an authenticated consumer with a '{path}' claim \
                 (requests are rate limited by it)"
            ),
        ),
        KeySource::Consumer | KeySource::Ip => Problem::new(
            403,
            KIND,
            "requests must come from an authenticated consumer (requests are rate limited by it)",
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use barbacane_sdk::config;
    use serde_json::json;

    fn policy(json: &str) -> Policy {
        Policy::new(config::parse(Some(json.as_bytes().to_vec())).unwrap()).unwrap()
    }

    fn consumer(id: &str, claims: serde_json::Value) -> Option<Consumer> {
        Some(Consumer {
            id: id.into(),
            claims: claims.as_object().cloned().unwrap_or_default(),
            ..Consumer::default()
        })
    }

    #[test]
    fn keys_by_source() {
        let ip = Some("203.0.113.7".parse().unwrap());
        let request = Request {
            ip,
            header: Some(" key-1 ".into()),
            consumer: consumer(
                "alice",
                json!({"org": {"id": "acme"}, "groups": ["a", "b"]}),
            ),
        };
        let key = |json: &str| key(&policy(json), &request).unwrap().text().into_owned();
        assert_eq!(key(r#"{"limit": 1}"#), "ip:203.0.113.7");
        assert_eq!(
            key(r#"{"limit": 1, "limit_by": "header", "header_name": "x-key"}"#),
            "header:key-1"
        );
        assert_eq!(
            key(r#"{"limit": 1, "limit_by": "consumer"}"#),
            "consumer:alice"
        );
        assert_eq!(
            key(r#"{"limit": 1, "limit_by": "claim", "claim": "org.id"}"#),
            "claim:acme"
        );
        assert_eq!(
            key(r#"{"limit": 1, "limit_by": "claim", "claim": "groups"}"#),
            "claim:a b"
        );
        assert_eq!(
            super::key(&policy(r#"{"limit": 1}"#), &Request::default())
                .unwrap()
                .text(),
            "ip:unknown"
        );
    }

    #[test]
    fn missing_keys_fall_back_or_refuse() {
        let request = Request {
            ip: Some("::1".parse().unwrap()),
            header: Some("  ".into()),
            consumer: consumer("", json!({"org": {}})),
        };
        for source in [
            r#""limit_by": "header", "header_name": "x-key""#,
            r#""limit_by": "consumer""#,
            r#""limit_by": "claim", "claim": "org""#,
        ] {
            let fallback = policy(&format!(r#"{{"limit": 1, {source}}}"#));
            let fell_back = key(&fallback, &request).unwrap();
            assert_eq!(fell_back.text(), "ip:::1");
            let refuse = policy(&format!(
                r#"{{"limit": 1, "fallback": "refuse", {source}}}"#
            ));
            let problem = key(&refuse, &request).unwrap_err();
            assert_eq!(problem.kind, "rate-limit-key-missing");
            let expected = if source.contains("header") { 400 } else { 403 };
            assert_eq!(problem.status, expected, "{source}");
        }
    }
}

//! The configuration and the key check: which key a request presents (header first, then query
//! parameter) and which consumer, if any, it belongs to. Pure functions of strings and bytes, so
//! that they are unit-tested natively.

use barbacane_sdk::config::ConfigError;
use barbacane_sdk::consumer::{Consumer, is_group};
use barbacane_sdk::http::{self, is_header_text, is_quotable, is_token};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The plugin configuration, as written in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The accepted keys and their consumers.
    pub consumers: Vec<ConsumerEntry>,
    /// The header the key is read from (`None`: not from headers).
    #[serde(default = "default_header")]
    pub header: Option<String>,
    /// The query parameter the key is read from (`None`: not from the query).
    #[serde(default)]
    pub query_param: Option<String>,
    /// The realm of the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Remove the key from the forwarded request.
    #[serde(default = "enabled")]
    pub hide_credentials: bool,
}

/// One accepted key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerEntry {
    /// The consumer the key identifies.
    pub id: String,
    /// SHA-256 of the key, hexadecimal.
    pub key_sha256: String,
    /// The consumer's groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_header() -> Option<String> {
    Some(String::from("x-api-key"))
}

fn default_realm() -> String {
    String::from("api")
}

fn enabled() -> bool {
    true
}

/// Where the presented key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// In the configured header.
    Header,
    /// In the configured query parameter.
    Query,
}

/// What the check decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A known key: its consumer, and where the key was.
    Authenticated {
        /// Who the key belongs to.
        consumer: Consumer,
        /// Where it was found (to remove it when hiding credentials).
        source: Source,
    },
    /// No usable key: a 401 with this detail.
    Refused(String),
}

/// One configured key, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: String,
    digest: [u8; 32],
    groups: Vec<String>,
}

/// The checked configuration, ready for requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    entries: Vec<Entry>,
    /// Lowercase header name.
    header: Option<String>,
    query_param: Option<String>,
    challenge: String,
    hide_credentials: bool,
}

impl Keys {
    /// Checks `config`: a place to read keys from, well-formed unique hashes, ids and groups
    /// that can travel in headers, a realm that fits in a quoted string.
    pub fn new(config: Config) -> Result<Keys, ConfigError> {
        let error = |pointer: String, message: String| ConfigError { pointer, message };
        if config.header.is_none() && config.query_param.is_none() {
            return Err(error(
                "/header".into(),
                "no header and no query_param: a key could never be found".into(),
            ));
        }
        if let Some(header) = &config.header
            && !is_token(header)
        {
            return Err(error(
                "/header".into(),
                format!("'{header}' is not a header name"),
            ));
        }
        if config.query_param.as_deref() == Some("") {
            return Err(error(
                "/query_param".into(),
                "the parameter name is empty".into(),
            ));
        }
        if !is_quotable(&config.realm) {
            return Err(error(
                "/realm".into(),
                "the realm must be printable ASCII without '\"' or '\\'".into(),
            ));
        }
        if config.consumers.is_empty() {
            return Err(error(
                "/consumers".into(),
                "at least one consumer is needed: without one every request is refused".into(),
            ));
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(config.consumers.len());
        for (i, consumer) in config.consumers.into_iter().enumerate() {
            if !is_header_text(&consumer.id) {
                return Err(error(
                    format!("/consumers/{i}/id"),
                    "the id must be non-empty printable ASCII (it is forwarded as x-consumer-id)"
                        .into(),
                ));
            }
            let Some(digest) = decode_hex(&consumer.key_sha256) else {
                return Err(error(
                    format!("/consumers/{i}/key_sha256"),
                    "expected the SHA-256 of the key as 64 hexadecimal digits".into(),
                ));
            };
            if entries.iter().any(|e| e.digest == digest) {
                return Err(error(
                    format!("/consumers/{i}/key_sha256"),
                    "the same key is configured twice".into(),
                ));
            }
            if let Some(g) = consumer.groups.iter().position(|g| !is_group(g)) {
                return Err(error(
                    format!("/consumers/{i}/groups/{g}"),
                    "a group must be non-empty printable ASCII without commas or surrounding spaces"
                        .into(),
                ));
            }
            entries.push(Entry {
                id: consumer.id,
                digest,
                groups: consumer.groups,
            });
        }
        Ok(Keys {
            entries,
            header: config.header.map(|h| h.to_ascii_lowercase()),
            query_param: config.query_param,
            challenge: format!("ApiKey realm=\"{}\"", config.realm),
            hide_credentials: config.hide_credentials,
        })
    }

    /// The header keys are read from (lowercase).
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// The query parameter keys are read from.
    pub fn query_param(&self) -> Option<&str> {
        self.query_param.as_deref()
    }

    /// The `WWW-Authenticate` value of 401 replies.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }

    /// Whether the key is removed from the forwarded request.
    pub fn hide_credentials(&self) -> bool {
        self.hide_credentials
    }

    /// Decides a request from the values of the key header (raw bytes, possibly several) and
    /// the request target (`:path`, for the query parameter).
    pub fn authenticate(&self, header_values: &[Vec<u8>], target: &str) -> Outcome {
        let (key, source) = match self.presented_key(header_values, target) {
            Ok(found) => found,
            Err(detail) => return Outcome::Refused(detail),
        };
        let digest: [u8; 32] = Sha256::digest(&key).into();
        // Every entry is compared, whatever matched: the time taken does not depend on which
        // entry (if any) holds the key. The comparisons are constant-time too, although an
        // attacker choosing the key does not choose its digest.
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        match found {
            Some(entry) => Outcome::Authenticated {
                consumer: Consumer {
                    id: entry.id.clone(),
                    groups: entry.groups.clone(),
                    authenticated_by: String::from(crate::PLUGIN_NAME),
                    ..Consumer::default()
                },
                source,
            },
            None => Outcome::Refused(String::from("invalid API key")),
        }
    }

    /// The key the request presents: the header's (header first), else the query parameter's.
    /// Empty values count as absent; two different values in one place are refused rather than
    /// guessed between (a proxy and the upstream might pick different ones).
    fn presented_key(
        &self,
        header_values: &[Vec<u8>],
        target: &str,
    ) -> Result<(Vec<u8>, Source), String> {
        if let Some(name) = &self.header {
            let values: Vec<&[u8]> = header_values
                .iter()
                .map(|v| v.trim_ascii())
                .filter(|v| !v.is_empty())
                .collect();
            if let Some(first) = values.first() {
                if values.iter().any(|v| v != first) {
                    return Err(format!("several API keys in header {name}"));
                }
                return Ok((first.to_vec(), Source::Header));
            }
        }
        if let Some(name) = &self.query_param {
            let values: Vec<String> = http::query_pairs(target)
                .into_iter()
                .filter(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v)
                .collect();
            if let Some(first) = values.first() {
                if values.iter().any(|v| v != first) {
                    return Err(format!("several API keys in query parameter {name}"));
                }
                return Ok((first.clone().into_bytes(), Source::Query));
            }
        }
        Err(match (&self.header, &self.query_param) {
            (Some(h), Some(q)) => format!("no API key in header {h} or query parameter {q}"),
            (Some(h), None) => format!("no API key in header {h}"),
            (None, Some(q)) => format!("no API key in query parameter {q}"),
            (None, None) => String::from("no API key"),
        })
    }
}

/// 64 hexadecimal digits (either case) as 32 bytes.
fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let high = hex_value(pair[0])?;
        let low = hex_value(pair[1])?;
        out[i] = (high << 4) | low;
    }
    Some(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
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

    /// SHA-256("alice-key"), computed with `printf %s alice-key | sha256sum`.
    const ALICE: &str = "72ee9d4355ccb9d3a4c9dbf37382e38e75c1b1a225b5bd1f729ee91bbda30c20";

    fn keys(json: &str) -> Keys {
        Keys::new(config::parse(Some(json.as_bytes().to_vec())).unwrap()).unwrap()
    }

    fn refused(json: &str) -> ConfigError {
        config::parse(Some(json.as_bytes().to_vec()))
            .and_then(Keys::new)
            .unwrap_err()
    }

    fn hex(digest: impl AsRef<[u8]>) -> String {
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn sha(key: &str) -> String {
        hex(Sha256::digest(key.as_bytes()))
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(sha("alice-key"), ALICE);
        let digest = decode_hex(&ALICE.to_uppercase()).unwrap();
        assert_eq!(hex(digest), ALICE);
        assert_eq!(decode_hex(&ALICE[1..]), None);
        assert_eq!(decode_hex(&format!("{}g", &ALICE[1..])), None);
        assert_eq!(decode_hex(&format!("{}é", &ALICE[2..])), None);
    }

    #[test]
    fn configuration_is_checked() {
        let ok = format!(r#"{{"id": "a", "key_sha256": "{ALICE}"}}"#);
        assert_eq!(
            refused(r#"{}"#).message,
            "missing field `consumers`",
            "consumers are required"
        );
        assert_eq!(refused(r#"{"consumers": []}"#).pointer, "/consumers");
        assert_eq!(
            refused(r#"{"consumers": [{"id": "a", "key_sha256": "abc"}]}"#).pointer,
            "/consumers/0/key_sha256"
        );
        assert_eq!(
            refused(&format!(r#"{{"consumers": [{ok}, {ok}]}}"#)).pointer,
            "/consumers/1/key_sha256"
        );
        assert_eq!(
            refused(&format!(
                r#"{{"consumers": [{{"id": "a\n", "key_sha256": "{ALICE}"}}]}}"#
            ))
            .pointer,
            "/consumers/0/id"
        );
        assert_eq!(
            refused(&format!(
                r#"{{"consumers": [{{"id": "a", "key_sha256": "{ALICE}", "groups": ["x", "a,b"]}}]}}"#
            ))
            .pointer,
            "/consumers/0/groups/1"
        );
        assert_eq!(
            refused(&format!(
                r#"{{"consumers": [{ok}], "header": null, "query_param": null}}"#
            ))
            .pointer,
            "/header"
        );
        assert_eq!(
            refused(&format!(r#"{{"consumers": [{ok}], "header": "x key"}}"#)).pointer,
            "/header"
        );
        assert_eq!(
            refused(&format!(r#"{{"consumers": [{ok}], "realm": "a\"b"}}"#)).pointer,
            "/realm"
        );
        assert_eq!(
            refused(&format!(r#"{{"consumers": [{ok}], "query_param": ""}}"#)).pointer,
            "/query_param"
        );
        let k = keys(&format!(r#"{{"consumers": [{ok}], "header": "X-Key"}}"#));
        assert_eq!(k.header(), Some("x-key"));
        assert_eq!(k.challenge(), "ApiKey realm=\"api\"");
        assert!(k.hide_credentials());
    }

    #[test]
    fn keys_are_found_header_first() {
        let k = keys(&format!(
            r#"{{"consumers": [
                {{"id": "alice", "key_sha256": "{}", "groups": ["admins"]}},
                {{"id": "bob", "key_sha256": "{}"}}
            ], "query_param": "apikey"}}"#,
            sha("alice-key"),
            sha("bob-key")
        ));
        let alice = Consumer {
            id: "alice".into(),
            groups: vec!["admins".into()],
            authenticated_by: "apikey-auth".into(),
            ..Consumer::default()
        };
        assert_eq!(
            k.authenticate(&[b"alice-key".to_vec()], "/p"),
            Outcome::Authenticated {
                consumer: alice.clone(),
                source: Source::Header
            }
        );
        // Header first: the query's key is not looked at.
        assert_eq!(
            k.authenticate(&[b"alice-key".to_vec()], "/p?apikey=bob-key"),
            Outcome::Authenticated {
                consumer: alice.clone(),
                source: Source::Header
            }
        );
        assert!(matches!(
            k.authenticate(&[], "/p?x=1&apikey=bob-key"),
            Outcome::Authenticated { consumer, source: Source::Query } if consumer.id == "bob"
        ));
        // An empty header falls back to the query.
        assert!(matches!(
            k.authenticate(&[b" ".to_vec()], "/p?apikey=bob-key"),
            Outcome::Authenticated {
                source: Source::Query,
                ..
            }
        ));
        // Repeated identical values are one key; different ones are refused.
        assert!(matches!(
            k.authenticate(&[b"alice-key".to_vec(), b"alice-key".to_vec()], "/p"),
            Outcome::Authenticated { .. }
        ));
        assert_eq!(
            k.authenticate(&[b"alice-key".to_vec(), b"bob-key".to_vec()], "/p"),
            Outcome::Refused("several API keys in header x-api-key".into())
        );
        assert_eq!(
            k.authenticate(&[], "/p?apikey=a&apikey=b"),
            Outcome::Refused("several API keys in query parameter apikey".into())
        );
        assert_eq!(
            k.authenticate(&[], "/p?other=1"),
            Outcome::Refused("no API key in header x-api-key or query parameter apikey".into())
        );
        assert_eq!(
            k.authenticate(&[b"wrong".to_vec()], "/p"),
            Outcome::Refused("invalid API key".into())
        );
        assert_eq!(
            k.authenticate(&[vec![0xff, 0x00, 0x80]], "/p"),
            Outcome::Refused("invalid API key".into())
        );
    }

    #[test]
    fn query_only() {
        let k = keys(&format!(
            r#"{{"consumers": [{{"id": "a", "key_sha256": "{}"}}], "header": null, "query_param": "k"}}"#,
            sha("x y")
        ));
        assert_eq!(k.header(), None);
        // Form-decoded: `+` is a space.
        assert!(matches!(
            k.authenticate(&[b"x y".to_vec()], "/p?k=x+y"),
            Outcome::Authenticated {
                source: Source::Query,
                ..
            }
        ));
        assert_eq!(
            k.authenticate(&[b"x y".to_vec()], "/p"),
            Outcome::Refused("no API key in query parameter k".into())
        );
    }
}

//! The configuration as written in the spec ([`Config`]) and as the filter uses it ([`Policy`]):
//! bounds checked, the bucket's rates in nanoseconds, and the identity of the counters in shared
//! data.

use crate::bucket::Bucket;
use barbacane_sdk::ConfigError;
use barbacane_sdk::consumer::is_claim_path;
use barbacane_sdk::http::{Cidr, is_token};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The plugin configuration, as written in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Requests allowed per `window`, sustained.
    pub limit: u64,
    /// The window, in seconds.
    #[serde(default = "default_window")]
    pub window: u64,
    /// How many requests may come at once (the bucket's capacity); default `limit`.
    #[serde(default)]
    pub burst: Option<u64>,
    /// What a client is: the partition key.
    #[serde(default)]
    pub limit_by: LimitBy,
    /// The header whose value is the key (`limit_by: header`).
    #[serde(default)]
    pub header_name: Option<String>,
    /// The consumer claim whose value is the key (`limit_by: claim`), a dotted path.
    #[serde(default)]
    pub claim: Option<String>,
    /// What to do when the header, consumer or claim is missing.
    #[serde(default)]
    pub fallback: Fallback,
    /// Proxies whose `x-forwarded-for` is believed when finding the client's IP.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    /// The policy's name in the RateLimit headers; also keeps counters apart.
    #[serde(default = "default_policy_name")]
    pub policy_name: String,
    /// Whether responses carry `RateLimit-Policy` and `RateLimit`.
    #[serde(default = "default_true")]
    pub rate_limit_headers: bool,
    /// How many partitions can be limited at the same time (slots of the shared table).
    #[serde(default = "default_max_partitions")]
    pub max_partitions: u32,
}

/// What a client is, for counting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    /// The client's IP address (behind `trusted_proxies`, the one they forwarded).
    #[default]
    Ip,
    /// The value of `header_name`.
    Header,
    /// The authenticated consumer's id (set by an auth plugin earlier in the chain).
    Consumer,
    /// A claim of the authenticated consumer.
    Claim,
}

/// When the key is missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Count the request under the client's IP address (Kong's behaviour).
    #[default]
    Ip,
    /// Refuse the request (400 for a header, 403 for a consumer or claim).
    Refuse,
}

fn default_window() -> u64 {
    60
}

fn default_policy_name() -> String {
    String::from("default")
}

fn default_true() -> bool {
    true
}

fn default_max_partitions() -> u32 {
    10_000
}

/// The largest `limit` and `burst`.
pub const MAX_COUNT: u64 = 1_000_000_000;
/// The longest window: a year.
pub const MAX_WINDOW: u64 = 365 * 24 * 3600;
/// The fewest and most slots of the shared table. The most keeps one policy's table (about 50
/// bytes a slot) well under the host's 16 MiB of shared data per plugin.
pub const PARTITIONS: (u32, u32) = (16, 200_000);

/// Where the partition key comes from, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The client IP.
    Ip,
    /// A request header (lowercase name).
    Header(String),
    /// The consumer's id.
    Consumer,
    /// A consumer claim (dotted path).
    Claim(String),
}

/// The configuration checked and prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Requests per window (`q` in `RateLimit-Policy`).
    pub limit: u64,
    /// Seconds (`w`).
    pub window: u64,
    /// The token bucket's rates.
    pub bucket: Bucket,
    /// The partition key.
    pub key: KeySource,
    /// When the key is missing.
    pub fallback: Fallback,
    /// Trusted proxies for the client IP.
    pub trusted_proxies: Vec<Cidr>,
    /// The policy name (an sf-token-like name, written as an sf-string).
    pub name: String,
    /// Whether to send RateLimit headers.
    pub headers: bool,
    /// Slots in the shared table.
    pub slots: u32,
    /// The table's name in shared data: a digest of everything that gives its entries their
    /// meaning, so two middleware entries share counters exactly when they configure the same
    /// policy.
    pub table: String,
    /// The `RateLimit-Policy` field value, the same for every request.
    pub policy_field: String,
}

impl Policy {
    /// Checks `config`; errors point at the offending field.
    pub fn new(config: Config) -> Result<Policy, ConfigError> {
        let error = |pointer: &str, message: String| ConfigError {
            pointer: pointer.to_string(),
            message,
        };
        if !(1..=MAX_COUNT).contains(&config.limit) {
            return Err(error(
                "/limit",
                format!("must be between 1 and {MAX_COUNT}"),
            ));
        }
        if !(1..=MAX_WINDOW).contains(&config.window) {
            return Err(error(
                "/window",
                format!("must be between 1 and {MAX_WINDOW} seconds"),
            ));
        }
        let burst = config.burst.unwrap_or(config.limit);
        if !(1..=MAX_COUNT).contains(&burst) {
            return Err(error(
                "/burst",
                format!("must be between 1 and {MAX_COUNT}"),
            ));
        }
        if !(PARTITIONS.0..=PARTITIONS.1).contains(&config.max_partitions) {
            return Err(error(
                "/max_partitions",
                format!("must be between {} and {}", PARTITIONS.0, PARTITIONS.1),
            ));
        }
        if !is_name(&config.policy_name) {
            return Err(error(
                "/policy_name",
                format!(
                    "'{}' must be 1-64 letters, digits, '-', '_' or '.'",
                    config.policy_name
                ),
            ));
        }
        let key = match config.limit_by {
            LimitBy::Ip => KeySource::Ip,
            LimitBy::Consumer => KeySource::Consumer,
            LimitBy::Header => match config.header_name.as_deref() {
                Some(name) if is_token(name) => KeySource::Header(name.to_ascii_lowercase()),
                Some(name) => {
                    return Err(error(
                        "/header_name",
                        format!("'{name}' is not a header name"),
                    ));
                }
                None => {
                    return Err(error(
                        "/header_name",
                        String::from("is required with limit_by: header"),
                    ));
                }
            },
            LimitBy::Claim => match config.claim.as_deref() {
                Some(path) if is_claim_path(path) => KeySource::Claim(path.to_string()),
                Some(path) => {
                    return Err(error(
                        "/claim",
                        format!("'{path}' is not a claim name or dotted path"),
                    ));
                }
                None => {
                    return Err(error(
                        "/claim",
                        String::from("is required with limit_by: claim"),
                    ));
                }
            },
        };
        // A field that the chosen partitioning ignores is a mistake worth catching.
        if config.header_name.is_some() && config.limit_by != LimitBy::Header {
            return Err(error(
                "/header_name",
                String::from("is only used with limit_by: header"),
            ));
        }
        if config.claim.is_some() && config.limit_by != LimitBy::Claim {
            return Err(error(
                "/claim",
                String::from("is only used with limit_by: claim"),
            ));
        }
        let bucket = Bucket::new(config.limit, config.window, burst);
        let identity = format!(
            "{}|{}|{}|{}|{:?}|{}",
            config.policy_name, config.limit, config.window, burst, key, config.max_partitions
        );
        let digest = Sha256::digest(identity.as_bytes());
        let table = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let mut policy = Policy {
            limit: config.limit,
            window: config.window,
            bucket,
            key,
            fallback: config.fallback,
            trusted_proxies: config.trusted_proxies,
            name: config.policy_name,
            headers: config.rate_limit_headers,
            slots: config.max_partitions,
            table,
            policy_field: String::new(),
        };
        policy.policy_field = crate::fields::policy(&policy);
        Ok(policy)
    }
}

/// A policy name: written inside an sf-string, so restricted to characters needing no escape.
fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use barbacane_sdk::config;

    fn policy(json: &str) -> Result<Policy, ConfigError> {
        config::parse::<Config>(Some(json.as_bytes().to_vec())).and_then(Policy::new)
    }

    #[test]
    fn defaults() {
        let p = policy(r#"{"limit": 100}"#).unwrap();
        assert_eq!((p.limit, p.window), (100, 60));
        assert_eq!(p.bucket, Bucket::new(100, 60, 100));
        assert_eq!(p.key, KeySource::Ip);
        assert_eq!(p.fallback, Fallback::Ip);
        assert_eq!(p.name, "default");
        assert!(p.headers);
        assert_eq!(p.slots, 10_000);
        assert_eq!(p.table.len(), 16);
    }

    #[test]
    fn key_sources() {
        let p =
            policy(r#"{"limit": 1, "limit_by": "header", "header_name": "X-Api-Key"}"#).unwrap();
        assert_eq!(p.key, KeySource::Header("x-api-key".into()));
        let p = policy(r#"{"limit": 1, "limit_by": "claim", "claim": "org.id"}"#).unwrap();
        assert_eq!(p.key, KeySource::Claim("org.id".into()));
        let p = policy(r#"{"limit": 1, "limit_by": "consumer", "fallback": "refuse"}"#).unwrap();
        assert_eq!(p.key, KeySource::Consumer);
        assert_eq!(p.fallback, Fallback::Refuse);
    }

    #[test]
    fn the_same_policy_shares_a_table_and_another_does_not() {
        let a = policy(r#"{"limit": 5, "window": 1}"#).unwrap();
        let b = policy(r#"{ "window": 1, "limit": 5 }"#).unwrap();
        let c = policy(r#"{"limit": 5, "window": 1, "policy_name": "other"}"#).unwrap();
        let d = policy(r#"{"limit": 6, "window": 1}"#).unwrap();
        assert_eq!(a.table, b.table);
        assert_ne!(a.table, c.table);
        assert_ne!(a.table, d.table);
    }

    #[test]
    fn bad_configurations_point_at_the_field() {
        let pointer = |json: &str| policy(json).unwrap_err().pointer;
        assert_eq!(policy("{}").unwrap_err().message, "missing field `limit`");
        assert_eq!(pointer(r#"{"limit": 0}"#), "/limit");
        assert_eq!(pointer(r#"{"limit": -1}"#), "/limit");
        assert_eq!(pointer(r#"{"limit": 1, "window": 0}"#), "/window");
        assert_eq!(pointer(r#"{"limit": 1, "burst": 0}"#), "/burst");
        assert_eq!(
            pointer(r#"{"limit": 1, "limit_by": "header"}"#),
            "/header_name"
        );
        assert_eq!(
            pointer(r#"{"limit": 1, "limit_by": "header", "header_name": "a b"}"#),
            "/header_name"
        );
        assert_eq!(
            pointer(r#"{"limit": 1, "header_name": "x-key"}"#),
            "/header_name"
        );
        assert_eq!(pointer(r#"{"limit": 1, "limit_by": "claim"}"#), "/claim");
        assert_eq!(
            pointer(r#"{"limit": 1, "limit_by": "claim", "claim": "a..b"}"#),
            "/claim"
        );
        assert_eq!(pointer(r#"{"limit": 1, "limit_by": "path"}"#), "/limit_by");
        assert_eq!(pointer(r#"{"limit": 1, "fallback": "allow"}"#), "/fallback");
        assert_eq!(
            pointer(r#"{"limit": 1, "trusted_proxies": ["10.0.0.0/8", "nope"]}"#),
            "/trusted_proxies/1"
        );
        assert_eq!(
            pointer(r#"{"limit": 1, "policy_name": "a\"b"}"#),
            "/policy_name"
        );
        assert_eq!(
            pointer(r#"{"limit": 1, "max_partitions": 1}"#),
            "/max_partitions"
        );
        assert!(
            policy(r#"{"limit": 1, "nope": 1}"#)
                .unwrap_err()
                .message
                .starts_with("unknown field `nope`")
        );
    }
}

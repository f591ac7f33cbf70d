//! The plugin configuration: where the lines go (an upstream of the spec, a path, extra
//! headers), how they are batched, retried and bounded, and which proxies to believe about the
//! client's address. Parsing checks everything that can be checked before a request arrives and
//! names the offending field with a JSON pointer.

use barbacane_sdk::config::ConfigError;
use barbacane_sdk::http::{Cidr, is_token};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The configuration as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The collector: an upstream named in `x-barbacane-upstreams`.
    pub upstream: String,
    /// The path the batches are POSTed to (joined to the upstream's base path).
    #[serde(default = "default_path")]
    pub path: String,
    /// The `Host` of the callout; the upstream's name when absent.
    #[serde(default)]
    pub authority: Option<String>,
    /// Extra headers of the callout (`authorization`, …).
    #[serde(default)]
    pub headers: Map<String, Value>,
    /// Lines per batch: a batch leaves as soon as this many are waiting.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The longest a line waits for its batch to fill, in milliseconds.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// The most lines waiting per worker; beyond it the oldest are dropped (and counted).
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Retries of a failed batch before it is dropped (and counted).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// The wait before the first retry, in milliseconds; doubled at each retry.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// The longest wait between retries, in milliseconds.
    #[serde(default = "default_retry_max_backoff_ms")]
    pub retry_max_backoff_ms: u64,
    /// How long the collector has to answer a batch, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Proxies whose `x-forwarded-for` is believed for `client_ip`.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
}

fn default_path() -> String {
    String::from("/")
}

fn default_batch_size() -> usize {
    100
}

fn default_flush_interval_ms() -> u64 {
    1000
}

fn default_queue_size() -> usize {
    10_000
}

fn default_max_retries() -> u32 {
    5
}

fn default_retry_backoff_ms() -> u64 {
    500
}

fn default_retry_max_backoff_ms() -> u64 {
    30_000
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Headers a configuration may not set on the callout: the request line, the framing and the
/// content type belong to the plugin, hop-by-hop headers to the connection.
const RESERVED_HEADERS: [&str; 12] = [
    "content-type",
    "content-length",
    "host",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The configuration checked, with names normalised for the callout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The configuration.
    pub config: Config,
    /// `:authority` of the callout.
    pub authority: String,
    /// Extra callout headers, lowercase names.
    pub headers: Vec<(String, String)>,
}

impl Settings {
    /// Parses and checks the configuration (JSON text).
    pub fn from_json(bytes: Option<Vec<u8>>) -> Result<Settings, ConfigError> {
        let config: Config = barbacane_sdk::config::parse(bytes)?;
        Settings::new(config)
    }

    /// Checks a parsed configuration.
    pub fn new(config: Config) -> Result<Settings, ConfigError> {
        let error = |pointer: &str, message: String| ConfigError {
            pointer: pointer.to_string(),
            message,
        };
        if config.upstream.trim().is_empty() {
            return Err(error(
                "/upstream",
                String::from("name the collector's upstream"),
            ));
        }
        if !config.path.starts_with('/') || !is_visible(&config.path) {
            return Err(error(
                "/path",
                format!("'{}' is not a path such as /logs", config.path),
            ));
        }
        let authority = config
            .authority
            .clone()
            .unwrap_or_else(|| config.upstream.clone());
        if authority.is_empty() || !is_visible(&authority) {
            return Err(error(
                "/authority",
                format!("'{authority}' is not a host[:port]"),
            ));
        }
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let at = format!("/headers/{}", name.replace('~', "~0").replace('/', "~1"));
            let lower = name.to_ascii_lowercase();
            if !is_token(name) {
                return Err(error(&at, format!("'{name}' is not a header name")));
            }
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(error(
                    &at,
                    format!("'{name}' is set by the plugin or the connection"),
                ));
            }
            let Some(text) = value.as_str() else {
                return Err(error(&at, String::from("expected a string")));
            };
            if !text.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f)) {
                return Err(error(
                    &at,
                    String::from("header values cannot hold control characters"),
                ));
            }
            headers.push((lower, text.to_string()));
        }
        let ranges: [(&str, u64, u64, u64); 7] = [
            ("/batch_size", config.batch_size as u64, 1, 10_000),
            (
                "/flush_interval_ms",
                config.flush_interval_ms,
                10,
                3_600_000,
            ),
            ("/queue_size", config.queue_size as u64, 1, 1_000_000),
            ("/max_retries", u64::from(config.max_retries), 0, 100),
            ("/retry_backoff_ms", config.retry_backoff_ms, 1, 3_600_000),
            (
                "/retry_max_backoff_ms",
                config.retry_max_backoff_ms,
                1,
                3_600_000,
            ),
            ("/timeout_ms", config.timeout_ms, 1, 600_000),
        ];
        for (at, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(error(at, format!("must be between {min} and {max}")));
            }
        }
        Ok(Settings {
            config,
            authority,
            headers,
        })
    }
}

/// Non-empty visible ASCII (no spaces or controls).
fn is_visible(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    fn refused(json: &str) -> ConfigError {
        Settings::from_json(Some(json.as_bytes().to_vec())).unwrap_err()
    }

    #[test]
    fn defaults() {
        let s = Settings::from_json(Some(br#"{"upstream": "logs"}"#.to_vec())).unwrap();
        assert_eq!(s.config.path, "/");
        assert_eq!(s.authority, "logs");
        assert_eq!(s.config.batch_size, 100);
        assert_eq!(s.config.flush_interval_ms, 1000);
        assert_eq!(s.config.queue_size, 10_000);
        assert_eq!(s.config.max_retries, 5);
        assert!(s.headers.is_empty());
    }

    #[test]
    fn headers_are_normalised() {
        let s = Settings::from_json(Some(
            br#"{"upstream": "logs", "headers": {"Authorization": "Bearer t"}, "authority": "logs.internal:8080"}"#
                .to_vec(),
        ))
        .unwrap();
        assert_eq!(
            s.headers,
            [(String::from("authorization"), String::from("Bearer t"))]
        );
        assert_eq!(s.authority, "logs.internal:8080");
    }

    #[test]
    fn bad_configurations_name_the_field() {
        assert_eq!(refused("{}").message, "missing field `upstream`");
        assert_eq!(refused(r#"{"upstream": " "}"#).pointer, "/upstream");
        assert_eq!(
            refused(r#"{"upstream": "l", "path": "logs"}"#).pointer,
            "/path"
        );
        assert_eq!(
            refused(r#"{"upstream": "l", "path": "/a b"}"#).pointer,
            "/path"
        );
        assert_eq!(
            refused(r#"{"upstream": "l", "authority": ""}"#).pointer,
            "/authority"
        );
        assert_eq!(
            refused(r#"{"upstream": "l", "headers": {":authority": "x"}}"#).pointer,
            "/headers/:authority"
        );
        assert_eq!(
            refused(r#"{"upstream": "l", "headers": {"Content-Type": "x"}}"#).pointer,
            "/headers/Content-Type"
        );
        assert_eq!(
            refused(r#"{"upstream": "l", "headers": {"x-a": 1}}"#).pointer,
            "/headers/x-a"
        );
        assert_eq!(
            refused(r#"{"upstream": "l", "headers": {"x-a": "a\nb"}}"#).pointer,
            "/headers/x-a"
        );
        assert_eq!(
            refused(r#"{"upstream": "l", "batch_size": 0}"#).pointer,
            "/batch_size"
        );
        assert_eq!(
            refused(r#"{"upstream": "l", "batch_size": -1}"#).pointer,
            "/batch_size"
        );
        assert_eq!(
            refused(r#"{"upstream": "l", "flush_interval_ms": 1}"#).pointer,
            "/flush_interval_ms"
        );
        assert_eq!(
            refused(r#"{"upstream": "l", "max_retries": 101}"#).pointer,
            "/max_retries"
        );
        assert_eq!(
            refused(r#"{"upstream": "l", "trusted_proxies": ["nope"]}"#).pointer,
            "/trusted_proxies/0"
        );
        assert!(
            refused(r#"{"upstream": "l", "extra": 1}"#)
                .message
                .contains("unknown field")
        );
    }
}

//! The configuration as written in the spec ([`Config`]) and as the filter uses it
//! ([`Settings`]): checked, with the introspection request's fixed parts prepared once.

use barbacane_sdk::ConfigError;
use barbacane_sdk::consumer::is_claim_path;
use barbacane_sdk::http::is_token;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The plugin configuration, as written in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The authorization server: an upstream of `x-barbacane-upstreams`.
    pub upstream: String,
    /// The introspection endpoint's path on it.
    pub path: String,
    /// The `Host` of the introspection request; default the upstream's name.
    #[serde(default)]
    pub host: Option<String>,
    /// This gateway's client id at the authorization server (HTTP Basic with `client_secret`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Its secret.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Or a bearer token the endpoint accepts instead.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// `token_type_hint` sent with the token; empty: none.
    #[serde(default = "default_hint")]
    pub token_type_hint: String,
    /// How long to wait for the answer, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// How long an active answer is reused, in seconds (never beyond the token's `exp`); 0: no
    /// caching.
    #[serde(default = "default_ttl")]
    pub cache_ttl: u64,
    /// How long an inactive answer is reused, in seconds; 0: not cached.
    #[serde(default = "default_negative_ttl")]
    pub negative_cache_ttl: u64,
    /// The most answers kept (per worker).
    #[serde(default = "default_max_entries")]
    pub cache_max_entries: usize,
    /// Scopes the token must all have (in its space-separated `scope`).
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// The claim (name or dotted path) holding the consumer's groups.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Claims passed upstream as request headers: claim (name or dotted path) → header name.
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    /// Remove `Authorization` before the request goes upstream.
    #[serde(default)]
    pub hide_credentials: bool,
    /// The `realm` of the `WWW-Authenticate` challenges; none by default.
    #[serde(default)]
    pub realm: Option<String>,
}

fn default_hint() -> String {
    String::from("access_token")
}

fn default_timeout() -> u64 {
    2000
}

fn default_ttl() -> u64 {
    60
}

fn default_negative_ttl() -> u64 {
    10
}

fn default_max_entries() -> usize {
    10_000
}

/// Bounds of the numeric fields.
pub const TIMEOUT_MS: (u64, u64) = (1, 60_000);
/// Longest `cache_ttl` and `negative_cache_ttl`: a day.
pub const MAX_TTL: u64 = 86_400;
/// Most `cache_max_entries`.
pub const MAX_ENTRIES: usize = 100_000;

/// Headers that carry framing or routing: forwarding a claim into one would break the request.
const RESERVED_HEADERS: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "authorization",
];

/// The configuration checked and prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The upstream callouts go to.
    pub upstream: String,
    /// `:path` of the introspection request.
    pub path: String,
    /// `:authority` of the introspection request.
    pub authority: String,
    /// Its `authorization` value (RFC 7662 §2.1: the endpoint requires authorization).
    pub authorization: String,
    /// `token_type_hint`, if any.
    pub token_type_hint: Option<String>,
    /// Callout timeout.
    pub timeout_ms: u64,
    /// Seconds an active answer is reused.
    pub cache_ttl: u64,
    /// Seconds an inactive answer is reused.
    pub negative_cache_ttl: u64,
    /// Most cached answers.
    pub cache_max_entries: usize,
    /// Scopes the token must have.
    pub required_scopes: Vec<String>,
    /// Where the groups are.
    pub groups_claim: Option<String>,
    /// Claim path → lowercase header name.
    pub claims_to_headers: Vec<(String, String)>,
    /// Remove `Authorization` upstream.
    pub hide_credentials: bool,
    /// The challenges' realm.
    pub realm: Option<String>,
}

impl Settings {
    /// Checks `config`; errors point at the offending field.
    pub fn new(config: Config) -> Result<Settings, ConfigError> {
        let error = |pointer: &str, message: String| ConfigError {
            pointer: pointer.to_string(),
            message,
        };
        if config.upstream.trim().is_empty() {
            return Err(error(
                "/upstream",
                String::from("must name an upstream of x-barbacane-upstreams"),
            ));
        }
        if !config.path.starts_with('/') || !is_visible(&config.path) {
            return Err(error(
                "/path",
                format!("'{}' must be a path starting with '/'", config.path),
            ));
        }
        if let Some(host) = &config.host
            && (host.is_empty() || !is_visible(host))
        {
            return Err(error("/host", format!("'{host}' is not a host name")));
        }
        let authorization = match (
            &config.client_id,
            &config.client_secret,
            &config.bearer_token,
        ) {
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(error(
                    "/bearer_token",
                    String::from("use either client_id/client_secret or bearer_token, not both"),
                ));
            }
            (Some(id), Some(secret), None) => {
                if id.is_empty() {
                    return Err(error("/client_id", String::from("must not be empty")));
                }
                basic(id, secret)
            }
            (Some(_), None, None) => {
                return Err(error(
                    "/client_secret",
                    String::from("is required with client_id"),
                ));
            }
            (None, Some(_), None) => {
                return Err(error(
                    "/client_id",
                    String::from("is required with client_secret"),
                ));
            }
            (None, None, Some(token)) => {
                if token.is_empty() || !is_visible(token) {
                    return Err(error(
                        "/bearer_token",
                        String::from("must be a non-empty token"),
                    ));
                }
                format!("Bearer {token}")
            }
            (None, None, None) => {
                return Err(error(
                    "",
                    String::from(
                        "the introspection endpoint requires authorization (RFC 7662 §2.1): \
                         set client_id and client_secret, or bearer_token",
                    ),
                ));
            }
        };
        if !(TIMEOUT_MS.0..=TIMEOUT_MS.1).contains(&config.timeout_ms) {
            return Err(error(
                "/timeout_ms",
                format!("must be between {} and {}", TIMEOUT_MS.0, TIMEOUT_MS.1),
            ));
        }
        if config.cache_ttl > MAX_TTL {
            return Err(error("/cache_ttl", format!("must be at most {MAX_TTL}")));
        }
        if config.negative_cache_ttl > MAX_TTL {
            return Err(error(
                "/negative_cache_ttl",
                format!("must be at most {MAX_TTL}"),
            ));
        }
        if !(1..=MAX_ENTRIES).contains(&config.cache_max_entries) {
            return Err(error(
                "/cache_max_entries",
                format!("must be between 1 and {MAX_ENTRIES}"),
            ));
        }
        if !config.token_type_hint.is_empty() && !is_visible(&config.token_type_hint) {
            return Err(error(
                "/token_type_hint",
                String::from("must be a name such as access_token"),
            ));
        }
        for (i, scope) in config.required_scopes.iter().enumerate() {
            if !is_scope(scope) {
                return Err(error(
                    &format!("/required_scopes/{i}"),
                    format!("'{scope}' is not a scope (RFC 6749 §3.3)"),
                ));
            }
        }
        if let Some(path) = &config.groups_claim
            && !is_claim_path(path)
        {
            return Err(error(
                "/groups_claim",
                format!("'{path}' is not a claim name or dotted path"),
            ));
        }
        let mut claims_to_headers = Vec::new();
        for (claim, header) in &config.claims_to_headers {
            let pointer = format!(
                "/claims_to_headers/{}",
                claim.replace('~', "~0").replace('/', "~1")
            );
            if !is_claim_path(claim) {
                return Err(error(
                    &pointer,
                    format!("'{claim}' is not a claim name or dotted path"),
                ));
            }
            let header = header.to_ascii_lowercase();
            if !is_token(&header) || RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(error(
                    &pointer,
                    format!("'{header}' is not a header name a claim can be forwarded in"),
                ));
            }
            claims_to_headers.push((claim.clone(), header));
        }
        if let Some(realm) = &config.realm
            && (realm.is_empty()
                || !realm.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
                || realm.contains(['"', '\\']))
        {
            return Err(error(
                "/realm",
                String::from("must be printable, without '\"' or '\\'"),
            ));
        }
        Ok(Settings {
            authority: config.host.unwrap_or_else(|| config.upstream.clone()),
            upstream: config.upstream,
            path: config.path,
            authorization,
            token_type_hint: Some(config.token_type_hint).filter(|h| !h.is_empty()),
            timeout_ms: config.timeout_ms,
            cache_ttl: config.cache_ttl,
            negative_cache_ttl: config.negative_cache_ttl,
            cache_max_entries: config.cache_max_entries,
            required_scopes: config.required_scopes,
            groups_claim: config.groups_claim,
            claims_to_headers,
            hide_credentials: config.hide_credentials,
            realm: config.realm,
        })
    }

    /// The introspection request's body (RFC 7662 §2.1), form-encoded.
    pub fn request_body(&self, token: &str) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token);
        if let Some(hint) = &self.token_type_hint {
            form.append_pair("token_type_hint", hint);
        }
        form.finish()
    }
}

/// HTTP Basic for a client (RFC 6749 §2.3.1): id and secret form-encoded, then base64.
fn basic(id: &str, secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    format!("Basic {}", STANDARD.encode(pair))
}

/// Printable ASCII without spaces.
fn is_visible(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_graphic())
}

/// RFC 6749 `scope-token`: `%x21 / %x23-5B / %x5D-7E`.
fn is_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use barbacane_sdk::config;

    fn settings(json: &str) -> Result<Settings, ConfigError> {
        config::parse::<Config>(Some(json.as_bytes().to_vec())).and_then(Settings::new)
    }

    const MINIMAL: &str =
        r#""upstream": "idp", "path": "/introspect", "client_id": "gw", "client_secret": "s""#;

    fn with(extra: &str) -> Result<Settings, ConfigError> {
        settings(&format!("{{{MINIMAL}{extra}}}"))
    }

    #[test]
    fn defaults_and_prepared_parts() {
        let s = with("").unwrap();
        assert_eq!(s.authority, "idp");
        assert_eq!(s.authorization, "Basic Z3c6cw==");
        assert_eq!(s.token_type_hint.as_deref(), Some("access_token"));
        assert_eq!(
            (s.timeout_ms, s.cache_ttl, s.negative_cache_ttl),
            (2000, 60, 10)
        );
        assert_eq!(s.cache_max_entries, 10_000);
        assert_eq!(
            s.request_body("a+b/c="),
            "token=a%2Bb%2Fc%3D&token_type_hint=access_token"
        );
        let s = with(r#", "token_type_hint": "", "host": "auth.example""#).unwrap();
        assert_eq!(s.request_body("t"), "token=t");
        assert_eq!(s.authority, "auth.example");
    }

    #[test]
    fn client_credentials_are_form_encoded_before_base64() {
        // RFC 6749 §2.3.1: "a:b" and "p@ss word" → "a%3Ab:p%40ss+word".
        let s = settings(
            r#"{"upstream": "idp", "path": "/i", "client_id": "a:b", "client_secret": "p@ss word"}"#,
        )
        .unwrap();
        assert_eq!(
            s.authorization,
            format!("Basic {}", STANDARD.encode("a%3Ab:p%40ss+word"))
        );
        let s = settings(r#"{"upstream": "idp", "path": "/i", "bearer_token": "xyz"}"#).unwrap();
        assert_eq!(s.authorization, "Bearer xyz");
    }

    #[test]
    fn claims_to_headers_are_lowercased() {
        let s = with(r#", "claims_to_headers": {"sub": "X-User", "org.id": "x-org"}"#).unwrap();
        assert_eq!(
            s.claims_to_headers,
            vec![
                ("org.id".to_string(), "x-org".to_string()),
                ("sub".to_string(), "x-user".to_string())
            ]
        );
    }

    #[test]
    fn bad_configurations_point_at_the_field() {
        let pointer = |json: &str| settings(json).unwrap_err().pointer;
        let extra = |extra: &str| with(extra).unwrap_err().pointer;
        assert_eq!(
            settings("{}").unwrap_err().message,
            "missing field `upstream`"
        );
        assert_eq!(pointer(r#"{"upstream": "idp", "path": "/i"}"#), "");
        assert_eq!(
            pointer(r#"{"upstream": "idp", "path": "/i", "client_id": "gw"}"#),
            "/client_secret"
        );
        assert_eq!(
            pointer(r#"{"upstream": "idp", "path": "/i", "client_secret": "s"}"#),
            "/client_id"
        );
        assert_eq!(
            pointer(r#"{"upstream": "", "path": "/i", "bearer_token": "t"}"#),
            "/upstream"
        );
        assert_eq!(
            pointer(r#"{"upstream": "idp", "path": "i", "bearer_token": "t"}"#),
            "/path"
        );
        assert_eq!(extra(r#", "bearer_token": "t""#), "/bearer_token");
        assert_eq!(extra(r#", "timeout_ms": 0"#), "/timeout_ms");
        assert_eq!(extra(r#", "cache_ttl": -1"#), "/cache_ttl");
        assert_eq!(extra(r#", "cache_ttl": 100000"#), "/cache_ttl");
        assert_eq!(extra(r#", "cache_max_entries": 0"#), "/cache_max_entries");
        assert_eq!(
            extra(r#", "required_scopes": ["read", "a b"]"#),
            "/required_scopes/1"
        );
        assert_eq!(extra(r#", "groups_claim": "a..b""#), "/groups_claim");
        assert_eq!(
            extra(r#", "claims_to_headers": {"a/b": "x y"}"#),
            "/claims_to_headers/a~1b"
        );
        assert_eq!(
            extra(r#", "claims_to_headers": {"sub": "Host"}"#),
            "/claims_to_headers/sub"
        );
        assert_eq!(extra(r#", "realm": "a\"b""#), "/realm");
        assert!(
            with(r#", "nope": 1"#)
                .unwrap_err()
                .message
                .starts_with("unknown field `nope`")
        );
    }
}

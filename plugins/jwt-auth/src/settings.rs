//! The configuration as written in the spec ([`Config`], checked by `schema.json` at compile
//! time) and as the plugin uses it ([`Settings`]: keys parsed, names normalised). Everything the
//! schema cannot say — a PEM that does not parse, a secret too short for its algorithm, a key
//! whose type does not fit its `alg` — is refused here with the JSON pointer of the field.

use crate::keys::{self, Alg, Key, Material};
use barbacane_sdk::ConfigError;
use barbacane_sdk::http::is_token;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The plugin configuration, as written in the spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `realm` of `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Inline keys.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// An inline JWKS document.
    #[serde(default)]
    pub jwks: Option<Value>,
    /// A JWKS fetched from an upstream.
    #[serde(default)]
    pub jwks_upstream: Option<RemoteConfig>,
    /// Accepted algorithms; empty: any the keys support.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Accepted `iss` values; empty: not checked.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Accepted `aud` values (any one is enough); empty: not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claims every token must carry (dotted paths).
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway: u32,
    /// Headers the token is read from, in order.
    #[serde(default = "default_from_headers")]
    pub from_headers: Vec<HeaderSourceConfig>,
    /// Query parameters the token is read from, after the headers.
    #[serde(default)]
    pub from_query: Vec<String>,
    /// Cookies the token is read from, last.
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// Claim (dotted path) → request header to forward it in.
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    /// The claim naming the consumer.
    #[serde(default = "default_consumer_claim")]
    pub consumer_claim: String,
    /// The claim listing the consumer's groups.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Remove the token from the request before it goes upstream.
    #[serde(default)]
    pub strip_token: bool,
    /// Let requests without a token through, unauthenticated.
    #[serde(default)]
    pub allow_missing: bool,
    /// How many verified tokens each worker remembers; 0 turns the cache off.
    #[serde(default = "default_cache_size")]
    pub cache_size: u32,
}

/// One inline key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Its key id, matched against the token's `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm it verifies.
    pub alg: String,
    /// An HMAC secret, as text.
    #[serde(default)]
    pub secret: Option<String>,
    /// An HMAC secret, base64.
    #[serde(default)]
    pub secret_base64: Option<String>,
    /// A PEM public key.
    #[serde(default)]
    pub pem: Option<String>,
}

/// Where the remote JWKS is fetched from, and how often.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// An upstream of `x-barbacane-upstreams`.
    pub upstream: String,
    /// The JWKS path on it.
    #[serde(default = "default_jwks_path")]
    pub path: String,
    /// `:authority` (Host) of the fetch; default: the upstream's name.
    #[serde(default)]
    pub authority: Option<String>,
    /// How long a fetch may take, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// Seconds between refreshes after a good fetch.
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval: u32,
    /// Seconds before retrying a failed fetch.
    #[serde(default = "default_retry_interval")]
    pub retry_interval: u32,
    /// Refetch when a token names an unknown `kid`.
    #[serde(default = "default_true")]
    pub refetch_on_unknown_kid: bool,
    /// The least seconds between two fetches caused by unknown `kid`s.
    #[serde(default = "default_min_refetch_interval")]
    pub min_refetch_interval: u32,
}

/// One header the token may come in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSourceConfig {
    /// The header name.
    pub name: String,
    /// What precedes the token in the value (case-insensitive), e.g. `Bearer `.
    #[serde(default)]
    pub prefix: String,
}

fn default_realm() -> String {
    String::from("api")
}
fn default_cache_size() -> u32 {
    100
}
fn default_leeway() -> u32 {
    60
}
fn default_from_headers() -> Vec<HeaderSourceConfig> {
    vec![HeaderSourceConfig {
        name: String::from("authorization"),
        prefix: String::from("Bearer "),
    }]
}
fn default_consumer_claim() -> String {
    String::from("sub")
}
fn default_jwks_path() -> String {
    String::from("/.well-known/jwks.json")
}
fn default_timeout_ms() -> u32 {
    5000
}
fn default_refresh_interval() -> u32 {
    300
}
fn default_retry_interval() -> u32 {
    // Envoy's `failed_refetch_duration`: a gateway that starts before its identity provider
    // recovers within a second.
    1
}
fn default_true() -> bool {
    true
}
fn default_min_refetch_interval() -> u32 {
    30
}

/// Where a token is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A header (lowercase name) and the prefix before the token.
    Header {
        /// The lowercase header name.
        name: String,
        /// What precedes the token (compared case-insensitively).
        prefix: String,
    },
    /// A query parameter.
    Query(String),
    /// A cookie.
    Cookie(String),
}

/// The remote JWKS settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The upstream.
    pub upstream: String,
    /// The path.
    pub path: String,
    /// The authority.
    pub authority: String,
    /// Fetch timeout, milliseconds.
    pub timeout_ms: u32,
    /// Refresh period, seconds.
    pub refresh_interval: u32,
    /// Retry period after a failure, seconds.
    pub retry_interval: u32,
    /// Refetch on unknown `kid`.
    pub refetch_on_unknown_kid: bool,
    /// Least seconds between unknown-`kid` refetches.
    pub min_refetch_interval: u32,
}

/// The configuration, checked and prepared.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The realm, safe to quote.
    pub realm: String,
    /// Inline keys and the inline JWKS's keys.
    pub static_keys: Vec<Key>,
    /// The remote JWKS.
    pub remote: Option<Remote>,
    /// Accepted algorithms; `None`: any.
    pub algorithms: Option<Vec<Alg>>,
    /// Accepted issuers.
    pub issuers: Vec<String>,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Required claims.
    pub required_claims: Vec<String>,
    /// Leeway, seconds.
    pub leeway: f64,
    /// Token sources, in order.
    pub sources: Vec<Source>,
    /// (claim path, lowercase header name).
    pub claim_headers: Vec<(String, String)>,
    /// The consumer's claim.
    pub consumer_claim: String,
    /// The groups' claim.
    pub groups_claim: Option<String>,
    /// Strip the token.
    pub strip_token: bool,
    /// Requests without a token pass.
    pub allow_missing: bool,
    /// Verified tokens remembered per VM.
    pub cache_size: usize,
}

fn error(pointer: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        pointer: pointer.into(),
        message: message.into(),
    }
}

/// A JSON pointer segment (RFC 6901 escaping).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl Settings {
    /// Checks `config` and prepares it.
    pub fn new(config: Config) -> Result<Settings, ConfigError> {
        if config.realm.contains(['"', '\\']) || config.realm.chars().any(char::is_control) {
            return Err(error(
                "/realm",
                "the realm may not contain quotes, backslashes or control characters",
            ));
        }
        let mut static_keys = Vec::new();
        for (i, key) in config.keys.iter().enumerate() {
            static_keys.push(inline_key(key, &format!("/keys/{i}"))?);
        }
        if let Some(doc) = &config.jwks {
            let jwks = keys::parse_jwks(doc).map_err(|e| error("/jwks", e))?;
            // Written by hand, so a key that cannot be used is a mistake, not something to
            // skip — except keys that are simply not for signatures.
            if let Some((index, reason)) = jwks
                .skipped
                .iter()
                .find(|(_, reason)| reason != "not a signature key")
            {
                return Err(error(format!("/jwks/keys/{index}"), reason.clone()));
            }
            if jwks.keys.is_empty() {
                return Err(error("/jwks/keys", "the JWKS has no signature key"));
            }
            static_keys.extend(jwks.keys);
        }
        let remote = match &config.jwks_upstream {
            None => None,
            Some(remote) => Some(remote_settings(remote)?),
        };
        if static_keys.is_empty() && remote.is_none() {
            return Err(error("", "no keys: configure keys, jwks or jwks_upstream"));
        }
        let algorithms = if config.algorithms.is_empty() {
            None
        } else {
            let mut algs = Vec::new();
            for (i, name) in config.algorithms.iter().enumerate() {
                algs.push(
                    Alg::from_name(name)
                        .ok_or_else(|| error(format!("/algorithms/{i}"), unknown_alg(name)))?,
                );
            }
            Some(algs)
        };
        let mut sources = Vec::new();
        for (i, header) in config.from_headers.iter().enumerate() {
            if !is_token(&header.name) {
                return Err(error(
                    format!("/from_headers/{i}/name"),
                    format!("'{}' is not a header name", header.name),
                ));
            }
            sources.push(Source::Header {
                name: header.name.to_ascii_lowercase(),
                prefix: header.prefix.clone(),
            });
        }
        for (i, name) in config.from_query.iter().enumerate() {
            if name.is_empty() {
                return Err(error(format!("/from_query/{i}"), "empty parameter name"));
            }
            sources.push(Source::Query(name.clone()));
        }
        for (i, name) in config.from_cookies.iter().enumerate() {
            if !is_token(name) {
                return Err(error(
                    format!("/from_cookies/{i}"),
                    format!("'{name}' is not a cookie name"),
                ));
            }
            sources.push(Source::Cookie(name.clone()));
        }
        if sources.is_empty() {
            return Err(error(
                "/from_headers",
                "no token source: give from_headers, from_query or from_cookies",
            ));
        }
        let mut claim_headers = Vec::new();
        for (claim, header) in &config.claims_to_headers {
            let pointer = format!("/claims_to_headers/{}", escape(claim));
            if claim.is_empty() {
                return Err(error(pointer, "empty claim name"));
            }
            if !is_token(header) {
                return Err(error(pointer, format!("'{header}' is not a header name")));
            }
            claim_headers.push((claim.clone(), header.to_ascii_lowercase()));
        }
        for (i, claim) in config.required_claims.iter().enumerate() {
            if claim.is_empty() {
                return Err(error(format!("/required_claims/{i}"), "empty claim name"));
            }
        }
        if config.consumer_claim.is_empty() {
            return Err(error("/consumer_claim", "empty claim name"));
        }
        if config.groups_claim.as_deref() == Some("") {
            return Err(error("/groups_claim", "empty claim name"));
        }
        Ok(Settings {
            realm: config.realm,
            static_keys,
            remote,
            algorithms,
            issuers: config.issuers,
            audiences: config.audiences,
            required_claims: config.required_claims,
            leeway: f64::from(config.leeway),
            sources,
            claim_headers,
            consumer_claim: config.consumer_claim,
            groups_claim: config.groups_claim,
            strip_token: config.strip_token,
            allow_missing: config.allow_missing,
            cache_size: config.cache_size as usize,
        })
    }

    /// Whether `alg` is accepted.
    pub fn allows(&self, alg: Alg) -> bool {
        self.algorithms
            .as_ref()
            .is_none_or(|algs| algs.contains(&alg))
    }
}

fn unknown_alg(name: &str) -> String {
    let supported: Vec<&str> = Alg::ALL.iter().map(|a| a.name()).collect();
    format!(
        "unknown algorithm '{name}' (supported: {})",
        supported.join(", ")
    )
}

/// One inline key, checked.
fn inline_key(key: &KeyConfig, pointer: &str) -> Result<Key, ConfigError> {
    let alg = Alg::from_name(&key.alg)
        .ok_or_else(|| error(format!("{pointer}/alg"), unknown_alg(&key.alg)))?;
    let material = match (&key.secret, &key.secret_base64, &key.pem) {
        (Some(secret), None, None) => Material::Hmac(secret.as_bytes().to_vec()),
        (None, Some(encoded), None) => Material::Hmac(
            keys::base64_standard(encoded)
                .or_else(|| keys::base64url(encoded.trim()))
                .ok_or_else(|| error(format!("{pointer}/secret_base64"), "not base64"))?,
        ),
        (None, None, Some(pem)) => {
            keys::parse_pem(pem).map_err(|e| error(format!("{pointer}/pem"), e))?
        }
        _ => {
            return Err(error(
                pointer,
                "give exactly one of secret, secret_base64 or pem",
            ));
        }
    };
    if !material.supports(alg) {
        let field = match material {
            Material::Hmac(_) if key.secret.is_some() => "secret",
            Material::Hmac(_) => "secret_base64",
            _ => "pem",
        };
        let hint = if matches!(material, Material::Hmac(_)) {
            "an HMAC secret only verifies HS256, HS384 and HS512"
        } else {
            "a public key never verifies HS* tokens, and its type must match the algorithm"
        };
        return Err(error(
            format!("{pointer}/{field}"),
            format!(
                "a {} cannot verify {} ({hint})",
                material.type_name(),
                alg.name()
            ),
        ));
    }
    if let Material::Hmac(secret) = &material
        && secret.len() < alg.min_secret_len()
    {
        let field = if key.secret.is_some() {
            "secret"
        } else {
            "secret_base64"
        };
        return Err(error(
            format!("{pointer}/{field}"),
            format!(
                "a {} secret needs at least {} bytes (RFC 7518 §3.2), this one has {}",
                alg.name(),
                alg.min_secret_len(),
                secret.len()
            ),
        ));
    }
    Ok(Key {
        kid: key.kid.clone(),
        alg: Some(alg),
        material,
    })
}

fn remote_settings(remote: &RemoteConfig) -> Result<Remote, ConfigError> {
    if remote.upstream.is_empty() {
        return Err(error("/jwks_upstream/upstream", "empty upstream name"));
    }
    if !remote.path.starts_with('/') || remote.path.contains(char::is_whitespace) {
        return Err(error(
            "/jwks_upstream/path",
            format!("'{}' is not an absolute path", remote.path),
        ));
    }
    for (field, value) in [
        ("timeout_ms", remote.timeout_ms),
        ("refresh_interval", remote.refresh_interval),
        ("retry_interval", remote.retry_interval),
    ] {
        if value == 0 {
            return Err(error(
                format!("/jwks_upstream/{field}"),
                "must be at least 1",
            ));
        }
    }
    let authority = remote
        .authority
        .clone()
        .unwrap_or_else(|| remote.upstream.clone());
    if authority.is_empty() || authority.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(error(
            "/jwks_upstream/authority",
            format!("'{authority}' is not a host[:port]"),
        ));
    }
    Ok(Remote {
        upstream: remote.upstream.clone(),
        path: remote.path.clone(),
        authority,
        timeout_ms: remote.timeout_ms,
        refresh_interval: remote.refresh_interval,
        retry_interval: remote.retry_interval,
        refetch_on_unknown_kid: remote.refetch_on_unknown_kid,
        min_refetch_interval: remote.min_refetch_interval,
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn settings(json: &str) -> Result<Settings, ConfigError> {
        barbacane_sdk::config::parse(Some(json.as_bytes().to_vec())).and_then(Settings::new)
    }

    fn refused(json: &str) -> ConfigError {
        settings(json).unwrap_err()
    }

    #[test]
    fn defaults() {
        let s = settings(&format!(
            r#"{{"keys": [{{"alg": "HS256", "secret": "{SECRET}"}}]}}"#
        ))
        .unwrap();
        assert_eq!(s.realm, "api");
        assert_eq!(
            s.sources,
            [Source::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into()
            }]
        );
        assert_eq!(s.leeway, 60.0);
        assert_eq!(s.consumer_claim, "sub");
        assert!(s.allows(Alg::Rs256));
        assert!(s.remote.is_none());
    }

    #[test]
    fn refusals_point_at_the_field() {
        let cases = [
            ("{}", "", "no keys"),
            (
                r#"{"keys": [{"alg": "HS999", "secret": "x"}]}"#,
                "/keys/0/alg",
                "unknown algorithm 'HS999'",
            ),
            (
                r#"{"keys": [{"alg": "none", "secret": "x"}]}"#,
                "/keys/0/alg",
                "unknown algorithm 'none'",
            ),
            (
                r#"{"keys": [{"alg": "HS256", "secret": "short"}]}"#,
                "/keys/0/secret",
                "at least 32 bytes",
            ),
            (
                r#"{"keys": [{"alg": "HS256", "secret_base64": "!!"}]}"#,
                "/keys/0/secret_base64",
                "not base64",
            ),
            (
                r#"{"keys": [{"alg": "RS256", "pem": "garbage"}]}"#,
                "/keys/0/pem",
                "not a PEM",
            ),
            (
                r#"{"keys": [{"alg": "RS256", "secret": "0123456789abcdef0123456789abcdef"}]}"#,
                "/keys/0/secret",
                "cannot verify RS256",
            ),
            (
                r#"{"keys": [{"alg": "HS256"}]}"#,
                "/keys/0",
                "exactly one of",
            ),
            (
                r#"{"jwks": {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}}"#,
                "/jwks/keys/0",
                "at least 2048",
            ),
            (
                r#"{"jwks": {"keys": []}}"#,
                "/jwks/keys",
                "no signature key",
            ),
            (r#"{"jwks": []}"#, "/jwks", "'keys' array"),
            (
                r#"{"jwks_upstream": {"upstream": "idp", "path": "jwks"}}"#,
                "/jwks_upstream/path",
                "absolute path",
            ),
            (
                r#"{"jwks_upstream": {"upstream": "idp", "refresh_interval": 0}}"#,
                "/jwks_upstream/refresh_interval",
                "at least 1",
            ),
            (
                r#"{"jwks_upstream": {"upstream": "idp"}, "algorithms": ["RS256", "XX"]}"#,
                "/algorithms/1",
                "unknown algorithm",
            ),
            (
                r#"{"jwks_upstream": {"upstream": "idp"}, "realm": "a\"b"}"#,
                "/realm",
                "quotes",
            ),
            (
                r#"{"jwks_upstream": {"upstream": "idp"}, "from_headers": [{"name": "x y"}]}"#,
                "/from_headers/0/name",
                "not a header name",
            ),
            (
                r#"{"jwks_upstream": {"upstream": "idp"}, "from_headers": []}"#,
                "/from_headers",
                "no token source",
            ),
            (
                r#"{"jwks_upstream": {"upstream": "idp"}, "claims_to_headers": {"a/b": "x y"}}"#,
                "/claims_to_headers/a~1b",
                "not a header name",
            ),
            (
                r#"{"jwks_upstream": {"upstream": "idp"}, "leeway": -1}"#,
                "/leeway",
                "invalid value",
            ),
        ];
        for (json, pointer, message) in cases {
            let e = refused(json);
            assert_eq!(e.pointer, pointer, "{json}: {e}");
            assert!(e.message.contains(message), "{json}: {e}");
        }
    }

    #[test]
    fn sources_and_mappings_are_normalised() {
        let s = settings(
            r#"{"jwks_upstream": {"upstream": "idp", "authority": "idp.example"},
                "from_headers": [{"name": "X-Token"}], "from_query": ["access_token"],
                "from_cookies": ["jwt"], "claims_to_headers": {"sub": "X-User"},
                "algorithms": ["ES256"]}"#,
        )
        .unwrap();
        assert_eq!(
            s.sources,
            [
                Source::Header {
                    name: "x-token".into(),
                    prefix: String::new()
                },
                Source::Query("access_token".into()),
                Source::Cookie("jwt".into()),
            ]
        );
        assert_eq!(s.claim_headers, [("sub".into(), "x-user".into())]);
        assert!(s.allows(Alg::Es256) && !s.allows(Alg::Rs256));
        let remote = s.remote.unwrap();
        assert_eq!(remote.authority, "idp.example");
        assert_eq!(remote.path, "/.well-known/jwks.json");
    }

    #[test]
    fn base64_secrets() {
        let s = settings(
            r#"{"keys": [{"alg": "HS256", "kid": "a", "secret_base64": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]}"#,
        )
        .unwrap();
        assert!(matches!(&s.static_keys[0].material, Material::Hmac(k) if k == SECRET.as_bytes()));
    }
}

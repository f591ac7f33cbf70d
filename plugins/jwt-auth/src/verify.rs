//! Deciding on one parsed token: which keys may verify it, whether its signature holds, whether
//! its claims are acceptable now, and — when all is well — who it identifies (the consumer and
//! the headers to forward). Pure functions of the settings, the keys, the token and the clock.

use crate::keys::Key;
use crate::settings::Settings;
use crate::token::{Token, printable};
use barbacane_sdk::Problem;
use barbacane_sdk::consumer::Consumer;
use serde_json::{Map, Value};

/// The plugin's name, as `Consumer::authenticated_by`.
pub const PLUGIN: &str = "jwt-auth";

/// The longest claim value forwarded in a header.
const MAX_HEADER_VALUE: usize = 8 * 1024;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token: 401, `WWW-Authenticate` without an `error` (RFC 6750 §3.1).
    Missing,
    /// A token that is malformed, badly signed, expired or not yet valid: 401 `invalid_token`.
    Invalid(String),
    /// A valid token whose claims are not accepted here (issuer, audience, required claims):
    /// 403 `insufficient_scope`.
    Forbidden(String),
    /// The keys cannot be known (the JWKS was never fetched): 503, fail closed.
    Unavailable {
        /// What is wrong.
        detail: String,
        /// Seconds until the next fetch attempt.
        retry_after: u32,
    },
}

impl Refusal {
    /// The problem reply.
    pub fn problem(&self, realm: &str) -> Problem {
        let challenge = |error: &str, description: &str| {
            format!(
                "Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"",
                printable_description(description)
            )
        };
        match self {
            Refusal::Missing => Problem::new(401, "unauthorized", "a bearer token is required")
                .with_header("www-authenticate", format!("Bearer realm=\"{realm}\"")),
            Refusal::Invalid(detail) => Problem::new(401, "invalid-token", detail.clone())
                .with_header("www-authenticate", challenge("invalid_token", detail)),
            Refusal::Forbidden(detail) => Problem::new(403, "forbidden", detail.clone())
                .with_header("www-authenticate", challenge("insufficient_scope", detail)),
            Refusal::Unavailable {
                detail,
                retry_after,
            } => Problem::new(503, "jwks-unavailable", detail.clone())
                .with_header("retry-after", retry_after.to_string()),
        }
    }
}

/// RFC 6750 `error_description`: printable ASCII without `"` and `\` (spaces kept).
fn printable_description(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == ' ' || (c.is_ascii_graphic() && c != '"' && c != '\\') {
                c
            } else {
                '\''
            }
        })
        .collect()
}

/// The keys that may verify a token.
#[derive(Debug)]
pub enum Selection<'a> {
    /// These, to try in order.
    Candidates(Vec<&'a Key>),
    /// The token names a `kid` no key has (and no key without a `kid` fits).
    UnknownKid(String),
    /// The token names a `kid` whose key is for another algorithm.
    WrongAlg(String),
    /// The token has no `kid` and no key verifies its algorithm.
    NoKeyForAlg(String),
}

/// Picks the keys for `token`. A key with a `kid` is a candidate only for tokens naming it; a
/// key without one, for any token of its algorithm (as Envoy does). A key is a candidate only
/// for the algorithm family of its type and, if it names one, its own algorithm.
pub fn select<'a>(keys: impl Iterator<Item = &'a Key> + Clone, token: &Token) -> Selection<'a> {
    let alg = token.alg;
    let Some(kid) = &token.kid else {
        let candidates: Vec<&Key> = keys.filter(|k| k.accepts(alg)).collect();
        if candidates.is_empty() {
            return Selection::NoKeyForAlg(format!("no key verifies {} tokens", alg.name()));
        }
        return Selection::Candidates(candidates);
    };
    let named: Vec<&Key> = keys
        .clone()
        .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
        .collect();
    let kid_text = printable(kid, 64);
    if let Some(key) = named.first()
        && !named.iter().any(|k| k.accepts(alg))
    {
        let wanted = key.alg.map_or(key.material.type_name(), |a| a.name());
        return Selection::WrongAlg(format!(
            "key '{kid_text}' is for {wanted}, not {}",
            alg.name()
        ));
    }
    let candidates: Vec<&Key> = named
        .into_iter()
        .chain(keys.filter(|k| k.kid.is_none()))
        .filter(|k| k.accepts(alg))
        .collect();
    if candidates.is_empty() {
        return Selection::UnknownKid(format!("no key with kid '{kid_text}'"));
    }
    Selection::Candidates(candidates)
}

/// Whether one of `candidates` verifies the token's signature.
pub fn signature_ok(candidates: &[&Key], token: &Token) -> bool {
    candidates
        .iter()
        .any(|k| k.verify(token.alg, token.signing_input.as_bytes(), &token.signature))
}

/// A claim by name, or by dotted path into nested objects (`realm_access.roles`). A name that
/// exists as is wins, so namespaced claims such as `https://example.com/roles` work too.
pub fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A token's `exp` and `nbf` (RFC 7519 NumericDates), read once: they are the claims whose
/// check depends on the time, so a cached token checks only these again.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Times {
    /// Expiration time.
    pub exp: Option<f64>,
    /// Not before.
    pub nbf: Option<f64>,
}

impl Times {
    /// `exp` and `nbf` of `claims`; refused when one is present but not a number.
    pub fn of(claims: &Map<String, Value>) -> Result<Times, Refusal> {
        let numeric_date = |name: &str| -> Result<Option<f64>, Refusal> {
            match claims.get(name) {
                None => Ok(None),
                Some(Value::Number(n)) => n
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| Refusal::Invalid(format!("the {name} claim is not a number"))),
                Some(_) => Err(Refusal::Invalid(format!(
                    "the {name} claim is not a NumericDate"
                ))),
            }
        };
        Ok(Times {
            exp: numeric_date("exp")?,
            nbf: numeric_date("nbf")?,
        })
    }

    /// Whether the token is valid at `now`, within `settings.leeway`.
    pub fn check(&self, settings: &Settings, now: f64) -> Result<(), Refusal> {
        // RFC 7519 §4.1.4: the token must not be accepted on or after `exp`.
        if let Some(exp) = self.exp
            && now >= exp + settings.leeway
        {
            return Err(Refusal::Invalid(format!("the token expired at {exp}")));
        }
        if let Some(nbf) = self.nbf
            && now + settings.leeway < nbf
        {
            return Err(Refusal::Invalid(format!(
                "the token is not valid before {nbf}"
            )));
        }
        Ok(())
    }
}

/// Checks the registered time claims, then the issuer, the audience and the required claims.
pub fn check_claims(
    settings: &Settings,
    claims: &Map<String, Value>,
    now: f64,
) -> Result<(), Refusal> {
    Times::of(claims)?.check(settings, now)?;
    if !settings.issuers.is_empty() {
        match claims.get("iss") {
            Some(Value::String(iss)) if settings.issuers.contains(iss) => {}
            Some(Value::String(iss)) => {
                return Err(Refusal::Forbidden(format!(
                    "issuer '{}' is not accepted",
                    printable(iss, 128)
                )));
            }
            _ => return Err(Refusal::Forbidden(String::from("the token has no issuer"))),
        }
    }
    if !settings.audiences.is_empty() {
        let accepted = |aud: &Value| {
            aud.as_str()
                .is_some_and(|a| settings.audiences.iter().any(|x| x == a))
        };
        let ok = match claims.get("aud") {
            Some(Value::Array(auds)) => auds.iter().any(accepted),
            Some(aud) => accepted(aud),
            None => false,
        };
        if !ok {
            return Err(Refusal::Forbidden(String::from(
                "the token's audience is not accepted",
            )));
        }
    }
    for name in &settings.required_claims {
        if claim(claims, name).is_none_or(Value::is_null) {
            return Err(Refusal::Forbidden(format!(
                "the token lacks the required claim '{name}'"
            )));
        }
    }
    Ok(())
}

/// Who an accepted token identifies.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The consumer for the rest of the chain.
    pub consumer: Consumer,
    /// Request headers to set (`Some`) or remove (`None`).
    pub headers: Vec<(String, Option<String>)>,
}

/// The consumer and the forwarded headers of an accepted token.
pub fn identity(settings: &Settings, claims: Map<String, Value>) -> Result<Identity, Refusal> {
    let id = match claim(&claims, &settings.consumer_claim) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(Refusal::Forbidden(format!(
                "the token has no '{}' claim to identify its consumer",
                settings.consumer_claim
            )));
        }
    };
    let groups = settings
        .groups_claim
        .as_deref()
        .map(|path| claim_strings(claim(&claims, path)))
        .unwrap_or_default();
    let mut headers: Vec<(String, Option<String>)> = settings
        .claim_headers
        .iter()
        .map(|(path, header)| {
            let value = claim(&claims, path).and_then(header_value);
            (header.clone(), value)
        })
        .collect();
    headers.push((
        String::from(barbacane_sdk::consumer::HEADER_ID),
        header_value(&Value::String(id.clone())),
    ));
    let groups_header = (!groups.is_empty())
        .then(|| header_value(&Value::String(groups.join(","))))
        .flatten();
    headers.push((
        String::from(barbacane_sdk::consumer::HEADER_GROUPS),
        groups_header,
    ));
    Ok(Identity {
        consumer: Consumer {
            id,
            groups,
            claims,
            authenticated_by: String::from(PLUGIN),
        },
        headers,
    })
}

/// A claim as the strings it holds: a string split on whitespace (OAuth's `scope`), the
/// scalars of an array, a number or boolean as text.
pub fn claim_strings(value: Option<&Value>) -> Vec<String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(other) => scalar(other).into_iter().collect(),
        None => Vec::new(),
    }
}

/// A claim as a header value: strings as they are, numbers and booleans as text, arrays of
/// scalars comma-joined, objects as compact JSON. `None` when empty, too long, or containing
/// control characters (never mangled into something the token did not say).
pub fn header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        Value::Array(items) if items.iter().all(|v| !v.is_array() && !v.is_object()) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
            .collect::<Vec<_>>()
            .join(","),
        Value::Array(_) | Value::Object(_) => value.to_string(),
    };
    let clean = !text.is_empty()
        && text.len() <= MAX_HEADER_VALUE
        && !text.chars().any(|c| c.is_control() && c != '\t');
    clean.then_some(text)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use crate::keys::{Alg, Material};
    use serde_json::json;

    fn settings(extra: Value) -> Settings {
        let mut config = json!({"keys": [{"alg": "HS256", "secret": "0123456789abcdef0123456789abcdef"}], "leeway": 10});
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        barbacane_sdk::config::parse(Some(config.to_string().into_bytes()))
            .and_then(Settings::new)
            .unwrap()
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn token(alg: Alg, kid: Option<&str>) -> Token {
        Token {
            alg,
            kid: kid.map(String::from),
            claims: Map::new(),
            signing_input: String::new(),
            signature: Vec::new(),
        }
    }

    fn key(kid: Option<&str>, alg: Option<Alg>, material: Material) -> Key {
        Key {
            kid: kid.map(String::from),
            alg,
            material,
        }
    }

    #[test]
    fn key_selection() {
        let hmac = Material::Hmac(vec![0; 64]);
        let keys = [
            key(Some("a"), Some(Alg::Hs256), hmac.clone()),
            key(Some("b"), None, hmac.clone()),
            key(None, Some(Alg::Hs512), hmac.clone()),
        ];
        let pick = |alg, kid| match select(keys.iter(), &token(alg, kid)) {
            Selection::Candidates(c) => {
                format!("{:?}", c.iter().map(|k| k.kid.clone()).collect::<Vec<_>>())
            }
            other => format!("{other:?}"),
        };
        assert_eq!(pick(Alg::Hs256, Some("a")), r#"[Some("a")]"#);
        assert_eq!(
            pick(Alg::Hs512, Some("a")),
            r#"WrongAlg("key 'a' is for HS256, not HS512")"#
        );
        assert_eq!(pick(Alg::Hs384, Some("b")), r#"[Some("b")]"#);
        assert_eq!(pick(Alg::Hs512, Some("zz")), "[None]");
        assert_eq!(
            pick(Alg::Hs384, Some("zz")),
            r#"UnknownKid("no key with kid 'zz'")"#
        );
        assert_eq!(pick(Alg::Hs256, None), r#"[Some("a"), Some("b")]"#);
        assert_eq!(
            pick(Alg::Rs256, None),
            r#"NoKeyForAlg("no key verifies RS256 tokens")"#
        );
        assert_eq!(
            pick(Alg::Rs256, Some("a")),
            r#"WrongAlg("key 'a' is for HS256, not RS256")"#
        );
    }

    #[test]
    fn time_claims_with_leeway() {
        let s = settings(json!({}));
        let now = 1_000_000.0;
        assert!(check_claims(&s, &claims(json!({"exp": now + 1.0})), now).is_ok());
        assert!(check_claims(&s, &claims(json!({"exp": now - 9.5})), now).is_ok());
        assert!(matches!(
            check_claims(&s, &claims(json!({"exp": now - 10.0})), now),
            Err(Refusal::Invalid(d)) if d.contains("expired")
        ));
        assert!(check_claims(&s, &claims(json!({"nbf": now + 10.0})), now).is_ok());
        assert!(matches!(
            check_claims(&s, &claims(json!({"nbf": now + 11.0})), now),
            Err(Refusal::Invalid(d)) if d.contains("not valid before")
        ));
        assert!(matches!(
            check_claims(&s, &claims(json!({"exp": "tomorrow"})), now),
            Err(Refusal::Invalid(d)) if d.contains("NumericDate")
        ));
        assert!(check_claims(&s, &claims(json!({})), now).is_ok());
    }

    #[test]
    fn issuer_audience_and_required_claims() {
        let s = settings(json!({
            "issuers": ["https://idp.example"],
            "audiences": ["orders", "billing"],
            "required_claims": ["scope", "realm_access.roles"]
        }));
        let ok = json!({"iss": "https://idp.example", "aud": ["x", "billing"], "scope": "a", "realm_access": {"roles": []}});
        assert_eq!(check_claims(&s, &claims(ok.clone()), 0.0), Ok(()));
        let mut bad = ok.clone();
        bad["iss"] = json!("https://evil.example");
        assert!(
            matches!(check_claims(&s, &claims(bad), 0.0), Err(Refusal::Forbidden(d)) if d.contains("issuer"))
        );
        let mut bad = ok.clone();
        bad["aud"] = json!("x");
        assert!(
            matches!(check_claims(&s, &claims(bad), 0.0), Err(Refusal::Forbidden(d)) if d.contains("audience"))
        );
        let mut single = ok.clone();
        single["aud"] = json!("orders");
        assert_eq!(check_claims(&s, &claims(single), 0.0), Ok(()));
        let mut bad = ok.clone();
        bad["realm_access"] = json!({});
        assert!(
            matches!(check_claims(&s, &claims(bad), 0.0), Err(Refusal::Forbidden(d)) if d.contains("realm_access.roles"))
        );
    }

    #[test]
    fn identity_and_headers() {
        let s = settings(json!({
            "claims_to_headers": {"email": "x-email", "https://example.com/tier": "x-tier", "missing": "x-missing", "roles": "x-roles"},
            "groups_claim": "roles"
        }));
        let id = identity(&s, claims(json!({"sub": "alice", "email": "a@example.com", "https://example.com/tier": 2, "roles": ["admin", "dev"]}))).unwrap();
        assert_eq!(id.consumer.id, "alice");
        assert_eq!(id.consumer.groups, ["admin", "dev"]);
        assert_eq!(id.consumer.authenticated_by, "jwt-auth");
        let header = |name: &str| {
            id.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("x-email"), Some(Some("a@example.com".into())));
        assert_eq!(header("x-tier"), Some(Some("2".into())));
        assert_eq!(header("x-missing"), Some(None));
        assert_eq!(header("x-roles"), Some(Some("admin,dev".into())));
        assert_eq!(header("x-consumer-id"), Some(Some("alice".into())));
        assert_eq!(header("x-consumer-groups"), Some(Some("admin,dev".into())));
        assert!(matches!(
            identity(&s, claims(json!({"email": "x"}))),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn header_values_are_never_mangled() {
        assert_eq!(header_value(&json!("a\r\nb")), None);
        assert_eq!(header_value(&json!("")), None);
        assert_eq!(header_value(&json!(true)), Some("true".into()));
        assert_eq!(header_value(&json!({"a": 1})), Some(r#"{"a":1}"#.into()));
        assert_eq!(header_value(&json!("x".repeat(MAX_HEADER_VALUE + 1))), None);
    }

    #[test]
    fn problems() {
        let p = Refusal::Missing.problem("api");
        assert_eq!(p.status, 401);
        assert_eq!(
            p.headers,
            [("www-authenticate".into(), "Bearer realm=\"api\"".into())]
        );
        let p = Refusal::Invalid("bad \"sig\"\n".into()).problem("api");
        assert_eq!(
            p.headers[0].1,
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"bad 'sig''\""
        );
        let p = Refusal::Forbidden("nope".into()).problem("r");
        assert_eq!(p.status, 403);
        assert!(p.headers[0].1.contains("insufficient_scope"));
        let p = Refusal::Unavailable {
            detail: "down".into(),
            retry_after: 5,
        }
        .problem("r");
        assert_eq!(p.status, 503);
        assert_eq!(p.headers, [("retry-after".into(), "5".into())]);
    }
}

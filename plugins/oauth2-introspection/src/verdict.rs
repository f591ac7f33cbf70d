//! What an answer means for a request under this configuration: the consumer to let through with
//! the headers to add, or the refusal (RFC 6750 §3 challenges).
//!
//! Kept apart from the answer so that a cached answer is judged again at each use: `exp` is
//! checked against the time of the request, not of the introspection.

use crate::answer::Answer;
use crate::config::Settings;
use barbacane_sdk::Problem;
use barbacane_sdk::consumer::Consumer;
use serde_json::Value;

/// The plugin's name in [`Consumer::authenticated_by`].
pub const PLUGIN: &str = "oauth2-introspection";

/// Let the request through as this consumer, with these request headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    /// Who the token belongs to.
    pub consumer: Consumer,
    /// `(lowercase name, value)` to set upstream.
    pub headers: Vec<(String, String)>,
}

/// Judges `answer` at `now` (seconds since the epoch).
pub fn judge(settings: &Settings, answer: &Answer, now: i64) -> Result<Pass, Problem> {
    let active = match answer {
        Answer::Inactive => return Err(invalid_token(settings, "the token is not active")),
        Answer::Active(active) => active,
    };
    if active.exp.is_some_and(|exp| exp <= now) {
        return Err(invalid_token(settings, "the token has expired"));
    }
    if active.nbf.is_some_and(|nbf| nbf > now) {
        return Err(invalid_token(settings, "the token is not valid yet"));
    }
    let claims = active.claims.clone();
    // `sub` is the resource owner; tokens of a client acting for itself may have only a
    // `client_id` (RFC 7662 §2.2).
    let id = ["sub", "username", "client_id"]
        .iter()
        .find_map(|name| match claims.get(*name) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let mut consumer = Consumer {
        id,
        groups: Vec::new(),
        claims,
        authenticated_by: String::from(PLUGIN),
    };
    let scopes = consumer.claim_strings("scope");
    let missing: Vec<&str> = settings
        .required_scopes
        .iter()
        .filter(|s| !scopes.contains(s))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let required = settings.required_scopes.join(" ");
        let challenge = challenge(
            settings,
            Some(("insufficient_scope", "the token lacks a required scope")),
        ) + &format!(", scope=\"{required}\"");
        return Err(Problem::new(
            403,
            "insufficient-scope",
            format!("the token lacks the scope(s): {}", missing.join(" ")),
        )
        .with_header("www-authenticate", challenge));
    }
    if let Some(path) = &settings.groups_claim {
        consumer.groups = consumer.claim_strings(path);
    }
    let mut headers = Vec::new();
    for (path, header) in &settings.claims_to_headers {
        if let Some(value) = consumer.claim(path).and_then(header_value) {
            headers.push((header.clone(), value));
        }
    }
    Ok(Pass { consumer, headers })
}

/// A claim as a header value: strings as they are, numbers and booleans written out, arrays
/// comma-joined, objects as JSON. `None` for null, and for anything a header cannot carry
/// (control characters): forwarding must not be a way to inject headers.
fn header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) | Value::Object(_) => value.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
    };
    let clean = !text.chars().any(|c| c.is_control() && c != '\t');
    clean.then_some(text)
}

/// `WWW-Authenticate: Bearer [realm="…"][, error="…", error_description="…"]`.
pub fn challenge(settings: &Settings, error: Option<(&str, &str)>) -> String {
    let mut params = Vec::new();
    if let Some(realm) = &settings.realm {
        params.push(format!("realm=\"{realm}\""));
    }
    if let Some((code, description)) = error {
        params.push(format!("error=\"{code}\""));
        params.push(format!("error_description=\"{description}\""));
    }
    if params.is_empty() {
        String::from("Bearer")
    } else {
        format!("Bearer {}", params.join(", "))
    }
}

/// 401 for a token the authorization server does not vouch for.
pub fn invalid_token(settings: &Settings, why: &str) -> Problem {
    Problem::new(401, "invalid-token", why).with_header(
        "www-authenticate",
        challenge(settings, Some(("invalid_token", why))),
    )
}

/// 401 for a request without bearer credentials: a bare challenge (RFC 6750 §3.1).
pub fn missing_token(settings: &Settings) -> Problem {
    Problem::new(401, "unauthorized", "a bearer token is required")
        .with_header("www-authenticate", challenge(settings, None))
}

/// 400 for a malformed `Authorization: Bearer` (RFC 6750 §3.1 `invalid_request`).
pub fn malformed_token(settings: &Settings, why: &str) -> Problem {
    Problem::new(400, "invalid-request", why).with_header(
        "www-authenticate",
        challenge(settings, Some(("invalid_request", why))),
    )
}

/// 503 when the token could not be checked: fail closed, but say it is the gateway's trouble,
/// not the token's — a 401 would make clients throw away a good token and log in again, a
/// storm on an authorization server that is already failing.
pub fn unavailable() -> Problem {
    Problem::new(
        503,
        "introspection-unavailable",
        "the token could not be checked: the authorization server did not answer; retry later",
    )
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use crate::answer::parse;
    use crate::config::Config;
    use barbacane_sdk::config;
    use serde_json::json;

    fn settings(extra: &str) -> Settings {
        let json = format!(r#"{{"upstream": "idp", "path": "/i", "bearer_token": "t"{extra}}}"#);
        Settings::new(config::parse::<Config>(Some(json.into_bytes())).unwrap()).unwrap()
    }

    fn answer(claims: serde_json::Value) -> Answer {
        parse(Some("200"), claims.to_string().as_bytes()).unwrap()
    }

    fn header<'a>(problem: &'a Problem, name: &str) -> Option<&'a str> {
        problem
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn an_active_token_is_a_consumer() {
        let s = settings(
            r#", "groups_claim": "realm_access.roles", "claims_to_headers": {"sub": "x-user", "scope": "x-scope", "realm_access.roles": "x-roles", "n": "x-n", "missing": "x-missing"}"#,
        );
        let pass = judge(
            &s,
            &answer(json!({
                "active": true, "sub": "alice", "client_id": "app", "scope": "read write",
                "realm_access": {"roles": ["admin", "dev"]}, "n": 7, "exp": 2000
            })),
            1000,
        )
        .unwrap();
        assert_eq!(pass.consumer.id, "alice");
        assert_eq!(pass.consumer.groups, ["admin", "dev"]);
        assert_eq!(pass.consumer.authenticated_by, "oauth2-introspection");
        assert_eq!(pass.consumer.claims["client_id"], "app");
        let mut headers = pass.headers.clone();
        headers.sort();
        assert_eq!(
            headers,
            [
                ("x-n".to_string(), "7".to_string()),
                ("x-roles".to_string(), "admin,dev".to_string()),
                ("x-scope".to_string(), "read write".to_string()),
                ("x-user".to_string(), "alice".to_string()),
            ]
        );
    }

    #[test]
    fn the_id_falls_back_to_username_then_client_id() {
        let s = settings("");
        let id = |claims| judge(&s, &answer(claims), 0).unwrap().consumer.id;
        assert_eq!(
            id(json!({"active": true, "username": "bob", "client_id": "c"})),
            "bob"
        );
        assert_eq!(id(json!({"active": true, "sub": 5, "client_id": "c"})), "c");
        assert_eq!(id(json!({"active": true})), "");
    }

    #[test]
    fn refusals() {
        let s = settings(r#", "realm": "api", "required_scopes": ["read", "admin"]"#);
        let inactive = judge(&s, &Answer::Inactive, 1000).unwrap_err();
        assert_eq!(
            (inactive.status, inactive.kind.as_str()),
            (401, "invalid-token")
        );
        assert_eq!(
            header(&inactive, "www-authenticate"),
            Some(
                r#"Bearer realm="api", error="invalid_token", error_description="the token is not active""#
            )
        );
        let expired = judge(&s, &answer(json!({"active": true, "exp": 1000})), 1000).unwrap_err();
        assert_eq!(expired.detail, "the token has expired");
        let early = judge(&s, &answer(json!({"active": true, "nbf": 1001})), 1000).unwrap_err();
        assert_eq!(early.status, 401);
        let scope = judge(&s, &answer(json!({"active": true, "scope": "read"})), 1000).unwrap_err();
        assert_eq!(
            (scope.status, scope.kind.as_str()),
            (403, "insufficient-scope")
        );
        assert_eq!(scope.detail, "the token lacks the scope(s): admin");
        assert_eq!(
            header(&scope, "www-authenticate"),
            Some(
                r#"Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required scope", scope="read admin""#
            )
        );
        assert!(
            judge(
                &s,
                &answer(json!({"active": true, "scope": "admin read x"})),
                1000
            )
            .is_ok()
        );
        // A non-string scope holds no scopes.
        assert!(
            judge(
                &s,
                &answer(json!({"active": true, "scope": {"read": 1}})),
                1000
            )
            .is_err()
        );
    }

    #[test]
    fn challenges() {
        let s = settings("");
        assert_eq!(challenge(&s, None), "Bearer");
        assert_eq!(
            header(&missing_token(&s), "www-authenticate"),
            Some("Bearer")
        );
        assert_eq!(malformed_token(&s, "x").status, 400);
        assert_eq!(unavailable().status, 503);
    }

    #[test]
    fn header_values_cannot_inject() {
        assert_eq!(header_value(&json!("a\r\nx-evil: 1")), None);
        assert_eq!(header_value(&json!(null)), None);
        assert_eq!(
            header_value(&json!({"a": 1})).as_deref(),
            Some(r#"{"a":1}"#)
        );
        assert_eq!(header_value(&json!(true)).as_deref(), Some("true"));
        assert_eq!(header_value(&json!("tab\tok")).as_deref(), Some("tab\tok"));
    }
}

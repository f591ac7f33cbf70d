//! The introspection response (RFC 7662 §2.2): `200` with a JSON object whose `active` is a
//! boolean. Anything else means the authorization server could not tell, which is not the same
//! as "inactive": the caller fails closed without caching it.

use serde_json::{Map, Value};

/// What the authorization server said about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `active: false` (or the server's way of saying it does not know the token).
    Inactive,
    /// `active: true`, with the whole answer as claims.
    Active(Active),
}

/// An active token's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Active {
    /// The answer's members (`sub`, `scope`, `client_id`, `exp`, …).
    pub claims: Map<String, Value>,
    /// `exp`, seconds since the epoch.
    pub exp: Option<i64>,
    /// `nbf`, seconds since the epoch.
    pub nbf: Option<i64>,
}

/// Reads a callout response: its `:status` and body. `Err` says why it is not an answer (for
/// the log; never the token).
pub fn parse(status: Option<&str>, body: &[u8]) -> Result<Answer, String> {
    match status {
        Some("200") => {}
        Some(status) => return Err(format!("the introspection endpoint answered {status}")),
        None => {
            return Err(String::from(
                "the introspection request failed (no response)",
            ));
        }
    }
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(body) else {
        return Err(String::from(
            "the introspection answer is not a JSON object",
        ));
    };
    match claims.get("active") {
        Some(Value::Bool(false)) => Ok(Answer::Inactive),
        Some(Value::Bool(true)) => {
            let exp = time(&claims, "exp")?;
            let nbf = time(&claims, "nbf")?;
            Ok(Answer::Active(Active { claims, exp, nbf }))
        }
        _ => Err(String::from(
            "the introspection answer has no boolean 'active'",
        )),
    }
}

/// A NumericDate member: absent, or a number (fractions are truncated).
fn time(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(t) => Ok(Some(t)),
            // Saturating: a float beyond i64 is "never" or "always", not an error.
            None => Ok(n.as_f64().map(|f| f as i64)),
        },
        Some(_) => Err(format!(
            "the introspection answer's '{name}' is not a number"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(
            parse(Some("200"), br#"{"active": false}"#),
            Ok(Answer::Inactive)
        );
        let Answer::Active(active) = parse(
            Some("200"),
            br#"{"active": true, "sub": "alice", "exp": 1700000000, "nbf": 1.6e9}"#,
        )
        .unwrap() else {
            panic!("inactive");
        };
        assert_eq!(active.claims["sub"], "alice");
        assert_eq!(active.exp, Some(1_700_000_000));
        assert_eq!(active.nbf, Some(1_600_000_000));
        let Ok(Answer::Active(active)) = parse(Some("200"), br#"{"active": true}"#) else {
            panic!("not active");
        };
        assert_eq!((active.exp, active.nbf), (None, None));
    }

    #[test]
    fn anything_else_is_not_an_answer() {
        for (status, body) in [
            (Some("500"), &br#"{"active": false}"#[..]),
            (Some("401"), b""),
            (None, b""),
            (Some("200"), b""),
            (Some("200"), b"<html>"),
            (Some("200"), b"[true]"),
            (Some("200"), br#"{"active": "true"}"#),
            (Some("200"), br#"{"ok": 1}"#),
            (Some("200"), br#"{"active": true, "exp": "soon"}"#),
            (Some("200"), br#"{"active": true} trailing"#),
        ] {
            assert!(parse(status, body).is_err(), "{status:?} {body:?}");
        }
    }
}

//! The JWS compact serialisation (RFC 7515 §7.1) of a JWT (RFC 7519): three base64url parts,
//! a JSON header naming the algorithm, a JSON claims set, a signature. Parsing checks the shape
//! only; the signature and the claims are checked by the caller.

use crate::keys::{Alg, base64url};
use serde_json::{Map, Value};

/// The longest token accepted; beyond it the token is refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A token whose parts decode and whose header names a supported algorithm.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The header's `alg`.
    pub alg: Alg,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    /// The claims set.
    pub claims: Map<String, Value>,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: what the signature covers.
    pub signing_input: String,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Parses `text`; the error says what is wrong, for `error_description` (never echoes the
/// token).
pub fn parse(text: &str) -> Result<Token, String> {
    if text.len() > MAX_TOKEN_LEN {
        return Err(format!("the token is longer than {MAX_TOKEN_LEN} bytes"));
    }
    let parts: Vec<&str> = text.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        if parts.len() == 5 {
            return Err(String::from("encrypted tokens (JWE) are not supported"));
        }
        return Err(String::from(
            "the token is not a JWS in compact form (three dot-separated parts)",
        ));
    };
    let header = decode_object(header, "header")?;
    let alg = match header.get("alg") {
        Some(Value::String(name)) if name.eq_ignore_ascii_case("none") => {
            return Err(String::from("unsigned tokens (alg none) are refused"));
        }
        Some(Value::String(name)) => Alg::from_name(name)
            .ok_or_else(|| format!("unsupported algorithm '{}'", printable(name, 16)))?,
        _ => return Err(String::from("the token header has no alg")),
    };
    // Extensions the verifier must understand (RFC 7515 §4.1.11): none are supported, so a
    // token that requires one cannot be accepted.
    if header.contains_key("crit") {
        return Err(String::from(
            "the token header has critical extensions (crit), which are not supported",
        ));
    }
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(String::from("the token header's kid is not a string")),
    };
    let claims = decode_object(payload, "payload")?;
    let signature = base64url(signature).ok_or("the token signature is not base64url")?;
    let signing_input = text[..text.len() - parts[2].len() - 1].to_string();
    Ok(Token {
        alg,
        kid,
        claims,
        signing_input,
        signature,
    })
}

/// A base64url part that must be a JSON object.
fn decode_object(part: &str, what: &str) -> Result<Map<String, Value>, String> {
    let bytes = base64url(part).ok_or_else(|| format!("the token {what} is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(format!("the token {what} is not a JSON object")),
    }
}

/// `text` shortened to `max` characters of the printable ASCII that may appear in a quoted
/// `error_description`, for messages that quote a client-chosen value.
pub fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn a_well_formed_token() {
        let text = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#),
            b64(r#"{"sub":"alice","n":1}"#),
            URL_SAFE_NO_PAD.encode([1, 2, 3])
        );
        let token = parse(&text).unwrap();
        assert_eq!(token.alg, Alg::Rs256);
        assert_eq!(token.kid.as_deref(), Some("k1"));
        assert_eq!(token.claims["sub"], "alice");
        assert_eq!(token.signature, [1, 2, 3]);
        assert_eq!(
            token.signing_input,
            text.rsplit_once('.').map(|(a, _)| a).unwrap()
        );
    }

    #[test]
    fn refusals() {
        let body = b64(r#"{"sub":"a"}"#);
        let with_header = |h: &str| format!("{}.{body}.AA", b64(h));
        let cases = [
            (String::from("abc"), "three dot-separated"),
            (String::from("a.b.c.d.e"), "JWE"),
            (String::from("!.b.c"), "header is not base64url"),
            (
                format!("{}.{body}.AA", b64("[1]")),
                "header is not a JSON object",
            ),
            (with_header(r#"{"alg":"none"}"#), "alg none"),
            (with_header(r#"{"alg":"NONE"}"#), "alg none"),
            (with_header(r#"{"typ":"JWT"}"#), "no alg"),
            (with_header(r#"{"alg":7}"#), "no alg"),
            (
                with_header(r#"{"alg":"ES512"}"#),
                "unsupported algorithm 'ES512'",
            ),
            (with_header(r#"{"alg":"HS256","crit":["b64"]}"#), "crit"),
            (
                with_header(r#"{"alg":"HS256","kid":1}"#),
                "kid is not a string",
            ),
            (
                format!("{}.{}.AA", b64(r#"{"alg":"HS256"}"#), b64("\"s\"")),
                "payload is not a JSON object",
            ),
            (
                format!("{}.{body}.A", b64(r#"{"alg":"HS256"}"#)),
                "signature is not base64url",
            ),
            ("a".repeat(MAX_TOKEN_LEN + 1), "longer than"),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn printable_strips_quotes_and_controls() {
        assert_eq!(printable("a\"b\\c\r\nd", 10), "abcd");
        assert_eq!(printable("short", 10), "short");
        assert_eq!(printable(&"x".repeat(20), 4), "xxxx...");
    }
}

//! The bearer token of a request (RFC 6750 §2.1: `Authorization: Bearer <b64token>`).

/// The longest token accepted (large JWT access tokens are a few KiB).
pub const MAX_TOKEN_BYTES: usize = 8192;

/// What the `Authorization` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer<'a> {
    /// A well-formed bearer token.
    Token(&'a str),
    /// No bearer credentials: no header, or another scheme (RFC 6750 §3.1: the challenge then
    /// carries no error code).
    Missing,
    /// `Bearer` with something that is not a token; why.
    Malformed(&'static str),
}

/// Reads the `Authorization` value.
pub fn bearer(authorization: Option<&str>) -> Bearer<'_> {
    let Some(value) = authorization.map(str::trim) else {
        return Bearer::Missing;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Bearer::Missing;
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Bearer::Malformed("the bearer token is empty");
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Bearer::Malformed("the bearer token is too long");
    }
    if !is_b64token(token) {
        return Bearer::Malformed("the bearer token has characters a token cannot have");
    }
    Bearer::Token(token)
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(
            bearer(Some("Bearer abc.DEF-_~+/==")),
            Bearer::Token("abc.DEF-_~+/==")
        );
        assert_eq!(bearer(Some("bearer  abc")), Bearer::Token("abc"));
        assert_eq!(bearer(Some(" BEARER abc ")), Bearer::Token("abc"));
        assert_eq!(bearer(None), Bearer::Missing);
        assert_eq!(bearer(Some("")), Bearer::Missing);
        assert_eq!(bearer(Some("Basic dXNlcjpwYXNz")), Bearer::Missing);
        assert_eq!(bearer(Some("Bearerabc")), Bearer::Missing);
        assert!(matches!(bearer(Some("Bearer")), Bearer::Malformed(_)));
        assert!(matches!(bearer(Some("Bearer   ")), Bearer::Malformed(_)));
        assert!(matches!(bearer(Some("Bearer a b")), Bearer::Malformed(_)));
        assert!(matches!(bearer(Some("Bearer a,b")), Bearer::Malformed(_)));
        assert!(matches!(bearer(Some("Bearer ===")), Bearer::Malformed(_)));
        assert!(matches!(bearer(Some("Bearer a=b")), Bearer::Malformed(_)));
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert!(matches!(bearer(Some(&long)), Bearer::Malformed(_)));
        let longest = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES));
        assert!(matches!(bearer(Some(&longest)), Bearer::Token(_)));
    }
}

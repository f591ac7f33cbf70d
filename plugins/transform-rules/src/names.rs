//! Header names a transformer configuration may name.
//!
//! Pseudo-headers (`:path`, `:method`, `:authority`, `:scheme`, `:status`) carry the request line
//! and status, not headers; hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and
//! the gateway strips them anyway; `host` is `:authority` under another name, and
//! `content-length` frames the body, which the plugins adjust themselves when they rewrite it.
//! None of them can be removed, renamed or set by configuration.

/// RFC 9110 `token`: what a header name may be (the SDK's rule, re-exported).
pub use barbacane_sdk::http::is_token;

/// RFC 9110 §7.6.1 connection-specific headers (the list the gateway strips when forwarding).
pub const HOP_BY_HOP: [&str; 9] = [
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

/// Headers that frame or route the message: managed by the gateway and the plugins.
pub const MANAGED: [&str; 2] = ["host", "content-length"];

/// Checks a configured header name and returns it lowercased (the Proxy-Wasm maps carry
/// lowercase names), or says why it cannot be used.
pub fn header_name(name: &str) -> Result<String, String> {
    if name.starts_with(':') {
        return Err(format!(
            "'{name}' is a pseudo-header: the request line and status cannot be changed by configuration"
        ));
    }
    if !is_token(name) {
        return Err(format!("'{name}' is not a header name"));
    }
    let lower = name.to_ascii_lowercase();
    if HOP_BY_HOP.contains(&lower.as_str()) {
        return Err(format!(
            "'{name}' is a hop-by-hop header: it belongs to one connection and is never forwarded"
        ));
    }
    if MANAGED.contains(&lower.as_str()) {
        return Err(format!(
            "'{name}' is managed by the gateway (it frames or routes the message)"
        ));
    }
    Ok(lower)
}

/// Whether `value` may be sent as a header value: no control characters but horizontal tab,
/// so that a value taken from the request (a decoded query parameter) cannot smuggle a CR/LF.
pub fn is_header_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_and_checked() {
        assert_eq!(header_name("X-Foo").as_deref(), Ok("x-foo"));
        assert!(header_name(":path").unwrap_err().contains("pseudo-header"));
        assert!(header_name(":status").is_err());
        assert!(
            header_name("Connection")
                .unwrap_err()
                .contains("hop-by-hop")
        );
        assert!(header_name("transfer-encoding").is_err());
        assert!(header_name("Host").unwrap_err().contains("managed"));
        assert!(header_name("content-length").is_err());
        assert!(
            header_name("x foo")
                .unwrap_err()
                .contains("not a header name")
        );
        assert!(header_name("").is_err());
    }

    #[test]
    fn values_refuse_control_characters() {
        assert!(is_header_value(b"a b\tc \xc3\xa9"));
        assert!(!is_header_value(b"a\r\nx-evil: 1"));
        assert!(!is_header_value(b"\0"));
        assert!(!is_header_value(b"\x7f"));
    }
}

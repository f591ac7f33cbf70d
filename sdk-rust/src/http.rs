//! Request helpers: the query string of `:path` (percent-decoded), headers looked up without
//! regard to case, and the client's IP address — the peer from the `source.address` property, or,
//! behind trusted proxies, the address they recorded in `x-forwarded-for`.
//!
//! The pure functions (`query_pairs`, `header`, `parse_address`, `resolve_client_ip`, [`Cidr`])
//! take strings so that they are unit-testable natively; the `request_*`/`*_ip` ones read the
//! current stream through a `proxy_wasm` context.

mod cidr;
mod map;

pub use cidr::{Cidr, CidrError};
pub use map::map_values;

use proxy_wasm::traits::HttpContext;
use proxy_wasm::types::MapType;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Splits a request target (`:path`) into the path and the query (without `?`; a `#fragment`,
/// which clients should not send, is dropped).
pub fn split_path(target: &str) -> (&str, Option<&str>) {
    let target = target.split_once('#').map_or(target, |(before, _)| before);
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// The query parameters of a request target, in order, decoded as
/// `application/x-www-form-urlencoded` (`%XX` and `+` for space; invalid UTF-8 becomes U+FFFD).
pub fn query_pairs(target: &str) -> Vec<(String, String)> {
    let Some(query) = split_path(target).1 else {
        return Vec::new();
    };
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of query parameter `name` (compared after decoding, case-sensitively).
pub fn query_param(target: &str, name: &str) -> Option<String> {
    query_pairs(target)
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// The first value of header `name` in a header list, whatever the case of either name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of header `name` in a header list, whatever the case, in order.
pub fn header_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A request header of the current stream. Names are lowercased first: HTTP/2 and the Proxy-Wasm
/// maps carry lowercase names, and not every host folds the case of a lookup.
///
/// Read as bytes and converted lossily: a client may send bytes that are not UTF-8, and the
/// `proxy_wasm` string accessors (`get_http_request_header`, `get_http_request_headers`) panic
/// on those, trapping the plugin. Plugins should read request headers through these helpers.
pub fn request_header<C: HttpContext + ?Sized>(ctx: &C, name: &str) -> Option<String> {
    // Names are nearly always lowercase already: no copy then.
    let value = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        ctx.get_http_request_header_bytes(&name.to_ascii_lowercase())
    } else {
        ctx.get_http_request_header_bytes(name)
    };
    value.map(lossy)
}

/// Every value of request header `name` (any case), as the bytes the client sent: for plugins
/// that judge the raw value (credentials, forwarded addresses) and must not trap on non-UTF-8.
pub fn request_header_bytes<C: HttpContext + ?Sized>(_ctx: &C, name: &str) -> Vec<Vec<u8>> {
    // Host calls act on the effective stream: `ctx` only keeps the shape of the other helpers.
    map_values(MapType::HttpRequestHeaders, name)
}

/// Every request header of the current stream, as [`request_header`] reads them (lossily).
pub fn request_headers<C: HttpContext + ?Sized>(ctx: &C) -> Vec<(String, String)> {
    ctx.get_http_request_headers_bytes()
        .into_iter()
        .map(|(name, value)| (name, lossy(value)))
        .collect()
}

/// The query parameters of the current request (see [`query_pairs`]).
pub fn request_query<C: HttpContext + ?Sized>(ctx: &C) -> Vec<(String, String)> {
    request_header(ctx, ":path")
        .map(|target| query_pairs(&target))
        .unwrap_or_default()
}

/// Header bytes as text, invalid UTF-8 replaced by U+FFFD (a client may send any bytes). Valid
/// text, the usual case, is checked by `from_utf8`'s fast path and kept, not copied.
pub fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Parses an address as hosts and proxies write it: `ip:port`, `[ipv6]:port`, or a bare IP
/// (IPv6 with or without brackets). Surrounding whitespace is ignored.
pub fn parse_address(text: &str) -> Option<IpAddr> {
    address_of(text.as_bytes())
}

/// [`parse_address`] of bytes: the usual `a.b.c.d:port` is read in one pass, with no UTF-8 check
/// first; anything else (surrounding whitespace included) goes to the standard parsers.
fn address_of(bytes: &[u8]) -> Option<IpAddr> {
    if let Some(ip) = ipv4_with_port(bytes) {
        return Some(IpAddr::V4(ip));
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse().ok()
}

/// The IP of `a.b.c.d:port`, the form hosts give `source.address` in, read in one pass: rate
/// limiters and IP filters parse it on every request, and the standard parser (which tries every
/// form in turn) cost several hundred instructions in the compiled Wasm. `None` for anything else,
/// including what the standard parser refuses (a leading zero, an octet or a port out of range),
/// which [`parse_address`] then hands to that parser.
fn ipv4_with_port(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    // The part being read (0–3 the octets, 4 the port), its value and its digits so far.
    let (mut part, mut value, mut digits) = (0usize, 0u32, 0u32);
    for &byte in text {
        match byte {
            b'0'..=b'9' if digits < 5 && !(digits == 1 && value == 0) => {
                value = value * 10 + u32::from(byte - b'0');
                digits += 1;
            }
            b'.' | b':' if digits > 0 && part < 4 && (byte == b':') == (part == 3) => {
                octets[part] = u8::try_from(value).ok()?;
                (part, value, digits) = (part + 1, 0, 0);
            }
            _ => return None,
        }
    }
    (part == 4 && digits > 0 && value <= u32::from(u16::MAX)).then_some(Ipv4Addr::from(octets))
}

/// The client's address given the connection's peer and the `x-forwarded-for` values.
///
/// A forwarded address is believed only as far as a chain of trusted proxies vouches for it:
/// unless the peer is in `trusted_proxies`, the answer is the peer. Otherwise the entries are read
/// right to left (each proxy appends the address it saw), skipping trusted ones; the first
/// untrusted entry is the client. An entry that is not an address stops the walk at the last
/// address known good. When every entry is trusted, the leftmost one is the client.
pub fn resolve_client_ip(peer: IpAddr, forwarded_for: &[&str], trusted_proxies: &[Cidr]) -> IpAddr {
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|c| c.contains(ip));
    let mut client = peer;
    if !trusted(client) {
        return client;
    }
    let entries = forwarded_for.iter().flat_map(|v| v.split(',')).rev();
    for entry in entries {
        let Some(ip) = parse_address(entry) else {
            return client;
        };
        client = ip;
        if !trusted(ip) {
            return client;
        }
    }
    client
}

/// The address of the connection's peer, from the `source.address` property (`ip:port`).
pub fn peer_ip<C: HttpContext + ?Sized>(_ctx: &C) -> Option<IpAddr> {
    // As in `request_header_bytes`, `ctx` only keeps the shape of the other helpers.
    address_of(&crate::host::property(b"source\0address")?)
}

/// The client's address: the peer's, or behind `trusted_proxies` the one they forwarded (see
/// [`resolve_client_ip`]). `None` only when the host gives no peer address.
pub fn client_ip<C: HttpContext + ?Sized>(ctx: &C, trusted_proxies: &[Cidr]) -> Option<IpAddr> {
    let peer = peer_ip(ctx)?;
    if trusted_proxies.is_empty() {
        return Some(peer);
    }
    let forwarded: Vec<String> = request_header_bytes(ctx, "x-forwarded-for")
        .into_iter()
        .map(lossy)
        .collect();
    let forwarded: Vec<&str> = forwarded.iter().map(String::as_str).collect();
    Some(resolve_client_ip(peer, &forwarded, trusted_proxies))
}

/// RFC 9110 `token`: what a header name may be (which also rules out pseudo-headers such as
/// `:path`). Non-empty; letters, digits and ``!#$%&'*+-.^_`|~``.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Non-empty printable ASCII (`0x20..=0x7e`, spaces included): safe as a header value.
pub fn is_header_text(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Whether `text` fits in an RFC 9110 `quoted-string` without escapes: printable ASCII without
/// `"` or `\` (the empty string fits).
pub fn is_quotable(text: &str) -> bool {
    text.bytes()
        .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_strings() {
        assert_eq!(split_path("/a/b?x=1#frag"), ("/a/b", Some("x=1")));
        assert_eq!(split_path("/a"), ("/a", None));
        assert_eq!(
            query_pairs("/p?a=1&b=two+words&c=%C3%A9%2F&a=2&flag&=empty"),
            pairs(&[
                ("a", "1"),
                ("b", "two words"),
                ("c", "é/"),
                ("a", "2"),
                ("flag", ""),
                ("", "empty")
            ])
        );
        assert_eq!(query_pairs("/p"), vec![]);
        assert_eq!(query_pairs("/p?"), vec![]);
        assert_eq!(query_param("/p?a=1&a=2", "a").as_deref(), Some("1"));
        assert_eq!(query_param("/p?%61=x", "a").as_deref(), Some("x"));
        assert_eq!(query_param("/p?a=1", "A"), None);
        assert_eq!(
            query_param("/p?bad=%FF", "bad").as_deref(),
            Some("\u{FFFD}")
        );
    }

    #[test]
    fn headers_ignore_case() {
        let headers = pairs(&[
            ("Content-Type", "text/plain"),
            ("x-forwarded-for", "1.1.1.1"),
            ("X-Forwarded-For", "2.2.2.2"),
        ]);
        assert_eq!(header(&headers, "content-type"), Some("text/plain"));
        assert_eq!(header(&headers, "X-FORWARDED-FOR"), Some("1.1.1.1"));
        assert_eq!(
            header_values(&headers, "x-forwarded-for"),
            vec!["1.1.1.1", "2.2.2.2"]
        );
        assert_eq!(header(&headers, "missing"), None);
    }

    #[test]
    fn addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(parse_address("10.1.2.3:5555"), Some(ip("10.1.2.3")));
        assert_eq!(parse_address(" 10.1.2.3 "), Some(ip("10.1.2.3")));
        assert_eq!(parse_address("[::1]:80"), Some(ip("::1")));
        assert_eq!(parse_address("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_address("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_address("unknown"), None);
        assert_eq!(parse_address(""), None);
    }

    #[test]
    fn the_ipv4_fast_path_answers_as_the_standard_parser_does() {
        let standard = |text: &str| text.parse::<SocketAddr>().ok().map(|s| s.ip());
        let bare = |text: &str| text.parse::<IpAddr>().ok();
        let cases = [
            "10.1.2.3:5555",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "127.0.0.1:54321",
            "1.2.3.4:65536",
            "1.2.3.4:080",
            "01.2.3.4:80",
            "256.1.1.1:80",
            "1.2.3:80",
            "1.2.3.4.5:80",
            "1.2.3.4:",
            ":80",
            "1.2.3.4",
            "1..3.4:80",
            "1.2.3.4:8a",
            "a.b.c.d:1",
            "1.2.3.4:123456",
            "1000.2.3.4:80",
            "[::1]:80",
            "1.2.3.4:+80",
            "1.2.3.-4:80",
        ];
        for text in cases {
            // The fast path answers only where it agrees; the rest goes to the standard parser.
            if let Some(ip) = ipv4_with_port(text.as_bytes()) {
                assert_eq!(Some(IpAddr::V4(ip)), standard(text), "{text}");
            }
            assert_eq!(parse_address(text), standard(text).or(bare(text)), "{text}");
        }
        assert_eq!(
            ipv4_with_port(b"10.1.2.3:5555"),
            Some(Ipv4Addr::new(10, 1, 2, 3))
        );
        assert_eq!(ipv4_with_port(b"1.2.3.4:080"), None);
    }

    #[test]
    fn forwarded_for_is_believed_only_through_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        // An untrusted peer cannot claim another address.
        assert_eq!(
            resolve_client_ip(ip("203.0.113.9"), &["1.2.3.4"], &trusted),
            ip("203.0.113.9")
        );
        // Through trusted proxies: the rightmost untrusted entry.
        assert_eq!(
            resolve_client_ip(
                ip("10.0.0.1"),
                &["6.6.6.6, 198.51.100.7", "10.0.0.2"],
                &trusted
            ),
            ip("198.51.100.7")
        );
        // All trusted: the leftmost.
        assert_eq!(
            resolve_client_ip(ip("::1"), &["10.0.0.5,10.0.0.6"], &trusted),
            ip("10.0.0.5")
        );
        // Garbage stops the walk at the last good address.
        assert_eq!(
            resolve_client_ip(ip("10.0.0.1"), &["1.2.3.4, bogus, 10.0.0.9"], &trusted),
            ip("10.0.0.9")
        );
        // No header: the peer.
        assert_eq!(
            resolve_client_ip(ip("10.0.0.1"), &[], &trusted),
            ip("10.0.0.1")
        );
        // Ports and brackets in entries.
        assert_eq!(
            resolve_client_ip(ip("10.0.0.1"), &["[2001:db8::7]:443"], &trusted),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn header_text_rules() {
        assert!(is_token("x-api-key"));
        assert!(is_token("!#$%&'*+-.^_`|~09azAZ"));
        assert!(!is_token(""));
        assert!(!is_token(":path"));
        assert!(!is_token("x key"));
        assert!(!is_token("x,y"));
        assert!(!is_token("é"));

        assert!(is_header_text("a b ~"));
        assert!(!is_header_text(""));
        assert!(!is_header_text("a\tb"));
        assert!(!is_header_text("a\r\nb"));
        assert!(!is_header_text("é"));

        assert!(is_quotable(""));
        assert!(is_quotable("my realm"));
        assert!(!is_quotable("a\"b"));
        assert!(!is_quotable("a\\b"));
        assert!(!is_quotable("a\nb"));
    }
}

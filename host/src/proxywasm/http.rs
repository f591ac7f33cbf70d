//! HTTP heads as Proxy-Wasm header maps and back. Filters see (and may change) the pseudo-headers
//! Envoy presents: `:method`, `:path` (with query), `:authority` (HTTP/1's `Host`), `:scheme` on
//! requests, `:status` on responses. Keys are lower case, order is kept, repeats are repeats.

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri};

/// A header map as the ABI sees it.
pub type Pairs = Vec<(String, Vec<u8>)>;

/// Serialises `pairs` in the ABI's map format (Proxy-Wasm 0.2.1 §Header maps).
pub fn serialize(pairs: &Pairs) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses the ABI's map format; `None` when the bytes do not hold a well-formed map. An empty
/// input (or a lone NUL) is the empty map, as Envoy accepts.
pub fn deserialize(bytes: &[u8]) -> Option<Pairs> {
    if bytes.len() <= 1 {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        sizes.push((u32_at(4 + 8 * i)?, u32_at(8 + 8 * i)?));
    }
    let mut at = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut pairs = Vec::with_capacity(sizes.len());
    for (key_len, value_len) in sizes {
        let key = bytes.get(at..at.checked_add(key_len)?)?;
        at = at.checked_add(key_len + 1)?;
        let value = bytes.get(at..at.checked_add(value_len)?)?;
        at = at.checked_add(value_len + 1)?;
        pairs.push((header_name(key.to_vec()), value.to_vec()));
    }
    Some(pairs)
}

/// A header name from a filter as the maps hold it: lowercase, as a `String` made without a copy
/// when it is UTF-8 (it always is in practice), else with the invalid bytes replaced.
pub fn header_name(mut bytes: Vec<u8>) -> String {
    bytes.make_ascii_lowercase();
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn push_headers(pairs: &mut Pairs, headers: &HeaderMap) {
    for (name, value) in headers {
        // `Host` is presented as `:authority`.
        if name != http::header::HOST {
            pairs.push((name.as_str().to_string(), value.as_bytes().to_vec()));
        }
    }
}

/// The request head as a map: pseudo-headers first, then the headers (`Host` becomes
/// `:authority`).
pub fn request_pairs(parts: &http::request::Parts, scheme: &str) -> Pairs {
    let mut pairs = Vec::with_capacity(parts.headers.len() + 4);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes().to_vec())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .map(|h| h.as_bytes().to_vec())
        })
        .unwrap_or_default();
    pairs.push((
        String::from(":method"),
        parts.method.as_str().as_bytes().to_vec(),
    ));
    pairs.push((String::from(":path"), path.as_bytes().to_vec()));
    pairs.push((String::from(":authority"), authority));
    pairs.push((String::from(":scheme"), scheme.as_bytes().to_vec()));
    push_headers(&mut pairs, &parts.headers);
    pairs
}

/// Whether `uri` is the origin-form target `path` (no scheme, no authority, same text).
fn is_origin_form(uri: &Uri, path: &[u8]) -> bool {
    uri.scheme().is_none()
        && uri.authority().is_none()
        && uri.path_and_query().map(|p| p.as_str().as_bytes()) == Some(path)
}

/// Writes a (possibly changed) request map back into the request head. Entries that are not
/// valid HTTP are dropped rather than failing the request.
pub fn apply_request_pairs(parts: &mut http::request::Parts, pairs: &Pairs) {
    for (key, value) in pairs {
        match key.as_str() {
            // Unchanged values keep what was parsed (re-parsing a URI on every request is not
            // free). Only an origin-form URI (`/path?query`) is exactly its `:path`; any other
            // form is rebuilt from it, as a changed one is.
            ":method" if value.as_slice() != parts.method.as_str().as_bytes() => {
                if let Ok(method) = Method::from_bytes(value) {
                    parts.method = method;
                }
            }
            ":path" if !is_origin_form(&parts.uri, value) => {
                if let Ok(uri) = Uri::try_from(value.as_slice()) {
                    parts.uri = uri;
                }
            }
            _ => {}
        }
    }
    apply_headers(&mut parts.headers, pairs, true);
}

/// Writes the headers of a (possibly changed) map back into `headers`; with `with_host`,
/// `:authority` is the `Host` header (a request's). In the common case of a filter chain (some of
/// the head's own headers removed, the others unchanged and in order, then those the filters
/// added) `headers` is edited in place; otherwise it is rebuilt, reusing the entries the filters
/// left as they were.
fn apply_headers(headers: &mut HeaderMap, pairs: &Pairs, with_host: bool) {
    let mut authorities = pairs
        .iter()
        .filter(|(key, _)| with_host && key == ":authority")
        .map(|(_, value)| value.as_slice());
    let authority = authorities.next();
    if authorities.next().is_none() && edit_in_place(headers, pairs) {
        if with_host {
            set_host(headers, authority);
        }
        return;
    }
    let old = std::mem::take(headers);
    let mut unchanged = Unchanged::new(&old);
    headers.reserve(pairs.len());
    for (key, value) in pairs {
        if with_host && key == ":authority" {
            match old.get(http::header::HOST) {
                Some(host) if host.as_bytes() == value.as_slice() => {
                    headers.append(http::header::HOST, host.clone());
                }
                _ => append_parsed(headers, "host", value),
            }
        } else if !key.starts_with(':') {
            append(headers, &mut unchanged, key, value);
        }
    }
}

/// Sets `Host` to `authority` (none, or not valid HTTP: no `Host`), parsed only when it changed.
fn set_host(headers: &mut HeaderMap, authority: Option<&[u8]>) {
    let host = http::header::HOST;
    match authority {
        Some(value) if headers.get(&host).is_some_and(|h| h.as_bytes() == value) => {}
        Some(value) => match HeaderValue::from_bytes(value) {
            Ok(value) => {
                headers.insert(host, value);
            }
            Err(_) => {
                headers.remove(host);
            }
        },
        None => {
            headers.remove(host);
        }
    }
}

/// Edits `headers` in place into what `pairs` holds, when the filters only removed headers
/// (every value of a name) and added others after the head's own — what most chains do: the
/// head's remaining headers are then, in order, the start of `pairs`, and the rest of `pairs` is
/// appended. Returns `false`, with `headers` untouched, for any other edit (a value changed or
/// moved, one of several values removed): the caller rebuilds the head.
///
/// A removal moves the head's last header into the removed one's place (`HeaderMap` removes by
/// swapping): headers of different names may leave in another order than they came, which
/// HTTP leaves without meaning (RFC 9110 §5.3); the values of one name keep theirs.
fn edit_in_place(headers: &mut HeaderMap, pairs: &Pairs) -> bool {
    let mut regular = pairs
        .iter()
        .filter(|(key, _)| !key.starts_with(':'))
        .peekable();
    let mut removed: Vec<HeaderName> = Vec::new();
    for (name, value) in old_entries(headers) {
        let same = regular
            .peek()
            .is_some_and(|(key, v)| name.as_str() == key && value.as_bytes() == v.as_slice());
        if same {
            regular.next();
        } else if pairs.iter().all(|(key, _)| name.as_str() != key) {
            if removed.last() != Some(name) {
                removed.push(name.clone());
            }
        } else {
            return false;
        }
    }
    for name in removed {
        headers.remove(name);
    }
    for (key, value) in regular {
        append_parsed(headers, key, value);
    }
    true
}

/// The response head as a map: `:status`, then the headers.
pub fn response_pairs(parts: &http::response::Parts) -> Pairs {
    let mut pairs = Vec::with_capacity(parts.headers.len() + 1);
    pairs.push((
        String::from(":status"),
        parts.status.as_str().as_bytes().to_vec(),
    ));
    push_headers(&mut pairs, &parts.headers);
    pairs
}

/// Writes a (possibly changed) response map back into the response head.
pub fn apply_response_pairs(parts: &mut http::response::Parts, pairs: &Pairs) {
    for (key, value) in pairs {
        if key == ":status"
            && let Some(status) = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
            && let Ok(status) = StatusCode::from_u16(status)
        {
            parts.status = status;
        }
    }
    apply_headers(&mut parts.headers, pairs, false);
}

/// The headers of a head before the filters, in the order `push_headers` gave them to the map.
fn old_entries(old: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    old.iter().filter(|(name, _)| *name != http::header::HOST)
}

/// The headers of a head before the filters, walked once while the head is rebuilt: most pass a
/// filter chain unchanged and in order, so each entry of the new map is looked for from where
/// the last one was found (entries passed over were changed or removed).
struct Unchanged<'a> {
    entries: Vec<(&'a HeaderName, &'a HeaderValue)>,
    next: usize,
}

impl<'a> Unchanged<'a> {
    fn new(old: &'a HeaderMap) -> Unchanged<'a> {
        Unchanged {
            entries: old_entries(old).collect(),
            next: 0,
        }
    }

    /// The old entry that is exactly `key: value`, at or after the last one found.
    fn take(&mut self, key: &str, value: &[u8]) -> Option<(&'a HeaderName, &'a HeaderValue)> {
        let rest = self.entries.get(self.next..)?;
        let at = rest
            .iter()
            .position(|(name, old)| name.as_str() == key && old.as_bytes() == value)?;
        self.next += at + 1;
        Some(rest[at])
    }
}

/// Appends `key: value` to `headers`: the old entry's parsed name and value when it is one of
/// `unchanged` (no copy), else parsed.
fn append(headers: &mut HeaderMap, unchanged: &mut Unchanged<'_>, key: &str, value: &[u8]) {
    match unchanged.take(key, value) {
        Some((name, old)) => {
            headers.append(name.clone(), old.clone());
        }
        None => append_parsed(headers, key, value),
    }
}

/// Appends `key: value` parsed from the map's bytes; dropped if it is not valid HTTP.
fn append_parsed(headers: &mut HeaderMap, key: &str, value: &[u8]) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(key.as_bytes()),
        HeaderValue::from_bytes(value),
    ) {
        headers.append(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip_in_the_abi_format() {
        let pairs: Pairs = vec![
            (":method".into(), b"GET".to_vec()),
            ("x-id".into(), b"7".to_vec()),
        ];
        let bytes = serialize(&pairs);
        assert_eq!(bytes.len(), 39);
        assert_eq!(&bytes[..12], &[2, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(deserialize(&bytes), Some(pairs));
        assert_eq!(deserialize(&[]), Some(Vec::new()));
        assert_eq!(deserialize(&bytes[..30]), None);
        assert_eq!(deserialize(&[255, 255, 255, 255, 1]), None);
    }

    #[test]
    fn request_heads_round_trip_with_pseudo_headers() {
        let request = http::Request::get("/pets?x=1")
            .header("host", "api.test")
            .header("x-a", "1")
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let mut pairs = request_pairs(&parts, "http");
        assert_eq!(pairs[1], (String::from(":path"), b"/pets?x=1".to_vec()));
        assert_eq!(pairs[2], (String::from(":authority"), b"api.test".to_vec()));
        pairs[1].1 = b"/v2/pets".to_vec();
        pairs.push((String::from("x-b"), b"2".to_vec()));
        apply_request_pairs(&mut parts, &pairs);
        assert_eq!(parts.uri.path(), "/v2/pets");
        assert_eq!(parts.headers["host"], "api.test");
        assert_eq!(parts.headers["x-b"], "2");
    }

    #[test]
    fn unchanged_headers_are_kept_as_they_were_not_copied() {
        // Before and after a changed header, and after a removed one: found, not parsed again.
        for names in [
            &["x-kept", "x-changed"][..],
            &["x-gone", "x-changed", "x-kept"],
        ] {
            let mut request = http::Request::get("/");
            for name in names {
                request = request.header(*name, if *name == "x-changed" { "before" } else { "1" });
            }
            let (mut parts, ()) = request.body(()).unwrap().into_parts();
            let kept = parts.headers["x-kept"].as_bytes().as_ptr();
            let mut pairs = request_pairs(&parts, "http");
            pairs.retain(|(key, _)| key != "x-gone");
            for pair in &mut pairs {
                if pair.0 == "x-changed" {
                    pair.1 = b"after".to_vec();
                }
            }
            apply_request_pairs(&mut parts, &pairs);
            assert_eq!(
                parts.headers["x-kept"].as_bytes().as_ptr(),
                kept,
                "{names:?}"
            );
            assert_eq!(parts.headers["x-changed"], "after");
            assert_eq!(parts.headers.get_all("x-kept").iter().count(), 1);
            assert!(parts.headers.get("x-gone").is_none());
        }
    }

    #[test]
    fn headers_added_after_unchanged_ones_extend_the_head_in_place() {
        let request = http::Request::get("/a")
            .header("host", "api.test")
            .header("x-kept", "same")
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let kept = parts.headers["x-kept"].as_bytes().as_ptr();
        let mut pairs = request_pairs(&parts, "http");
        pairs.push((String::from("x-added"), b"1".to_vec()));
        pairs.push((String::from("x-kept"), b"again".to_vec()));
        apply_request_pairs(&mut parts, &pairs);
        assert_eq!(parts.headers["x-kept"].as_bytes().as_ptr(), kept);
        let kept_values: Vec<_> = parts.headers.get_all("x-kept").iter().collect();
        assert_eq!(kept_values, ["same", "again"]);
        assert_eq!(parts.headers["x-added"], "1");
        assert_eq!(parts.headers["host"], "api.test");

        // :authority still decides Host: changed, then removed.
        let mut pairs = request_pairs(&parts, "http");
        pairs[2].1 = b"other.test".to_vec();
        apply_request_pairs(&mut parts, &pairs);
        assert_eq!(parts.headers["host"], "other.test");
        let mut pairs = request_pairs(&parts, "http");
        pairs.remove(2);
        apply_request_pairs(&mut parts, &pairs);
        assert!(parts.headers.get("host").is_none());
        assert_eq!(parts.headers.get_all("x-kept").iter().count(), 2);

        // A response: the status changes, a header set by a filter is appended.
        let response = http::Response::builder()
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        let (mut parts, ()) = response.into_parts();
        let mut pairs = response_pairs(&parts);
        pairs[0].1 = b"201".to_vec();
        pairs.push((String::from("x-conformance"), b"headers".to_vec()));
        apply_response_pairs(&mut parts, &pairs);
        assert_eq!(parts.status, StatusCode::CREATED);
        assert_eq!(parts.headers["content-type"], "text/plain");
        assert_eq!(parts.headers["x-conformance"], "headers");
    }

    #[test]
    fn headers_removed_whole_and_added_at_the_end_edit_the_head_in_place() {
        let request = http::Request::get("/a")
            .header("host", "api.test")
            .header("x-gone", "1")
            .header("x-kept", "same")
            .header("x-multi", "1")
            .header("x-multi", "2")
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let kept = parts.headers["x-kept"].as_bytes().as_ptr();
        let mut pairs = request_pairs(&parts, "http");
        // What request-transformer's remove and rename do: every value goes; the new name is
        // added at the end.
        pairs.retain(|(key, _)| key != "x-gone");
        pairs.push((String::from("x-renamed"), b"1".to_vec()));
        apply_request_pairs(&mut parts, &pairs);
        assert_eq!(parts.headers["x-kept"].as_bytes().as_ptr(), kept);
        let mut names: Vec<_> = parts.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["host", "x-kept", "x-multi", "x-renamed"]);
        let multi: Vec<_> = parts.headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["1", "2"]);

        // One of two values removed, or a header set anew at the end: rebuilt, and still right.
        let mut pairs = request_pairs(&parts, "http");
        pairs.retain(|(k, v)| !(k == "x-multi" && v == b"1") && k != "x-kept");
        pairs.push((String::from("x-kept"), b"new".to_vec()));
        apply_request_pairs(&mut parts, &pairs);
        let multi: Vec<_> = parts.headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["2"]);
        assert_eq!(parts.headers["x-kept"], "new");
        assert_eq!(parts.headers.len(), 4);
    }

    #[test]
    fn an_absolute_uri_becomes_its_path_even_when_the_path_is_unchanged() {
        let request = http::Request::get("http://api.test/pets?x=1")
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let mut pairs = request_pairs(&parts, "http");
        pairs[2].1 = b"other.test".to_vec();
        apply_request_pairs(&mut parts, &pairs);
        assert_eq!(parts.uri, "/pets?x=1");
        assert_eq!(parts.headers["host"], "other.test");

        // Origin form and unchanged: kept as parsed.
        let pairs = request_pairs(&parts, "http");
        apply_request_pairs(&mut parts, &pairs);
        assert_eq!(parts.uri, "/pets?x=1");
        assert_eq!(parts.method, http::Method::GET);
    }
}

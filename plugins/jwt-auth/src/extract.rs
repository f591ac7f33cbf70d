//! Finding the token in a request — a header with its prefix (`Authorization: Bearer …` by
//! default), a query parameter, a cookie — and removing it again when the token must not reach
//! the upstream. Pure functions over the request's headers and target.

use crate::settings::Source;
use barbacane_sdk::http;
use std::borrow::Cow;

/// A token and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The token text.
    pub token: String,
    /// The index of the source it came from, in the sources searched.
    pub source: usize,
}

/// The first token found in `sources`, in order. `headers` are the request headers (any
/// case), `target` the request's `:path`. A source that holds no token (absent, empty, or a
/// header with another scheme, such as `Authorization: Basic …`) is skipped.
pub fn find(sources: &[Source], headers: &[(String, String)], target: &str) -> Option<Found> {
    sources.iter().enumerate().find_map(|(index, source)| {
        let token: Cow<'_, str> = match source {
            Source::Header { name, prefix } => {
                Cow::Borrowed(strip_prefix(http::header(headers, name)?, prefix)?)
            }
            Source::Query(name) => Cow::Owned(http::query_param(target, name)?),
            Source::Cookie(name) => Cow::Owned(cookie(headers, name)?),
        };
        let token = token.trim();
        (!token.is_empty()).then(|| Found {
            token: token.to_string(),
            source: index,
        })
    })
}

/// `value` without `prefix` (ASCII case-insensitive: auth schemes are), or `None` when it does
/// not start with it.
fn strip_prefix<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, rest) = value.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// The value of cookie `name` in the request's `cookie` headers (RFC 6265 §5.4 syntax; a
/// quoted value is unquoted).
fn cookie(headers: &[(String, String)], name: &str) -> Option<String> {
    http::header_values(headers, "cookie")
        .into_iter()
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
                .to_string()
        })
}

/// `target` without query parameter `name` (every occurrence; the others are kept byte for
/// byte).
pub fn strip_query(target: &str, name: &str) -> String {
    let (path, Some(query)) = http::split_path(target) else {
        return target.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let raw_name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            let decoded = form_decoded(raw_name);
            !pair.is_empty() && decoded != name
        })
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// One form-urlencoded component, decoded.
fn form_decoded(raw: &str) -> String {
    http::query_pairs(&format!("?{raw}"))
        .into_iter()
        .next()
        .map(|(name, _)| name)
        .unwrap_or_default()
}

/// The `cookie` header without cookie `name`; `None` when nothing is left.
pub fn strip_cookie(headers: &[(String, String)], name: &str) -> Option<String> {
    let kept: Vec<&str> = http::header_values(headers, "cookie")
        .into_iter()
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty() && pair.split_once('=').map_or(*pair, |(n, _)| n).trim() != name
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn bearer() -> Source {
        Source::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }
    }

    #[test]
    fn bearer_header() {
        let sources = [bearer()];
        let found = |value: &str| {
            find(&sources, &headers(&[("Authorization", value)]), "/").map(|f| f.token)
        };
        assert_eq!(found("Bearer abc"), Some("abc".into()));
        assert_eq!(found("bearer  abc "), Some("abc".into()));
        assert_eq!(found("Basic abc"), None);
        assert_eq!(found("Bearer "), None);
        assert_eq!(found("Bear"), None);
        assert_eq!(found("Beärer x"), None);
        assert_eq!(find(&sources, &[], "/"), None);
    }

    #[test]
    fn sources_in_order() {
        let sources = [
            bearer(),
            Source::Query("access_token".into()),
            Source::Cookie("jwt".into()),
        ];
        let h = headers(&[("cookie", "a=1; jwt=\"c.c.c\""), ("cookie", "b=2")]);
        assert_eq!(
            find(&sources, &h, "/x?access_token=q.q.q").unwrap(),
            Found {
                token: "q.q.q".into(),
                source: 1
            }
        );
        assert_eq!(find(&sources, &h, "/x").unwrap().token, "c.c.c");
        let mut with_header = h.clone();
        with_header.push(("authorization".into(), "Bearer h.h.h".into()));
        assert_eq!(
            find(&sources, &with_header, "/x?access_token=q")
                .unwrap()
                .token,
            "h.h.h"
        );
    }

    #[test]
    fn stripping() {
        assert_eq!(
            strip_query("/a?x=1&access_token=t&y=%20", "access_token"),
            "/a?x=1&y=%20"
        );
        assert_eq!(strip_query("/a?access_token=t", "access_token"), "/a");
        assert_eq!(strip_query("/a?access%5Ftoken=t&b", "access_token"), "/a?b");
        assert_eq!(strip_query("/a", "access_token"), "/a");
        let h = headers(&[("cookie", "a=1; jwt=t"), ("cookie", "b=2")]);
        assert_eq!(strip_cookie(&h, "jwt"), Some("a=1; b=2".into()));
        assert_eq!(strip_cookie(&headers(&[("cookie", "jwt=t")]), "jwt"), None);
    }
}

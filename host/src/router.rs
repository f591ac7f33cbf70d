//! Routing: request path normalisation and a segment trie of the compiled operations.
//!
//! Normalisation drops empty segments (duplicate and trailing slashes), resolves `.` and `..`
//! (never above the root), then percent-decodes each segment. A segment that only *decodes* to a
//! separator or a dot segment (`%2f`, `%2e%2e`) is rejected rather than resolved: it can only be a
//! traversal attempt. Matching prefers static segments over `{param}` ones; the first path that
//! matches decides the route, and the method is checked only then (405 with `Allow`).

use crate::model::Operation;
use http::Method;
use rustc_hash::FxHashMap;
use std::borrow::Cow;

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `..` would climb above the root.
    #[error("the path climbs above the root")]
    AboveRoot,
    /// A segment decodes to `/`, `.`, `..` or contains NUL or control characters.
    #[error("the path contains an encoded separator, dot segment or control character")]
    EncodedTraversal,
    /// A segment is not valid percent-encoded UTF-8.
    #[error("the path is not valid percent-encoded UTF-8")]
    InvalidEncoding,
}

/// Splits and normalises a raw request path into decoded segments (borrowed from the path unless
/// a segment had to be percent-decoded).
pub fn normalize(raw_path: &str) -> Result<Vec<Cow<'_, str>>, PathError> {
    let mut segments: Vec<Cow<'_, str>> = Vec::new();
    for raw in raw_path.split('/') {
        match raw {
            "" | "." => continue,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                continue;
            }
            _ => {}
        }
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| PathError::InvalidEncoding)?;
        if decoded == "."
            || decoded == ".."
            || decoded.contains('/')
            || decoded.chars().any(char::is_control)
        {
            return Err(PathError::EncodedTraversal);
        }
        segments.push(decoded);
    }
    Ok(segments)
}

/// The outcome of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Operation index and decoded path parameters.
    Found(usize, Vec<(String, String)>),
    /// The path exists, not with this method; the methods it has.
    MethodNotAllowed(Vec<Method>),
    /// No route.
    NotFound,
}

#[derive(Debug)]
struct Entry {
    method: Method,
    host: Option<Vec<String>>,
    operation: usize,
    param_names: Vec<String>,
}

#[derive(Debug, Default)]
struct Node {
    /// Fx hashing: keys come from the spec, so lookups with hostile input cannot degrade them.
    statics: FxHashMap<String, Node>,
    param: Option<Box<Node>>,
    entries: Vec<Entry>,
}

/// The routing trie.
#[derive(Debug, Default)]
pub struct Router {
    root: Node,
}

impl Router {
    /// Builds the trie; each operation is inserted once per server base path.
    pub fn new(operations: &[Operation]) -> Router {
        let mut router = Router::default();
        for (index, op) in operations.iter().enumerate() {
            let Ok(method) = Method::from_bytes(op.method.as_bytes()) else {
                continue;
            };
            for server in &op.servers {
                let full = format!("{}{}", server.base_path, op.path);
                let mut node = &mut router.root;
                let mut param_names = Vec::new();
                for segment in full.split('/').filter(|s| !s.is_empty()) {
                    node = match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => {
                            param_names.push(name.to_string());
                            node.param.get_or_insert_with(Box::default)
                        }
                        None => node.statics.entry(segment.to_string()).or_default(),
                    };
                }
                node.entries.push(Entry {
                    method: method.clone(),
                    host: server
                        .host
                        .as_ref()
                        .map(|h| h.split('.').map(str::to_owned).collect()),
                    operation: index,
                    param_names,
                });
            }
        }
        router
    }

    /// Finds the operation for `method` on `host` (without port) and normalised `segments`.
    pub fn lookup(&self, method: &Method, host: &str, segments: &[Cow<'_, str>]) -> Lookup {
        let mut values = Vec::new();
        let Some(node) = find(&self.root, segments, Some(host), &mut values) else {
            return Lookup::NotFound;
        };
        let on_host = || {
            node.entries
                .iter()
                .filter(|e| host_matches(e.host.as_deref(), host))
        };
        // Host-specific entries win over catch-all ones.
        let pick = |m: &Method| {
            on_host()
                .filter(|e| e.method == *m)
                .min_by_key(|e| e.host.is_none())
        };
        let entry = pick(method).or_else(|| {
            (*method == Method::HEAD)
                .then(|| pick(&Method::GET))
                .flatten()
        });
        match entry {
            Some(e) => Lookup::Found(
                e.operation,
                e.param_names.iter().cloned().zip(values).collect(),
            ),
            None => {
                let mut allowed: Vec<Method> = Vec::new();
                for e in on_host() {
                    if !allowed.contains(&e.method) {
                        allowed.push(e.method.clone());
                    }
                }
                if allowed.contains(&Method::GET) && !allowed.contains(&Method::HEAD) {
                    allowed.push(Method::HEAD);
                }
                Lookup::MethodNotAllowed(allowed)
            }
        }
    }

    /// The host patterns under which `segments` has routes, whatever the request's host: what a
    /// 404 explains when the path exists but not for this host.
    pub fn hosts_serving(&self, segments: &[Cow<'_, str>]) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        if let Some(node) = find(&self.root, segments, None, &mut Vec::new()) {
            for labels in node.entries.iter().filter_map(|e| e.host.as_ref()) {
                let host = labels.join(".");
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
        }
        hosts
    }
}

/// Depth-first, static before param; returns the first node that ends the path and has routes
/// for this host (any host when `None`), with the captured parameter values in `values`.
fn find<'a>(
    node: &'a Node,
    segments: &[Cow<'_, str>],
    host: Option<&str>,
    values: &mut Vec<String>,
) -> Option<&'a Node> {
    let Some((first, rest)) = segments.split_first() else {
        return node
            .entries
            .iter()
            .any(|e| host.is_none_or(|h| host_matches(e.host.as_deref(), h)))
            .then_some(node);
    };
    if let Some(child) = node.statics.get(first.as_ref())
        && let Some(found) = find(child, rest, host, values)
    {
        return Some(found);
    }
    if let Some(child) = &node.param {
        values.push(first.to_string());
        if let Some(found) = find(child, rest, host, values) {
            return Some(found);
        }
        values.pop();
    }
    None
}

/// Whether `host` is served by an entry's host pattern (`None`: any host).
fn host_matches(pattern: Option<&[String]>, host: &str) -> bool {
    pattern.is_none_or(|labels| labels_match(labels.iter().map(String::as_str), host))
}

/// Whether a host pattern's labels match `host` (without port), label by label, whatever the
/// case; a `*` label matches any one label.
pub(crate) fn labels_match<'a>(pattern: impl IntoIterator<Item = &'a str>, host: &str) -> bool {
    let mut host_labels = host.split('.');
    pattern.into_iter().all(|p| {
        host_labels
            .next()
            .is_some_and(|h| p == "*" || p.eq_ignore_ascii_case(h))
    }) && host_labels.next().is_none()
}

/// A `Host` or `:authority` value without its port (an IPv6 literal keeps its brackets).
pub(crate) fn host_without_port(raw: &str) -> &str {
    if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.split(':').next().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServerMatch;

    fn op(method: &str, path: &str, host: Option<&str>, base: &str) -> Operation {
        Operation {
            method: method.into(),
            path: path.into(),
            servers: vec![ServerMatch {
                host: host.map(str::to_owned),
                base_path: base.into(),
            }],
            ..Operation::default()
        }
    }

    fn segs(path: &str) -> Vec<Cow<'_, str>> {
        normalize(path).unwrap()
    }

    #[test]
    fn normalisation() {
        assert_eq!(segs("//pets///1/"), vec!["pets", "1"]);
        assert_eq!(segs("/a/./b/../c"), vec!["a", "c"]);
        assert_eq!(segs("/pets/caf%C3%A9"), vec!["pets", "café"]);
        assert_eq!(normalize("/../etc"), Err(PathError::AboveRoot));
        assert_eq!(
            normalize("/pets/%2e%2e/admin"),
            Err(PathError::EncodedTraversal)
        );
        assert_eq!(
            normalize("/pets/.%2E/admin"),
            Err(PathError::EncodedTraversal)
        );
        assert_eq!(normalize("/pets/a%2fb"), Err(PathError::EncodedTraversal));
        assert_eq!(normalize("/pets/%00"), Err(PathError::EncodedTraversal));
        assert_eq!(normalize("/pets/%ff"), Err(PathError::InvalidEncoding));
    }

    #[test]
    fn static_beats_param_and_methods_are_checked() {
        let router = Router::new(&[
            op("GET", "/pets/{id}", None, ""),
            op("GET", "/pets/mine", None, ""),
            op("DELETE", "/pets/{petId}", None, ""),
        ]);
        assert_eq!(
            router.lookup(&Method::GET, "x", &segs("/pets/7")),
            Lookup::Found(0, vec![("id".into(), "7".into())])
        );
        assert_eq!(
            router.lookup(&Method::GET, "x", &segs("/pets/mine/")),
            Lookup::Found(1, vec![])
        );
        assert_eq!(
            router.lookup(&Method::DELETE, "x", &segs("/pets/7")),
            Lookup::Found(2, vec![("petId".into(), "7".into())])
        );
        assert_eq!(
            router.lookup(&Method::HEAD, "x", &segs("/pets/7")),
            Lookup::Found(0, vec![("id".into(), "7".into())])
        );
        assert_eq!(
            router.lookup(&Method::POST, "x", &segs("/pets/7")),
            Lookup::MethodNotAllowed(vec![Method::GET, Method::DELETE, Method::HEAD])
        );
        assert_eq!(
            router.lookup(&Method::GET, "x", &segs("/pets")),
            Lookup::NotFound
        );
        assert_eq!(
            router.lookup(&Method::GET, "x", &segs("/pets/1/2")),
            Lookup::NotFound
        );
    }

    #[test]
    fn hosts_and_base_paths() {
        let router = Router::new(&[
            op("GET", "/pets", Some("api.example.com"), "/v1"),
            op("GET", "/pets", Some("*.example.org"), "/v1"),
            op("GET", "/pets", None, "/v2"),
        ]);
        assert_eq!(
            router.lookup(&Method::GET, "API.example.com", &segs("/v1/pets")),
            Lookup::Found(0, vec![])
        );
        assert_eq!(
            router.lookup(&Method::GET, "eu.example.org", &segs("/v1/pets")),
            Lookup::Found(1, vec![])
        );
        assert_eq!(
            router.lookup(&Method::GET, "other.test", &segs("/v1/pets")),
            Lookup::NotFound
        );
        assert_eq!(
            router.lookup(&Method::GET, "other.test", &segs("/v2/pets")),
            Lookup::Found(2, vec![])
        );
        assert_eq!(
            router.lookup(&Method::GET, "api.example.com", &segs("/pets")),
            Lookup::NotFound
        );
    }
}

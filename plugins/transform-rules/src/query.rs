//! Query rules: the query string of a request target (`:path`) edited with the same semantics
//! as headers (names compared after decoding, case-sensitively).
//!
//! Parameters no rule touches keep their exact original spelling; new or changed ones are
//! written `application/x-www-form-urlencoded` (`+` for space, `%XX` otherwise). The path
//! itself is left alone (the upstream path comes from the dispatcher's configuration), and a
//! target whose query does not change is returned as `None`, so the plugin leaves `:path` as it
//! was.

use crate::config::{Action, QueryRule};
use crate::template::{RequestData, Template};
use std::borrow::Cow;

/// One parameter of a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Param {
    /// The original `name=value` text, while no rule has changed the parameter.
    raw: Option<String>,
    /// The decoded name.
    name: String,
    /// The decoded value; `None` for a bare `name` without `=`.
    value: Option<String>,
}

impl Param {
    fn new(name: &str, value: String) -> Param {
        Param {
            raw: None,
            name: name.to_string(),
            value: Some(value),
        }
    }

    fn write(&self, out: &mut String) {
        match &self.raw {
            Some(raw) => out.push_str(raw),
            None => {
                out.extend(form_urlencoded::byte_serialize(self.name.as_bytes()));
                if let Some(value) = &self.value {
                    out.push('=');
                    out.extend(form_urlencoded::byte_serialize(value.as_bytes()));
                }
            }
        }
    }
}

/// The new request target when `rules` change its query string, else `None`.
pub fn apply(target: &str, rules: &[QueryRule], request: &RequestData) -> Option<String> {
    if rules.is_empty() {
        return None;
    }
    let (before_fragment, fragment) = match target.split_once('#') {
        Some((t, f)) => (t, Some(f)),
        None => (target, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, q),
        None => (before_fragment, ""),
    };
    let mut params = parse(query);
    let mut changed = false;
    for rule in rules {
        changed |= apply_rule(&mut params, rule, request);
    }
    if !changed {
        return None;
    }
    let mut out = String::from(path);
    for (i, param) in params.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        param.write(&mut out);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    Some(out)
}

/// Splits a query string into parameters; empty segments (`a=1&&b=2`) are dropped.
fn parse(query: &str) -> Vec<Param> {
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (name, value) = form_urlencoded::parse(segment.as_bytes())
                .next()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .unwrap_or_default();
            Param {
                raw: Some(segment.to_string()),
                name,
                value: segment.contains('=').then_some(value),
            }
        })
        .collect()
}

fn apply_rule(params: &mut Vec<Param>, rule: &QueryRule, request: &RequestData) -> bool {
    let name = rule.key.as_str();
    let first = params.iter().position(|p| p.name == name);
    match &rule.action {
        Action::Remove => {
            let before = params.len();
            params.retain(|p| p.name != name);
            params.len() != before
        }
        Action::Rename(to) => {
            if first.is_none() || to == name {
                return false;
            }
            params.retain(|p| p.name != *to);
            for param in params.iter_mut().filter(|p| p.name == name) {
                param.name = to.clone();
                param.raw = None;
            }
            true
        }
        Action::Replace(values) if first.is_some() => replace(params, name, values, request),
        Action::Replace(_) => false,
        Action::Set(values) => replace(params, name, values, request),
        Action::Add(values) if first.is_none() => append(params, name, values, request),
        Action::Add(_) => false,
        Action::Append(values) => append(params, name, values, request),
    }
}

fn render(values: &[Template], request: &RequestData) -> Option<Vec<String>> {
    values
        .iter()
        .map(|t| t.render(request).map(Cow::into_owned))
        .collect()
}

/// The values in place of the first occurrence (at the end when there is none).
fn replace(
    params: &mut Vec<Param>,
    name: &str,
    values: &[Template],
    request: &RequestData,
) -> bool {
    let Some(values) = render(values, request) else {
        return false;
    };
    let at = params
        .iter()
        .position(|p| p.name == name)
        .unwrap_or(params.len());
    params.retain(|p| p.name != name);
    let at = at.min(params.len());
    params.splice(at..at, values.into_iter().map(|v| Param::new(name, v)));
    true
}

fn append(params: &mut Vec<Param>, name: &str, values: &[Template], request: &RequestData) -> bool {
    let Some(values) = render(values, request) else {
        return false;
    };
    params.extend(values.into_iter().map(|v| Param::new(name, v)));
    true
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use crate::config::{Config, Plan, Target};
    use serde_json::{Value, json};

    fn run(config: Value, target: &str) -> Option<String> {
        let config: Config = serde_json::from_value(config).unwrap();
        let plan = Plan::new(&config, Target::Request).unwrap();
        let request = RequestData {
            headers: vec![(String::from("x-tenant"), b"acme corp".to_vec())],
            query: barbacane_sdk::http::query_pairs(target),
            consumer: None,
        };
        apply(target, &plan.query, &request)
    }

    #[test]
    fn kong_semantics() {
        let out = run(
            json!({
                "remove": {"querystring": ["debug"]},
                "rename": {"querystring": {"q": "query", "none": "x"}},
                "replace": {"querystring": {"page": "1", "absent": "A"}},
                "set": {"querystring": {"v": "2"}},
                "add": {"querystring": {"page": "no", "tenant": "$(headers.x-tenant)"}},
                "append": {"querystring": {"tag": ["b", "c&d"]}}
            }),
            "/items?debug=1&q=caf%C3%A9&page=7&tag=a&query=old&flag&debug",
        );
        assert_eq!(
            out.as_deref(),
            Some("/items?query=caf%C3%A9&page=1&tag=a&flag&v=2&tenant=acme+corp&tag=b&tag=c%26d")
        );
    }

    #[test]
    fn untouched_parameters_keep_their_spelling() {
        assert_eq!(
            run(json!({"add": {"querystring": {"n": "1"}}}), "/p?a=%20x+y&b").as_deref(),
            Some("/p?a=%20x+y&b&n=1")
        );
        assert_eq!(
            run(json!({"add": {"querystring": {"n": "1"}}}), "/p").as_deref(),
            Some("/p?n=1")
        );
        assert_eq!(
            run(json!({"remove": {"querystring": ["a"]}}), "/p?a=1").as_deref(),
            Some("/p")
        );
        // Nothing changed: no new target.
        assert_eq!(
            run(json!({"remove": {"querystring": ["z"]}}), "/p?a=1"),
            None
        );
        assert_eq!(
            run(json!({"add": {"querystring": {"a": "2"}}}), "/p?a=1"),
            None
        );
    }

    #[test]
    fn set_replaces_in_place_and_missing_templates_skip() {
        assert_eq!(
            run(
                json!({"set": {"querystring": {"a": ["x", "y"]}}}),
                "/p?b=1&a=1&c&a=2"
            )
            .as_deref(),
            Some("/p?b=1&a=x&a=y&c")
        );
        assert_eq!(
            run(
                json!({"set": {"querystring": {"a": "$(headers.x-none)"}}}),
                "/p?a=1"
            ),
            None
        );
        // Odd input parses without trouble.
        assert_eq!(
            run(
                json!({"add": {"querystring": {"n": "1"}}}),
                "/p?%zz=%&&=x#frag"
            )
            .as_deref(),
            Some("/p?%zz=%&=x&n=1#frag")
        );
    }
}

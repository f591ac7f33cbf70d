//! Header rules on a header list (lowercase names, raw values, repeats kept in order), with
//! Kong's semantics: `remove` drops every value; `rename` moves the values to the new name,
//! replacing any there; `replace` only touches a present header; `set` replaces or adds; `add`
//! only adds an absent header; `append` adds values after the present ones.
//!
//! A value whose template has no value, or renders to something that is not valid header text
//! (a decoded query parameter holding CR/LF), skips its rule.

use crate::config::{Action, HeaderRule};
use crate::names::is_header_value;
use crate::template::{RequestData, Template};
use smallvec::SmallVec;
use std::borrow::Cow;

/// A header list as the Proxy-Wasm map holds it.
pub type Headers = Vec<(String, Vec<u8>)>;

/// A header list the rules edit: a plain [`Headers`] list, or the stream's own map edited in
/// place through the host ([`crate::live::StreamHeaders`]), so that a plugin does not copy the
/// whole map into the module and back for a few edits. Names compare without regard to case;
/// [`push`](HeaderList::push) adds after every present header.
pub trait HeaderList {
    /// Whether `name` is present.
    fn contains(&self, name: &str) -> bool;
    /// Every value of `name`, in order.
    fn values(&self, name: &str) -> Vec<Vec<u8>>;
    /// Removes every value of `name`.
    fn remove(&mut self, name: &str);
    /// Adds `name: value` at the end.
    fn push(&mut self, name: &str, value: &[u8]);
    /// Makes `value` the only value of `name` (added at the end when absent; where a present
    /// one stays is the list's choice).
    fn set(&mut self, name: &str, value: &[u8]) {
        self.remove(name);
        self.push(name, value);
    }
}

impl HeaderList for Headers {
    fn contains(&self, name: &str) -> bool {
        self.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    fn values(&self, name: &str) -> Vec<Vec<u8>> {
        self.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn remove(&mut self, name: &str) {
        self.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    fn push(&mut self, name: &str, value: &[u8]) {
        Vec::push(self, (name.to_string(), value.to_vec()));
    }
}

/// Applies `rules` in order.
pub fn apply(headers: &mut impl HeaderList, rules: &[HeaderRule], request: &RequestData) {
    for rule in rules {
        apply_rule(headers, rule, request);
    }
}

fn apply_rule(headers: &mut impl HeaderList, rule: &HeaderRule, request: &RequestData) {
    let name = rule.key.as_str();
    match &rule.action {
        Action::Remove => headers.remove(name),
        Action::Rename(to) => {
            if to == name {
                return;
            }
            // An absent header has no values: one read of the map, not a lookup first.
            let values = headers.values(name);
            if values.is_empty() {
                return;
            }
            headers.remove(name);
            put(headers, to, &values);
        }
        Action::Replace(values) => {
            if headers.contains(name) {
                replace(headers, name, values, request);
            }
        }
        Action::Set(values) => replace(headers, name, values, request),
        Action::Add(values) => {
            if !headers.contains(name) {
                append(headers, name, values, request);
            }
        }
        Action::Append(values) => append(headers, name, values, request),
    }
}

/// The rendered values, or `None` when one has no value or is not valid header text. Inline for
/// one value, which nearly every rule has: no allocation per rule and request.
fn render<'a>(values: &'a [Template], request: &RequestData) -> Option<Rendered<'a>> {
    values
        .iter()
        .map(|t| {
            let value = match t.render(request)? {
                Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            };
            is_header_value(&value).then_some(value)
        })
        .collect()
}

/// A rule's rendered values.
type Rendered<'a> = SmallVec<[Cow<'a, [u8]>; 1]>;

/// Makes `values` the values of `name`, in order: a single value (the usual case) in one edit.
fn put(headers: &mut impl HeaderList, name: &str, values: &[impl AsRef<[u8]>]) {
    if let [value] = values {
        return headers.set(name, value.as_ref());
    }
    headers.remove(name);
    for value in values {
        headers.push(name, value.as_ref());
    }
}

fn replace(headers: &mut impl HeaderList, name: &str, values: &[Template], request: &RequestData) {
    if let Some(values) = render(values, request) {
        put(headers, name, &values);
    }
}

fn append(headers: &mut impl HeaderList, name: &str, values: &[Template], request: &RequestData) {
    for value in render(values, request).unwrap_or_default() {
        headers.push(name, &value);
    }
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

    fn run(config: Value, headers: &[(&str, &str)]) -> Vec<(String, String)> {
        let config: Config = serde_json::from_value(config).unwrap();
        let plan = Plan::new(&config, Target::Request).unwrap();
        let mut list: Headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        let request = RequestData {
            headers: list.clone(),
            query: vec![(String::from("evil"), String::from("a\r\nx-injected: 1"))],
            consumer: None,
        };
        apply(&mut list, &plan.headers, &request);
        list.into_iter()
            .map(|(n, v)| (n, String::from_utf8(v).unwrap()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kong_semantics() {
        let out = run(
            json!({
                "remove": {"headers": ["x-secret"]},
                "rename": {"headers": {"x-old": "x-new", "x-gone": "x-nothing"}},
                "replace": {"headers": {"x-present": "R", "x-absent": "R"}},
                "set": {"headers": {"x-forced": ["1", "2"]}},
                "add": {"headers": {"x-present": "no", "x-added": "$(headers.x-present)"}},
                "append": {"headers": {"x-multi": "b"}}
            }),
            &[
                (":path", "/"),
                ("x-secret", "s"),
                ("x-secret", "t"),
                ("x-old", "o1"),
                ("x-new", "overwritten"),
                ("x-old", "o2"),
                ("x-present", "p"),
                ("x-multi", "a"),
            ],
        );
        assert_eq!(
            out,
            pairs(&[
                (":path", "/"),
                ("x-multi", "a"),
                ("x-new", "o1"),
                ("x-new", "o2"),
                ("x-present", "R"),
                ("x-forced", "1"),
                ("x-forced", "2"),
                // Templates read the request as it arrived, before this plugin's changes.
                ("x-added", "p"),
                ("x-multi", "b"),
            ])
        );
    }

    #[test]
    fn unusable_values_skip_the_rule() {
        let out = run(
            json!({"add": {"headers": {"x-q": "$(query.evil)", "x-m": "$(query.missing)"}}}),
            &[],
        );
        assert_eq!(out, vec![]);
        let out = run(
            json!({"set": {"headers": {"x-a": ["ok", "$(query.evil)"]}}}),
            &[("x-a", "kept")],
        );
        assert_eq!(out, pairs(&[("x-a", "kept")]));
    }
}

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

/// A header list as the Proxy-Wasm map holds it.
pub type Headers = Vec<(String, Vec<u8>)>;

/// Applies `rules` in order; whether the list changed.
pub fn apply(headers: &mut Headers, rules: &[HeaderRule], request: &RequestData) -> bool {
    let mut changed = false;
    for rule in rules {
        changed |= apply_rule(headers, rule, request);
    }
    changed
}

fn apply_rule(headers: &mut Headers, rule: &HeaderRule, request: &RequestData) -> bool {
    let name = rule.key.as_str();
    let present = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    match &rule.action {
        Action::Remove => remove(headers, name),
        Action::Rename(to) => {
            if !present || to == name {
                return false;
            }
            let values: Vec<Vec<u8>> = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .collect();
            remove(headers, name);
            remove(headers, to);
            headers.extend(values.into_iter().map(|v| (to.clone(), v)));
            true
        }
        Action::Replace(values) if present => replace(headers, name, values, request),
        Action::Replace(_) => false,
        Action::Set(values) => replace(headers, name, values, request),
        Action::Add(values) if !present => append(headers, name, values, request),
        Action::Add(_) => false,
        Action::Append(values) => append(headers, name, values, request),
    }
}

fn remove(headers: &mut Headers, name: &str) -> bool {
    let before = headers.len();
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.len() != before
}

/// The rendered values, or `None` when one has no value or is not valid header text.
fn render(values: &[Template], request: &RequestData) -> Option<Vec<Vec<u8>>> {
    values
        .iter()
        .map(|t| {
            let value = t.render(request)?.into_bytes();
            is_header_value(&value).then_some(value)
        })
        .collect()
}

fn replace(headers: &mut Headers, name: &str, values: &[Template], request: &RequestData) -> bool {
    let Some(values) = render(values, request) else {
        return false;
    };
    remove(headers, name);
    headers.extend(values.into_iter().map(|v| (name.to_string(), v)));
    true
}

fn append(headers: &mut Headers, name: &str, values: &[Template], request: &RequestData) -> bool {
    let Some(values) = render(values, request) else {
        return false;
    };
    headers.extend(values.into_iter().map(|v| (name.to_string(), v)));
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

    #[test]
    fn reports_whether_anything_changed() {
        let config: Config =
            serde_json::from_value(json!({"remove": {"headers": ["x-a"]}})).unwrap();
        let plan = Plan::new(&config, Target::Request).unwrap();
        let mut headers: Headers = vec![(String::from("x-b"), b"1".to_vec())];
        assert!(!apply(&mut headers, &plan.headers, &RequestData::default()));
        headers.push((String::from("x-a"), b"1".to_vec()));
        assert!(apply(&mut headers, &plan.headers, &RequestData::default()));
    }
}

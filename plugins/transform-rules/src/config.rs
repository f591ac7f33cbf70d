//! The transformers' configuration, as written in the spec, and the [`Plan`] it compiles to.
//!
//! Kong's shape: one section per operation (`remove`, `rename`, `replace`, `set`, `add`,
//! `append`), each with `headers`, `querystring` (requests only) and `body` (JSON, top-level
//! or dotted-path fields). Names are lists for `remove`, `{old: new}` maps for `rename`, and
//! `{name: value}` maps for the others; header and query values are strings (numbers and
//! booleans are written as text) or lists of them, body values any JSON. Every string value may
//! hold [templates](crate::template).
//!
//! Compiling checks everything that can be checked before a request arrives and names the
//! offending field with a JSON pointer: header names ([`crate::names`]), templates, body paths,
//! query strings on a response.

use crate::body::{JsonTemplate, Path};
use crate::names;
use crate::template::Template;
use barbacane_sdk::config::ConfigError;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The largest body the plugins parse by default (1 MiB); larger bodies pass unchanged.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The largest `max_body_bytes` allowed: a parsed JSON document takes several times its size
/// in memory, and a plugin VM has 64 MiB.
pub const MAX_BODY_BYTES_LIMIT: usize = 2 * 1024 * 1024;

/// The configuration as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Names to remove.
    #[serde(default)]
    pub remove: Section<Vec<String>>,
    /// `{old: new}` names to rename.
    #[serde(default)]
    pub rename: Section<Map<String, Value>>,
    /// Values to replace, only where the name is present.
    #[serde(default)]
    pub replace: Section<Map<String, Value>>,
    /// Values to set, replacing any present.
    #[serde(default)]
    pub set: Section<Map<String, Value>>,
    /// Values to add, only where the name is absent.
    #[serde(default)]
    pub add: Section<Map<String, Value>>,
    /// Values to append to those present.
    #[serde(default)]
    pub append: Section<Map<String, Value>>,
    /// The largest body parsed as JSON; larger ones pass unchanged.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// One operation's rules for each part of the message.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section<V> {
    /// Header rules.
    #[serde(default)]
    pub headers: V,
    /// Query-string rules (requests only).
    #[serde(default)]
    pub querystring: V,
    /// JSON body rules.
    #[serde(default)]
    pub body: V,
}

/// Which message the plugin transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The request: headers, query string, body.
    Request,
    /// The response: headers, body.
    Response,
}

/// What a rule does to the name (or path) it is keyed by.
#[derive(Debug, Clone, PartialEq)]
pub enum Action<K, V> {
    /// Remove every value.
    Remove,
    /// Move the values to another name, replacing the values there.
    Rename(K),
    /// Replace the values, only when the name is present.
    Replace(V),
    /// Replace the values, or add them when the name is absent.
    Set(V),
    /// Add the values, only when the name is absent.
    Add(V),
    /// Add the values after those present.
    Append(V),
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule<K, V> {
    /// The header name (lowercase), query parameter name or body path it applies to.
    pub key: K,
    /// What it does.
    pub action: Action<K, V>,
}

/// A header rule: values are templates.
pub type HeaderRule = Rule<String, Vec<Template>>;
/// A query rule: values are templates.
pub type QueryRule = Rule<String, Vec<Template>>;
/// A body rule: a dotted path and a JSON value whose strings are templates.
pub type BodyRule = Rule<Path, JsonTemplate>;

/// The configuration checked and compiled, rules in the order they run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Header rules.
    pub headers: Vec<HeaderRule>,
    /// Query rules.
    pub query: Vec<QueryRule>,
    /// Body rules.
    pub body: Vec<BodyRule>,
    /// The largest body parsed.
    pub max_body_bytes: usize,
}

/// The sections in the order their rules run.
const ORDER: [&str; 6] = ["remove", "rename", "replace", "set", "add", "append"];

impl Plan {
    /// Checks `config` for `target` and compiles it.
    pub fn new(config: &Config, target: Target) -> Result<Plan, ConfigError> {
        if config.max_body_bytes == 0 || config.max_body_bytes > MAX_BODY_BYTES_LIMIT {
            return Err(error(
                String::from("/max_body_bytes"),
                format!("must be between 1 and {MAX_BODY_BYTES_LIMIT}"),
            ));
        }
        let mut plan = Plan {
            max_body_bytes: config.max_body_bytes,
            ..Plan::default()
        };
        for section in ORDER {
            plan.compile_section(config, section, target)?;
        }
        Ok(plan)
    }

    /// Whether any rule reads the request (so the plugin must keep it for later phases).
    pub fn has_templates(&self) -> bool {
        let values = |rules: &[Rule<String, Vec<Template>>]| {
            rules
                .iter()
                .any(|r| values_of(&r.action).is_some_and(|v| v.iter().any(|t| !t.is_literal())))
        };
        values(&self.headers)
            || values(&self.query)
            || self.body.iter().any(|r| match &r.action {
                Action::Replace(v) | Action::Set(v) | Action::Add(v) | Action::Append(v) => {
                    !v.is_literal()
                }
                Action::Remove | Action::Rename(_) => false,
            })
    }

    /// Whether any rule reads the consumer.
    pub fn reads_consumer(&self) -> bool {
        let values = |rules: &[Rule<String, Vec<Template>>]| {
            rules.iter().any(|r| {
                values_of(&r.action).is_some_and(|v| v.iter().any(Template::reads_consumer))
            })
        };
        values(&self.headers)
            || values(&self.query)
            || self.body.iter().any(|r| match &r.action {
                Action::Replace(v) | Action::Set(v) | Action::Add(v) | Action::Append(v) => {
                    v.reads_consumer()
                }
                Action::Remove | Action::Rename(_) => false,
            })
    }

    fn compile_section(
        &mut self,
        config: &Config,
        section: &'static str,
        target: Target,
    ) -> Result<(), ConfigError> {
        if section == "remove" {
            let remove = &config.remove;
            if target == Target::Response && !remove.querystring.is_empty() {
                return Err(no_query(section));
            }
            for (i, name) in remove.headers.iter().enumerate() {
                let key = names::header_name(name)
                    .map_err(|m| error(format!("/remove/headers/{i}"), m))?;
                self.headers.push(Rule {
                    key,
                    action: Action::Remove,
                });
            }
            for (i, name) in remove.querystring.iter().enumerate() {
                let key =
                    query_name(name).map_err(|m| error(format!("/remove/querystring/{i}"), m))?;
                self.query.push(Rule {
                    key,
                    action: Action::Remove,
                });
            }
            for (i, path) in remove.body.iter().enumerate() {
                let key = Path::parse(path).map_err(|m| error(format!("/remove/body/{i}"), m))?;
                self.body.push(Rule {
                    key,
                    action: Action::Remove,
                });
            }
            return Ok(());
        }
        let maps = match section {
            "rename" => &config.rename,
            "replace" => &config.replace,
            "set" => &config.set,
            "add" => &config.add,
            _ => &config.append,
        };
        if target == Target::Response && !maps.querystring.is_empty() {
            return Err(no_query(section));
        }
        for (name, value) in &maps.headers {
            let at = format!("/{section}/headers/{}", escape(name));
            let key = names::header_name(name).map_err(|m| error(at.clone(), m))?;
            let action = if section == "rename" {
                let to = value
                    .as_str()
                    .ok_or_else(|| error(at.clone(), String::from("expected the new name")))?;
                Action::Rename(names::header_name(to).map_err(|m| error(at.clone(), m))?)
            } else {
                action(section, header_values(value, &at)?)
            };
            self.headers.push(Rule { key, action });
        }
        for (name, value) in &maps.querystring {
            let at = format!("/{section}/querystring/{}", escape(name));
            let key = query_name(name).map_err(|m| error(at.clone(), m))?;
            let action = if section == "rename" {
                let to = value
                    .as_str()
                    .ok_or_else(|| error(at.clone(), String::from("expected the new name")))?;
                Action::Rename(query_name(to).map_err(|m| error(at.clone(), m))?)
            } else {
                action(section, text_values(value, &at)?)
            };
            self.query.push(Rule { key, action });
        }
        for (path, value) in &maps.body {
            let at = format!("/{section}/body/{}", escape(path));
            let key = Path::parse(path).map_err(|m| error(at.clone(), m))?;
            let action = if section == "rename" {
                let to = value
                    .as_str()
                    .ok_or_else(|| error(at.clone(), String::from("expected the new path")))?;
                Action::Rename(Path::parse(to).map_err(|m| error(at.clone(), m))?)
            } else {
                action(
                    section,
                    JsonTemplate::compile(value).map_err(|(p, m)| error(format!("{at}{p}"), m))?,
                )
            };
            self.body.push(Rule { key, action });
        }
        Ok(())
    }
}

/// The action of a value section.
fn action<K, V>(section: &str, values: V) -> Action<K, V> {
    match section {
        "replace" => Action::Replace(values),
        "set" => Action::Set(values),
        "add" => Action::Add(values),
        _ => Action::Append(values),
    }
}

/// The values an action carries, if any.
pub fn values_of<K, V>(action: &Action<K, V>) -> Option<&V> {
    match action {
        Action::Replace(v) | Action::Set(v) | Action::Add(v) | Action::Append(v) => Some(v),
        Action::Remove | Action::Rename(_) => None,
    }
}

/// A configuration compiled for one target, with what it needs from each request worked out
/// once (not on every request): the two transformer plugins' configured state.
#[derive(Debug)]
pub struct Rules {
    /// The rules.
    pub plan: Plan,
    /// Some value reads the request (kept until the body or the response needs it).
    pub templates: bool,
    /// Some value reads the consumer.
    pub consumer: bool,
}

impl Rules {
    /// Parses and checks the plugin configuration (JSON text) for `target`; errors carry a JSON
    /// pointer.
    pub fn from_json(bytes: Option<Vec<u8>>, target: Target) -> Result<Rules, ConfigError> {
        let config: Config = barbacane_sdk::config::parse(bytes)?;
        let plan = Plan::new(&config, target)?;
        Ok(Rules {
            templates: plan.has_templates(),
            consumer: plan.reads_consumer(),
            plan,
        })
    }
}

/// Header values: like [`text_values`], and literal parts must be valid header text.
fn header_values(value: &Value, at: &str) -> Result<Vec<Template>, ConfigError> {
    let templates = text_values(value, at)?;
    let texts: Vec<String> = scalar_texts(value);
    for (i, text) in texts.iter().enumerate() {
        if !names::is_header_value(text.as_bytes()) {
            let at = if value.is_array() {
                format!("{at}/{i}")
            } else {
                at.to_string()
            };
            return Err(error(
                at,
                String::from("header values cannot hold control characters"),
            ));
        }
    }
    Ok(templates)
}

/// A string, number or boolean, or a non-empty list of them, as templates.
fn text_values(value: &Value, at: &str) -> Result<Vec<Template>, ConfigError> {
    let expected = || {
        error(
            at.to_string(),
            String::from("expected a string or a non-empty list of strings"),
        )
    };
    let items: Vec<(String, &Value)> = match value {
        Value::Array(items) if items.is_empty() => return Err(expected()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{at}/{i}"), v))
            .collect(),
        other => vec![(at.to_string(), other)],
    };
    items
        .into_iter()
        .map(|(at, item)| {
            let text = scalar_text(item).ok_or_else(expected)?;
            Template::parse(&text).map_err(|m| error(at, m))
        })
        .collect()
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn scalar_texts(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(scalar_text).collect(),
        other => scalar_text(other).into_iter().collect(),
    }
}

/// A query parameter name: anything but empty.
fn query_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        Err(String::from("a query parameter name cannot be empty"))
    } else {
        Ok(name.to_string())
    }
}

fn no_query(section: &str) -> ConfigError {
    error(
        format!("/{section}/querystring"),
        String::from("a response has no query string"),
    )
}

fn error(pointer: String, message: String) -> ConfigError {
    ConfigError { pointer, message }
}

/// RFC 6901 escaping of one pointer segment.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use serde_json::json;

    fn plan(config: Value, target: Target) -> Result<Plan, ConfigError> {
        let config: Config = barbacane_sdk::config::parse(Some(config.to_string().into_bytes()))?;
        Plan::new(&config, target)
    }

    fn pointer(config: Value, target: Target) -> String {
        plan(config, target).unwrap_err().pointer
    }

    #[test]
    fn rules_run_in_kongs_order() {
        let p = plan(
            json!({
                "append": {"headers": {"x-a": "4"}},
                "add": {"headers": {"x-a": "3"}},
                "set": {"headers": {"x-a": "s"}},
                "replace": {"headers": {"x-a": "2"}},
                "rename": {"headers": {"x-old": "x-a"}},
                "remove": {"headers": ["X-A"]}
            }),
            Target::Request,
        )
        .unwrap();
        let kinds: Vec<&str> = p
            .headers
            .iter()
            .map(|r| match r.action {
                Action::Remove => "remove",
                Action::Rename(_) => "rename",
                Action::Replace(_) => "replace",
                Action::Set(_) => "set",
                Action::Add(_) => "add",
                Action::Append(_) => "append",
            })
            .collect();
        assert_eq!(
            kinds,
            ["remove", "rename", "replace", "set", "add", "append"]
        );
        assert_eq!(p.headers[0].key, "x-a");
        assert!(!p.has_templates());
        assert_eq!(p.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn values_may_be_scalars_or_lists() {
        let p = plan(
            json!({"add": {"headers": {"x-n": 2, "x-b": true, "x-l": ["a", "$(query.q)"]}}}),
            Target::Request,
        )
        .unwrap();
        assert_eq!(p.headers.len(), 3);
        assert!(p.has_templates());
        assert!(!p.reads_consumer());
        let p = plan(
            json!({"set": {"body": {"who": {"id": "$(consumer.id)"}}}}),
            Target::Response,
        )
        .unwrap();
        assert!(p.has_templates() && p.reads_consumer());
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let req = Target::Request;
        assert_eq!(
            pointer(json!({"remove": {"headers": ["x-a", ":path"]}}), req),
            "/remove/headers/1"
        );
        assert_eq!(
            pointer(json!({"add": {"headers": {":authority": "x"}}}), req),
            "/add/headers/:authority"
        );
        assert_eq!(
            pointer(json!({"set": {"headers": {"Connection": "close"}}}), req),
            "/set/headers/Connection"
        );
        assert_eq!(
            pointer(
                json!({"rename": {"headers": {"x-a": "transfer-encoding"}}}),
                req
            ),
            "/rename/headers/x-a"
        );
        assert_eq!(
            pointer(json!({"rename": {"headers": {"x-a": 1}}}), req),
            "/rename/headers/x-a"
        );
        assert_eq!(
            pointer(json!({"add": {"headers": {"x-a": []}}}), req),
            "/add/headers/x-a"
        );
        assert_eq!(
            pointer(json!({"add": {"headers": {"x-a": ["ok", {}]}}}), req),
            "/add/headers/x-a"
        );
        assert_eq!(
            pointer(json!({"add": {"headers": {"x-a": ["ok", "a\nb"]}}}), req),
            "/add/headers/x-a/1"
        );
        assert_eq!(
            pointer(json!({"append": {"querystring": {"q": "$(nope)"}}}), req),
            "/append/querystring/q"
        );
        assert_eq!(
            pointer(json!({"remove": {"querystring": [""]}}), req),
            "/remove/querystring/0"
        );
        assert_eq!(
            pointer(json!({"remove": {"body": ["a..b"]}}), req),
            "/remove/body/0"
        );
        assert_eq!(
            pointer(json!({"add": {"body": {"a/b": 1, "": 2}}}), req),
            "/add/body/"
        );
        assert_eq!(
            pointer(
                json!({"add": {"body": {"meta": {"tags": ["$(x.y)"]}}}}),
                req
            ),
            "/add/body/meta/tags/0"
        );
        assert_eq!(
            pointer(
                json!({"add": {"querystring": {"q": "1"}}}),
                Target::Response
            ),
            "/add/querystring"
        );
        assert_eq!(
            pointer(json!({"remove": {"querystring": ["q"]}}), Target::Response),
            "/remove/querystring"
        );
        assert_eq!(
            pointer(json!({"max_body_bytes": 0}), req),
            "/max_body_bytes"
        );
        assert_eq!(
            pointer(json!({"max_body_bytes": 3_000_000}), req),
            "/max_body_bytes"
        );
        for unknown in [json!({"add": {"cookies": {}}}), json!({"delete": {}})] {
            let e = plan(unknown, req).unwrap_err();
            assert!(e.message.starts_with("unknown field"), "{e}");
        }
    }

    #[test]
    fn pointers_escape_keys() {
        assert_eq!(escape("a/b~c"), "a~1b~0c");
        assert_eq!(
            pointer(json!({"add": {"headers": {"x/y": "1"}}}), Target::Request),
            "/add/headers/x~1y"
        );
    }
}

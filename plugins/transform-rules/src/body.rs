//! Body rules: edits of a JSON object body at dotted paths (`user.address.city`).
//!
//! Only a body whose content type is JSON (`application/json`, `application/*+json`) and whose
//! root is an object is edited; anything else — another type, malformed JSON, an array or a
//! scalar at the root — passes unchanged, as in Kong. An edited body is serialised compactly,
//! keys in their original order (new keys last).
//!
//! A path names nested object members; a segment cannot address array items, and a key that
//! itself contains a dot cannot be addressed. `add`, `set` and `append` create missing
//! intermediate objects; a rule whose path crosses a value that is not an object is skipped.

use crate::config::{Action, BodyRule};
use crate::template::{RequestData, Template};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// A dotted path into a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(Vec<String>);

impl Path {
    /// Parses `a.b.c`; every segment must be non-empty.
    pub fn parse(text: &str) -> Result<Path, String> {
        let segments: Vec<String> = text.split('.').map(String::from).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!(
                "'{text}' is not a body path such as 'user.name' (empty segment)"
            ));
        }
        Ok(Path(segments))
    }

    /// The segments.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

/// A configured body value: JSON whose strings may be templates.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    /// A value without templates, used as is.
    Literal(Value),
    /// A string with templates.
    String(Template),
    /// An array with templates somewhere inside.
    Array(Vec<JsonTemplate>),
    /// An object with templates somewhere inside.
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Compiles a configured value; an error carries the pointer below the value and why.
    pub fn compile(value: &Value) -> Result<JsonTemplate, (String, String)> {
        let compiled = match value {
            Value::String(text) => {
                let template = Template::parse(text).map_err(|m| (String::new(), m))?;
                if template.is_literal() {
                    // `\$(` escapes are resolved even in a literal.
                    JsonTemplate::Literal(Value::String(
                        template
                            .render(&RequestData::default())
                            .map(Cow::into_owned)
                            .unwrap_or_default(),
                    ))
                } else {
                    JsonTemplate::String(template)
                }
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(Self::compile(item).map_err(|(p, m)| (format!("/{i}{p}"), m))?);
                }
                JsonTemplate::Array(out)
            }
            Value::Object(members) => {
                let mut out = Vec::with_capacity(members.len());
                for (key, item) in members {
                    let compiled = Self::compile(item)
                        .map_err(|(p, m)| (format!("/{}{p}", crate::config::escape(key)), m))?;
                    out.push((key.clone(), compiled));
                }
                JsonTemplate::Object(out)
            }
            other => JsonTemplate::Literal(other.clone()),
        };
        Ok(compiled.simplified())
    }

    /// Arrays and objects without templates inside become literals.
    fn simplified(self) -> JsonTemplate {
        match self {
            JsonTemplate::Array(items) if items.iter().all(JsonTemplate::is_literal) => {
                JsonTemplate::Literal(Value::Array(
                    items
                        .into_iter()
                        .filter_map(JsonTemplate::into_literal)
                        .collect(),
                ))
            }
            JsonTemplate::Object(members) if members.iter().all(|(_, v)| v.is_literal()) => {
                JsonTemplate::Literal(Value::Object(
                    members
                        .into_iter()
                        .filter_map(|(k, v)| Some((k, v.into_literal()?)))
                        .collect(),
                ))
            }
            other => other,
        }
    }

    fn into_literal(self) -> Option<Value> {
        match self {
            JsonTemplate::Literal(value) => Some(value),
            _ => None,
        }
    }

    /// Whether the value reads nothing from the request.
    pub fn is_literal(&self) -> bool {
        matches!(self, JsonTemplate::Literal(_))
    }

    /// Whether the value reads the consumer.
    pub fn reads_consumer(&self) -> bool {
        match self {
            JsonTemplate::Literal(_) => false,
            JsonTemplate::String(t) => t.reads_consumer(),
            JsonTemplate::Array(items) => items.iter().any(JsonTemplate::reads_consumer),
            JsonTemplate::Object(members) => members.iter().any(|(_, v)| v.reads_consumer()),
        }
    }

    /// The value for `request`; `None` when a template inside has no value.
    pub fn render(&self, request: &RequestData) -> Option<Value> {
        Some(match self {
            JsonTemplate::Literal(value) => value.clone(),
            JsonTemplate::String(t) => Value::String(t.render(request)?.into_owned()),
            JsonTemplate::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.render(request))
                    .collect::<Option<_>>()?,
            ),
            JsonTemplate::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| Some((k.clone(), v.render(request)?)))
                    .collect::<Option<Map<_, _>>>()?,
            ),
        })
    }
}

/// Whether a `content-type` is JSON: `application/json` or `application/<anything>+json`,
/// parameters ignored, any case.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

/// Applies `rules` to a JSON body; the new body when a rule changed it, `None` when the body
/// stays as it is (nothing applied, not JSON, not an object at the root).
pub fn apply(body: &[u8], rules: &[BodyRule], request: &RequestData) -> Option<Vec<u8>> {
    if rules.is_empty() {
        return None;
    }
    let Ok(Value::Object(mut doc)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let mut changed = false;
    for rule in rules {
        changed |= apply_rule(&mut doc, rule, request);
    }
    if !changed {
        return None;
    }
    serde_json::to_vec(&Value::Object(doc)).ok()
}

/// One rule on the document; whether it changed it.
fn apply_rule(doc: &mut Map<String, Value>, rule: &BodyRule, request: &RequestData) -> bool {
    let path = rule.key.segments();
    let Some((leaf, parents)) = path.split_last() else {
        return false;
    };
    match &rule.action {
        Action::Remove => {
            parent(doc, parents, false).is_some_and(|p| p.shift_remove(leaf).is_some())
        }
        Action::Rename(to) => {
            if to == &rule.key {
                return false;
            }
            let Some(value) = parent(doc, parents, false).and_then(|p| p.shift_remove(leaf)) else {
                return false;
            };
            let Some((to_leaf, to_parents)) = to.segments().split_last() else {
                return true;
            };
            // A target behind a non-object loses the value, as removing it would; the path
            // check at configuration time cannot see the body.
            if let Some(target) = parent(doc, to_parents, true) {
                target.insert(to_leaf.clone(), value);
            }
            true
        }
        Action::Replace(template) => {
            let Some(target) = parent(doc, parents, false).filter(|p| p.contains_key(leaf)) else {
                return false;
            };
            let Some(value) = template.render(request) else {
                return false;
            };
            target.insert(leaf.clone(), value);
            true
        }
        Action::Set(template) => {
            let Some(value) = template.render(request) else {
                return false;
            };
            let Some(target) = parent(doc, parents, true) else {
                return false;
            };
            target.insert(leaf.clone(), value);
            true
        }
        Action::Add(template) => {
            if parent(doc, parents, false).is_some_and(|p| p.contains_key(leaf)) {
                return false;
            }
            let Some(value) = template.render(request) else {
                return false;
            };
            let Some(target) = parent(doc, parents, true) else {
                return false;
            };
            target.insert(leaf.clone(), value);
            true
        }
        Action::Append(template) => {
            let Some(value) = template.render(request) else {
                return false;
            };
            let Some(target) = parent(doc, parents, true) else {
                return false;
            };
            // A list in the configuration appends each of its items.
            let items = match value {
                Value::Array(items) => items,
                one => vec![one],
            };
            let merged = match target.get_mut(leaf) {
                Some(Value::Array(existing)) => {
                    existing.extend(items);
                    return true;
                }
                Some(existing) => {
                    let mut merged = vec![existing.take()];
                    merged.extend(items);
                    merged
                }
                None => items,
            };
            target.insert(leaf.clone(), Value::Array(merged));
            true
        }
    }
}

/// The object at `parents` below `doc`; with `create`, missing objects are made on the way.
/// `None` when a value on the way is not an object (or is missing, without `create`).
fn parent<'a>(
    doc: &'a mut Map<String, Value>,
    parents: &[String],
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let mut current = doc;
    for segment in parents {
        if create && !current.contains_key(segment) {
            current.insert(segment.clone(), Value::Object(Map::new()));
        }
        current = current.get_mut(segment)?.as_object_mut()?;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use crate::config::{Config, Plan, Target};
    use serde_json::json;

    fn rules(config: Value) -> Vec<BodyRule> {
        let config: Config = serde_json::from_value(config).unwrap();
        Plan::new(&config, Target::Request).unwrap().body
    }

    fn run(config: Value, body: &str) -> Option<String> {
        let request = RequestData {
            headers: vec![(String::from("x-user"), b"alice".to_vec())],
            ..RequestData::default()
        };
        apply(body.as_bytes(), &rules(config), &request).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(is_json("application/vnd.api+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonp"));
        assert!(!is_json("text/json+x"));
        assert!(!is_json(""));
    }

    #[test]
    fn paths() {
        assert_eq!(Path::parse("a.b").unwrap().segments(), ["a", "b"]);
        assert!(Path::parse("").is_err());
        assert!(Path::parse("a.").is_err());
        assert!(Path::parse(".a").is_err());
    }

    #[test]
    fn kong_semantics_on_top_level_fields() {
        let body = r#"{"keep":1,"secret":"s","old":"o","present":"p","list":[1],"scalar":"x"}"#;
        let out = run(
            json!({
                "remove": {"body": ["secret", "absent"]},
                "rename": {"body": {"old": "new", "missing": "nope"}},
                "replace": {"body": {"present": "P", "absent": "A"}},
                "set": {"body": {"forced": {"a": [1, 2]}}},
                "add": {"body": {"present": "no", "added": true}},
                "append": {"body": {"list": 2, "scalar": ["y", "z"], "fresh": "f"}}
            }),
            body,
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"keep":1,"present":"P","list":[1,2],"scalar":["x","y","z"],"new":"o","forced":{"a":[1,2]},"added":true,"fresh":["f"]}"#
        );
    }

    #[test]
    fn dotted_paths() {
        let body = r#"{"user":{"name":"n","ssn":"1","tags":"t"},"n":5}"#;
        let out = run(
            json!({
                "remove": {"body": ["user.ssn", "n.x"]},
                "rename": {"body": {"user.name": "profile.display_name"}},
                "add": {"body": {"meta.source": "gateway", "n.bad": 1}},
                "set": {"body": {"meta.by": "$(headers.x-user)"}}
            }),
            body,
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"user":{"tags":"t"},"n":5,"profile":{"display_name":"n"},"meta":{"by":"alice","source":"gateway"}}"#
        );
    }

    #[test]
    fn bodies_that_are_not_json_objects_pass_unchanged() {
        let config = json!({"add": {"body": {"a": 1}}});
        assert_eq!(run(config.clone(), "not json"), None);
        assert_eq!(run(config.clone(), r#"{"a":"#), None);
        assert_eq!(run(config.clone(), "[1,2]"), None);
        assert_eq!(run(config.clone(), "42"), None);
        assert_eq!(run(config.clone(), ""), None);
        assert_eq!(run(config.clone(), "{}").as_deref(), Some(r#"{"a":1}"#));
        // Nothing to do: the body is left byte for byte.
        assert_eq!(run(config, r#"{ "a" : 0 }"#), None);
    }

    #[test]
    fn a_template_without_a_value_skips_the_rule() {
        let out = run(
            json!({"add": {"body": {"who": "$(headers.x-missing)", "user": "$(headers.x-user)"}}}),
            "{}",
        );
        assert_eq!(out.as_deref(), Some(r#"{"user":"alice"}"#));
        // Templates inside nested values too; `\$(` is literal.
        let out = run(
            json!({"add": {"body": {"o": {"l": ["$(headers.x-user)", 1]}, "lit": "\\$(x)"}}}),
            "{}",
        );
        assert_eq!(
            out.as_deref(),
            Some(r#"{"o":{"l":["alice",1]},"lit":"$(x)"}"#)
        );
    }

    #[test]
    fn deep_documents_do_not_overflow() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(run(json!({"add": {"body": {"b": 1}}}), &deep), None);
    }
}

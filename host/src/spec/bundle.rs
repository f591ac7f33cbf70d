//! Schema bundling: turns a schema that `$ref`s other schemas (in the same or other files, possibly
//! recursively) into one self-contained JSON Schema whose references all point into its own
//! definitions section, and converts OpenAPI 3.0's dialect (`nullable`) into plain JSON Schema.
//!
//! Bundling at compile time is what lets `serve` build validators with no file access and lets the
//! artifact carry each operation's schemas as plain JSON.

use super::{NodeRef, Sources};
use crate::diag::Diagnostic;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The JSON Schema dialect an OpenAPI version uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Dialect {
    /// OpenAPI 3.0: a draft-04 superset with `nullable`.
    OpenApi30,
    /// OpenAPI 3.1: JSON Schema 2020-12.
    #[default]
    OpenApi31,
}

impl Dialect {
    /// The keyword that holds bundled definitions in this dialect.
    fn definitions_keyword(self) -> &'static str {
        match self {
            Dialect::OpenApi30 => "definitions",
            Dialect::OpenApi31 => "$defs",
        }
    }
}

/// Keywords whose values are data, not subschemas: a `$ref` key inside them is not a reference.
const DATA_KEYWORDS: &[&str] = &["example", "examples", "enum", "const", "default"];

/// Bundles the schema at `root` into a self-contained schema.
pub fn bundle_schema(
    sources: &mut Sources,
    root: &NodeRef,
    dialect: Dialect,
) -> Result<Value, Diagnostic> {
    let mut bundler = Bundler {
        sources,
        dialect,
        names: HashMap::new(),
        definitions: Map::new(),
    };
    let value = bundler.sources.get(root).cloned().unwrap_or(Value::Null);
    let body = bundler.rewrite(value, root)?;
    if bundler.definitions.is_empty() {
        return Ok(body);
    }
    // Wrapping keeps the definitions out of a root that is itself a `$ref` (draft-04 ignores a
    // `$ref`'s siblings).
    let mut wrapper = Map::new();
    wrapper.insert(String::from("allOf"), Value::Array(vec![body]));
    wrapper.insert(
        dialect.definitions_keyword().to_string(),
        Value::Object(bundler.definitions),
    );
    Ok(Value::Object(wrapper))
}

struct Bundler<'a> {
    sources: &'a mut Sources,
    dialect: Dialect,
    /// Referenced node → its name in the definitions section.
    names: HashMap<NodeRef, String>,
    definitions: Map<String, Value>,
}

impl Bundler<'_> {
    /// Rewrites `value` (found at `at`) recursively.
    fn rewrite(&mut self, value: Value, at: &NodeRef) -> Result<Value, Diagnostic> {
        match value {
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                for (key, child) in map {
                    let child_at = at.child(&key);
                    let rewritten = if key == "$ref" {
                        match child.as_str() {
                            Some(reference) => self.reference(&child_at, reference)?,
                            None => child,
                        }
                    } else if DATA_KEYWORDS.contains(&key.as_str()) {
                        child
                    } else if key == "pattern"
                        && let Value::String(pattern) = &child
                    {
                        Value::String(escape_literal_braces(pattern))
                    } else {
                        self.rewrite(child, &child_at)?
                    };
                    out.insert(key, rewritten);
                }
                if self.dialect == Dialect::OpenApi30 {
                    apply_nullable(&mut out);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| self.rewrite(item, &at.child(&i.to_string())))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other),
        }
    }

    /// Makes sure the target of `reference` is in the definitions and returns the local `$ref`.
    fn reference(&mut self, at: &NodeRef, reference: &str) -> Result<Value, Diagnostic> {
        let target = self.sources.resolve_ref(at, reference)?;
        let name = match self.names.get(&target) {
            Some(name) => name.clone(),
            None => {
                let name = self.unique_name(&target);
                self.names.insert(target.clone(), name.clone());
                // Reserve the name before recursing so that recursive schemas terminate.
                self.definitions.insert(name.clone(), Value::Bool(true));
                let value = self.sources.get(&target).cloned().unwrap_or(Value::Null);
                let rewritten = self.rewrite(value, &target)?;
                self.definitions.insert(name.clone(), rewritten);
                name
            }
        };
        Ok(Value::String(format!(
            "#/{}/{}",
            self.dialect.definitions_keyword(),
            name
        )))
    }

    fn unique_name(&self, target: &NodeRef) -> String {
        let last = target
            .pointer
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("root");
        let base: String = last
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = base.clone();
        let mut n = 1;
        while self.definitions.contains_key(&name) {
            n += 1;
            name = format!("{base}_{n}");
        }
        name
    }
}

/// JSON Schema patterns are ECMA-262 regexes, where a `{` or `}` that cannot be part of a
/// `{n}`/`{n,}`/`{n,m}` quantifier is a literal (GUID patterns like `^{[0-9a-f]{8}…}$` rely on
/// it); Rust's regex engine rejects them, so they are escaped.
fn escape_literal_braces(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len());
    let mut in_class = false;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => {
                out.push(c);
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                }
                i += 2;
                continue;
            }
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '{' if !in_class => {
                let body: String = chars[i + 1..].iter().take_while(|&&c| c != '}').collect();
                let closed = chars.get(i + 1 + body.len()) == Some(&'}');
                if i > 0 && closed && is_quantifier(&body) {
                    out.push('{');
                    out.push_str(&body);
                    out.push('}');
                    i += body.chars().count() + 2;
                } else {
                    out.push_str("\\{");
                    i += 1;
                }
                continue;
            }
            '}' if !in_class => {
                out.push_str("\\}");
                i += 1;
                continue;
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out
}

fn is_quantifier(body: &str) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match body.split_once(',') {
        Some((min, max)) => !min.is_empty() && digits(min) && digits(max),
        None => !body.is_empty() && digits(body),
    }
}

/// OpenAPI 3.0 `nullable: true` → `type: [T, "null"]` (and `null` allowed in an `enum`).
fn apply_nullable(schema: &mut Map<String, Value>) {
    if schema.remove("nullable") != Some(Value::Bool(true)) {
        return;
    }
    if let Some(Value::String(t)) = schema.get("type").cloned() {
        schema.insert(
            String::from("type"),
            Value::Array(vec![Value::String(t), Value::String(String::from("null"))]),
        );
    }
    if let Some(Value::Array(values)) = schema.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    fn sources_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Sources, usize) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let mut f = std::fs::File::create(dir.path().join(name)).unwrap();
            f.write_all(text.as_bytes()).unwrap();
        }
        let mut sources = Sources::default();
        let root = sources.load(&dir.path().join(files[0].0)).unwrap();
        (dir, sources, root)
    }

    #[test]
    fn recursive_and_cross_file_refs_are_bundled() {
        let (_dir, mut sources, doc) = sources_with(&[
            (
                "api.yaml",
                "s:\n  $ref: '#/c/Node'\nc:\n  Node:\n    type: object\n    properties:\n      next: {$ref: '#/c/Node'}\n      tag: {$ref: 'other.yaml#/Tag'}\n",
            ),
            ("other.yaml", "Tag: {type: string, nullable: true}\n"),
        ]);
        let root = NodeRef {
            doc,
            pointer: String::from("/s"),
        };
        let schema = bundle_schema(&mut sources, &root, Dialect::OpenApi30).unwrap();
        assert_eq!(schema["allOf"][0], json!({"$ref": "#/definitions/Node"}));
        assert_eq!(
            schema["definitions"]["Node"]["properties"]["next"],
            json!({"$ref": "#/definitions/Node"})
        );
        assert_eq!(
            schema["definitions"]["Tag"],
            json!({"type": ["string", "null"]})
        );
        let validator = jsonschema::draft4::new(&schema).unwrap();
        assert!(validator.is_valid(&json!({"next": {"tag": null}, "tag": "x"})));
        assert!(!validator.is_valid(&json!({"next": {"tag": 3}})));
    }

    #[test]
    fn ecma_literal_braces_are_escaped_and_quantifiers_kept() {
        assert_eq!(
            escape_literal_braces("^{[0-9a-f]{4}(-?[0-9a-f]{4,}){7}}$"),
            "^\\{[0-9a-f]{4}(-?[0-9a-f]{4,}){7}\\}$"
        );
        assert_eq!(escape_literal_braces("a{,3}[{}]\\{"), "a\\{,3\\}[{}]\\{");
    }

    #[test]
    fn unresolved_refs_point_at_the_ref() {
        let (_dir, mut sources, doc) = sources_with(&[(
            "api.yaml",
            "s:\n  type: object\n  properties:\n    a: {$ref: '#/nope'}\n",
        )]);
        let root = NodeRef {
            doc,
            pointer: String::from("/s"),
        };
        let err = bundle_schema(&mut sources, &root, Dialect::OpenApi31).unwrap_err();
        assert_eq!(err.code, crate::diag::Code::E1010);
        assert_eq!((err.location.line, err.location.column), (4, 15));
    }
}

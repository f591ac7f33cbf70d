//! YAML (and therefore JSON) text → a `serde_json::Value` plus the source position of every node,
//! keyed by JSON pointer. Diagnostics later look positions up by the pointer of the node they blame.
//!
//! Built on saphyr-parser's event stream rather than a serde deserializer because serde loses
//! positions; plain scalars are typed with the YAML 1.2 core schema, which JSON also satisfies.

use saphyr_parser::{Event, Parser, ScalarStyle, Span, SpannedEventReceiver};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;

/// A parse failure with its 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What the parser said.
    pub message: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// A parsed document: its value and where each node starts.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The document as JSON.
    pub value: Value,
    /// JSON pointer → (1-based line, 1-based column) of the node's start.
    pub positions: HashMap<String, (usize, usize)>,
    /// JSON pointer of a mapping value → (line, column) of its key: where a person looks for
    /// "the operation `get`" or "the path `/pets`".
    pub key_positions: HashMap<String, (usize, usize)>,
}

/// Parses the first YAML document of `text`.
pub fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    let text = fold_surrogate_pairs(text);
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(&text);
    if let Err(e) = parser.load(&mut builder, false) {
        let m = e.marker();
        return Err(SyntaxError {
            message: e.info().to_string(),
            line: m.line(),
            column: m.col() + 1,
        });
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(Parsed {
        value: builder.root.unwrap_or(Value::Null),
        positions: builder.positions,
        key_positions: builder.key_positions,
    })
}

/// JSON writes characters outside the BMP as UTF-16 surrogate pairs (`\ud83d\ude00`; Python's
/// `json.dump` does by default); YAML escapes have no surrogates and reject them. In a JSON
/// document each pair becomes the equivalent YAML `\U0001f600`: columns after it on that line
/// shift left by two.
fn fold_surrogate_pairs(text: &str) -> std::borrow::Cow<'_, str> {
    let is_json = text.trim_start().starts_with(['{', '[']);
    if !is_json || !text.contains("\\u") {
        return std::borrow::Cow::Borrowed(text);
    }
    let hex4 = |s: &str| s.get(..4).and_then(|h| u32::from_str_radix(h, 16).ok());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let pair = rest
            .strip_prefix("\\u")
            .and_then(|r| Some((hex4(r)?, r.get(4..)?)))
            .filter(|(high, _)| (0xD800..0xDC00).contains(high))
            .and_then(|(high, r)| Some((high, hex4(r.strip_prefix("\\u")?)?)))
            .filter(|(_, low)| (0xDC00..0xE000).contains(low));
        match pair {
            Some((high, low)) => {
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                out.push_str(&format!("\\U{code:08x}"));
                rest = &rest[12..];
            }
            None => {
                // Copy the backslash and the character it escapes, so `\\u…` stays literal.
                let len = rest[1..].chars().next().map_or(1, |c| 1 + c.len_utf8());
                out.push_str(&rest[..len]);
                rest = &rest[len..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Appends one reference token to a JSON pointer, escaping `~` and `/` per RFC 6901.
pub fn pointer_push(pointer: &str, token: &str) -> String {
    let escaped = token.replace('~', "~0").replace('/', "~1");
    format!("{pointer}/{escaped}")
}

enum Frame {
    Seq {
        items: Vec<Value>,
        pointer: String,
        anchor: usize,
    },
    Map {
        map: Map<String, Value>,
        pointer: String,
        anchor: usize,
        pending_key: Option<String>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    positions: HashMap<String, (usize, usize)>,
    key_positions: HashMap<String, (usize, usize)>,
    anchors: HashMap<usize, Value>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn fail(&mut self, span: Span, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                message: message.into(),
                line: span.start.line(),
                column: span.start.col() + 1,
            });
        }
    }

    /// The pointer the next value will live at, or None when the next scalar is a mapping key.
    fn next_pointer(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { items, pointer, .. }) => {
                Some(pointer_push(pointer, &items.len().to_string()))
            }
            Some(Frame::Map {
                pending_key: Some(key),
                pointer,
                ..
            }) => Some(pointer_push(pointer, key)),
            Some(Frame::Map {
                pending_key: None, ..
            }) => None,
        }
    }

    fn add(&mut self, value: Value, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map {
                map, pending_key, ..
            }) => {
                if let Some(key) = pending_key.take() {
                    map.insert(key, value);
                }
            }
        }
    }

    fn start_node(&mut self, span: Span) -> Option<String> {
        match self.next_pointer() {
            Some(pointer) => {
                self.positions
                    .insert(pointer.clone(), (span.start.line(), span.start.col() + 1));
                Some(pointer)
            }
            None => {
                self.fail(span, "mapping keys must be plain strings");
                None
            }
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for Builder {
    fn on_event(&mut self, event: Event<'input>, span: Span) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                if let Some(Frame::Map {
                    map,
                    pointer,
                    pending_key: pending @ None,
                    ..
                }) = self.stack.last_mut()
                {
                    if map.contains_key(text.as_ref()) {
                        let message = format!("duplicate key '{text}'");
                        self.fail(span, message);
                    } else {
                        self.key_positions.insert(
                            pointer_push(pointer, &text),
                            (span.start.line(), span.start.col() + 1),
                        );
                        *pending = Some(text.into_owned());
                    }
                    return;
                }
                if self.start_node(span).is_some() {
                    let value = if style == ScalarStyle::Plain {
                        plain_scalar(&text)
                    } else {
                        Value::String(text.into_owned())
                    };
                    self.add(value, anchor);
                }
            }
            Event::SequenceStart(anchor, _) => {
                if let Some(pointer) = self.start_node(span) {
                    self.stack.push(Frame::Seq {
                        items: Vec::new(),
                        pointer,
                        anchor,
                    });
                }
            }
            Event::MappingStart(anchor, _) => {
                if let Some(pointer) = self.start_node(span) {
                    self.stack.push(Frame::Map {
                        map: Map::new(),
                        pointer,
                        anchor,
                        pending_key: None,
                    });
                }
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { items, anchor, .. }) => self.add(Value::Array(items), anchor),
                Some(Frame::Map { map, anchor, .. }) => self.add(Value::Object(map), anchor),
                None => self.fail(span, "unbalanced collection end"),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(value) => {
                    if self.start_node(span).is_some() {
                        self.add(value, 0);
                    }
                }
                None => self.fail(span, "alias to an unknown anchor"),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => {}
        }
    }
}

/// Types a plain scalar with the YAML 1.2 core schema.
fn plain_scalar(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(n) = parse_int(text) {
        return Value::Number(n.into());
    }
    if is_decimal_float(text)
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

fn parse_int(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    None
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` without a regex engine.
fn is_decimal_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac_part {
        Some(f) => all_digits(int_part) && all_digits(f) && !(int_part.is_empty() && f.is_empty()),
        None => !int_part.is_empty() && all_digits(int_part),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_values_are_typed_by_the_core_schema() {
        let parsed = parse("a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: 3.0.3\ng: [x, 2]\n").unwrap();
        assert_eq!(
            parsed.value,
            json!({"a": 1, "b": 1.5, "c": true, "d": null, "e": "1", "f": "3.0.3", "g": ["x", 2]})
        );
    }

    #[test]
    fn positions_are_recorded_by_pointer() {
        let parsed = parse("paths:\n  /pets/{id}:\n    get:\n      x: 1\n").unwrap();
        assert_eq!(
            parsed.positions.get("/paths/~1pets~1{id}/get/x"),
            Some(&(4, 10))
        );
        assert_eq!(
            parsed.positions.get("/paths/~1pets~1{id}/get"),
            Some(&(4, 7))
        );
    }

    #[test]
    fn json_is_accepted_with_positions() {
        let parsed =
            parse("{\n  \"openapi\": \"3.1.0\",\n  \"n\": [1, {\"k\": false}]\n}").unwrap();
        assert_eq!(
            parsed.value,
            json!({"openapi": "3.1.0", "n": [1, {"k": false}]})
        );
        assert_eq!(parsed.positions.get("/n/1/k"), Some(&(3, 18)));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
        let dup = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!((dup.line, dup.column), (2, 1));
        assert!(dup.message.contains("duplicate key"));
    }

    #[test]
    fn json_surrogate_pairs_are_accepted() {
        let parsed = parse(r#"{"e": "smile \ud83d\ude00", "lit": "\\ud83d"}"#).unwrap();
        assert_eq!(
            parsed.value,
            json!({"e": "smile \u{1F600}", "lit": "\\ud83d"})
        );
    }

    #[test]
    fn anchors_and_aliases_are_expanded() {
        let parsed = parse("base: &b {x: 1}\ncopy: *b\n").unwrap();
        assert_eq!(parsed.value["copy"], json!({"x": 1}));
    }
}

//! Plugin configuration: the JSON text a middleware's `config` becomes (buffer 7, read with
//! `get_plugin_configuration` in `on_configure`), parsed into the plugin's own serde type.
//!
//! The gateway checks the configuration against the plugin's JSON Schema when it compiles the
//! spec, so here parsing only has to be strict (use `#[serde(deny_unknown_fields)]`) and say
//! where it failed: errors carry a JSON pointer to the offending field.

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;
use serde::de::DeserializeOwned;
use std::fmt;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON pointer to the field that failed (`/allow_origins/0`), empty for the document itself.
    pub pointer: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "invalid configuration: {}", self.message)
        } else {
            write!(
                f,
                "invalid configuration at {}: {}",
                self.pointer, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses the plugin configuration. No configuration, or one that is only whitespace, parses as
/// `{}`, so a plugin whose fields all have defaults needs no `config:` in the spec.
pub fn parse<T: DeserializeOwned>(bytes: Option<Vec<u8>>) -> Result<T, ConfigError> {
    let bytes = bytes.unwrap_or_default();
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| ConfigError {
        pointer: pointer(e.path()),
        message: message(e.inner()),
    })?;
    // Trailing text after the document is an error too, not silently ignored.
    deserializer.end().map_err(|e| ConfigError {
        pointer: String::new(),
        message: e.to_string(),
    })?;
    Ok(value)
}

/// Reads and parses the configuration of the root context `root` (call it from `on_configure`).
/// A refusal is logged at error level, which is what `barbacane compile` quotes when it rejects
/// the middleware, so `on_configure` can simply return whether this gave a value.
pub fn load<T: DeserializeOwned, C: RootContext + ?Sized>(root: &C) -> Option<T> {
    match parse(root.get_plugin_configuration()) {
        Ok(config) => Some(config),
        Err(e) => {
            // Logging cannot usefully fail here: the start-up is refused either way.
            let _ = proxy_wasm::hostcalls::log(LogLevel::Error, &e.to_string());
            None
        }
    }
}

/// The error without serde_json's position when the pointer already says where: the text is
/// the compiler's re-serialisation of the spec's `config`, so its line and column mean nothing
/// to the author. Syntax errors (a `config` given as a string) keep their position.
fn message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if error.classify() != serde_json::error::Category::Data {
        return text;
    }
    let position = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&position).unwrap_or(&text).to_string()
}

/// `serde_path_to_error`'s path as a JSON pointer (RFC 6901 escaping).
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        out.push('/');
        match segment {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default = "default_header")]
        header: String,
        #[serde(default)]
        origins: Vec<String>,
        #[serde(default)]
        inner: Inner,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        max_age: u32,
    }

    fn default_header() -> String {
        String::from("x-id")
    }

    #[test]
    fn absent_or_blank_configuration_is_an_empty_object() {
        let expected = Config {
            header: "x-id".into(),
            origins: vec![],
            inner: Inner::default(),
        };
        assert_eq!(parse::<Config>(None).unwrap(), expected);
        assert_eq!(parse::<Config>(Some(Vec::new())).unwrap(), expected);
        assert_eq!(parse::<Config>(Some(b" \n".to_vec())).unwrap(), expected);
    }

    #[test]
    fn errors_point_at_the_field() {
        let e = parse::<Config>(Some(br#"{"origins": ["a", 3]}"#.to_vec())).unwrap_err();
        assert_eq!(e.pointer, "/origins/1");
        assert!(e.message.contains("invalid type"), "{e}");
        assert!(
            e.to_string()
                .starts_with("invalid configuration at /origins/1: ")
        );

        let e = parse::<Config>(Some(br#"{"inner": {"max_age": -1}}"#.to_vec())).unwrap_err();
        assert_eq!(e.pointer, "/inner/max_age");

        let e = parse::<Config>(Some(br#"{"nope": 1}"#.to_vec())).unwrap_err();
        assert!(e.message.starts_with("unknown field `nope`"), "{e}");
        assert!(!e.message.contains("line 1"), "{e}");

        let e = parse::<Config>(Some(b"{} x".to_vec())).unwrap_err();
        assert_eq!(e.pointer, "");
        assert!(e.to_string().starts_with("invalid configuration: "));

        let e = parse::<Config>(Some(b"not json".to_vec())).unwrap_err();
        assert!(e.message.contains("expected"), "{e}");
        assert!(e.message.ends_with("at line 1 column 2"), "{e}");
    }

    #[test]
    fn pointer_escapes_keys() {
        let e = parse::<std::collections::BTreeMap<String, u8>>(Some(br#"{"a/b~": "x"}"#.to_vec()))
            .unwrap_err();
        assert_eq!(e.pointer, "/a~1b~0");
    }
}

//! Compiler diagnostics: a stable error code, a message, the source location (file, line, column)
//! of the offending node and a one-line hint, rendered for people or as JSON for machines.
//!
//! Codes are part of the product's contract (documented in `docs/diagnostics.md`): tests and users'
//! scripts match on them, so a code is never reused for a different problem.

use serde::Serialize;
use std::fmt;

/// A stable diagnostic code. The numeric ranges group the codes by concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Code {
    /// A spec or manifest file cannot be read.
    E1001,
    /// YAML or JSON syntax error.
    E1002,
    /// The document is not an OpenAPI document (no `openapi` field, or the root is not a mapping).
    E1003,
    /// The OpenAPI version is not 3.0.x or 3.1.x.
    E1004,
    /// A node has the wrong shape (e.g. `paths` is not a mapping).
    E1005,
    /// A `$ref` does not resolve.
    E1010,
    /// A `$ref` chain loops back on itself outside a schema.
    E1011,
    /// An operation has no `x-barbacane-dispatch`.
    E1020,
    /// The dispatcher named in `x-barbacane-dispatch` does not exist.
    E1021,
    /// The dispatcher configuration is invalid.
    E1022,
    /// A dispatcher names an upstream that `x-barbacane-upstreams` does not declare.
    E1030,
    /// An upstream definition is invalid.
    E1031,
    /// A plaintext `http://` upstream outside `--dev`.
    E1032,
    /// Two operations answer the same method on the same route.
    E1040,
    /// A path template is invalid.
    E1041,
    /// A `servers` URL is invalid.
    E1042,
    /// A parameter definition is invalid.
    E1050,
    /// A schema cannot be compiled into a validator.
    E1051,
    /// A middleware names a plugin that is not available.
    E1060,
    /// A plugin cannot be loaded or rejects its configuration.
    E1061,
    /// A middleware's config does not match its plugin's JSON Schema.
    E1062,
    /// The project manifest (`barbacane.yaml`) is invalid.
    E1070,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Where a diagnostic points: a file and a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Location {
    /// The file as the user named it (or as a `$ref` named it, relative to the referring file).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem found in the user's input.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    /// The stable code.
    pub code: Code,
    /// What is wrong, in one line.
    pub message: String,
    /// Where it is.
    #[serde(flatten)]
    pub location: Location,
    /// What to do about it, in one line.
    pub hint: String,
}

impl Diagnostic {
    /// A diagnostic at `location`.
    pub fn new(
        code: Code,
        location: Location,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            location,
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error[{}]: {}\n  --> {}\n  = hint: {}",
            self.code, self.message, self.location, self.hint
        )
    }
}

/// Renders diagnostics as the JSON document printed by `--format json`.
pub fn to_json(diagnostics: &[Diagnostic]) -> String {
    let doc = serde_json::json!({
        "ok": diagnostics.is_empty(),
        "diagnostics": diagnostics,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| String::from("{}"))
}

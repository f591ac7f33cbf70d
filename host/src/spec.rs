//! OpenAPI 3.0/3.1 source documents: loading YAML or JSON files with positions, following `$ref`s
//! within and across files, and bundling referenced schemas so each validator is self-contained.
//!
//! Every node is addressed by a [`NodeRef`] (document index + JSON pointer) so that any later
//! check can turn it back into `file:line:col` for a diagnostic.

pub mod bundle;
pub mod yaml;

use crate::diag::{Code, Diagnostic, Location};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A loaded source file.
#[derive(Debug)]
pub struct SourceDoc {
    /// The path as the user (or a `$ref`) named it; used in diagnostics.
    pub display: String,
    /// The path used to read it.
    pub path: PathBuf,
    /// sha256 of the file's bytes, hex.
    pub sha256: String,
    /// The raw text, kept so the artifact can carry the sources.
    pub text: String,
    /// The parsed document.
    pub parsed: yaml::Parsed,
}

/// A node inside one of the loaded documents.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeRef {
    /// Index into [`Sources::docs`].
    pub doc: usize,
    /// JSON pointer inside that document.
    pub pointer: String,
}

impl NodeRef {
    /// The node `token` below this one.
    pub fn child(&self, token: &str) -> NodeRef {
        NodeRef {
            doc: self.doc,
            pointer: yaml::pointer_push(&self.pointer, token),
        }
    }
}

/// All documents loaded for one compilation, keyed by canonical path so that a file reached
/// through several `$ref`s is parsed once.
#[derive(Debug, Default)]
pub struct Sources {
    docs: Vec<SourceDoc>,
    by_path: HashMap<PathBuf, usize>,
}

/// Upper bound on the length of a `$ref` chain: longer chains are reported as loops.
const MAX_REF_HOPS: usize = 64;

impl Sources {
    /// Loads `path` (or returns the already-loaded document) and returns its index.
    pub fn load(&mut self, path: &Path) -> Result<usize, Diagnostic> {
        let display = path.display().to_string();
        let at_start = || Location {
            file: display.clone(),
            line: 1,
            column: 1,
        };
        let cannot_read = |e: std::io::Error| {
            Diagnostic::new(
                Code::E1001,
                at_start(),
                format!("cannot read {display}: {e}"),
                "check the path and the file's permissions",
            )
        };
        let canonical = std::fs::canonicalize(path).map_err(cannot_read)?;
        if let Some(&index) = self.by_path.get(&canonical) {
            return Ok(index);
        }
        let bytes = std::fs::read(&canonical).map_err(cannot_read)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Diagnostic::new(
                Code::E1002,
                at_start(),
                format!("{display} is not UTF-8 text: {e}"),
                "save the file as UTF-8",
            )
        })?;
        let parsed = yaml::parse(&text).map_err(|e| {
            Diagnostic::new(
                Code::E1002,
                Location {
                    file: display.clone(),
                    line: e.line,
                    column: e.column,
                },
                format!("invalid YAML/JSON: {}", e.message),
                "fix the syntax at this position",
            )
        })?;
        let sha256 = hex(&Sha256::digest(text.as_bytes()));
        self.docs.push(SourceDoc {
            display,
            path: canonical.clone(),
            sha256,
            text,
            parsed,
        });
        let index = self.docs.len() - 1;
        self.by_path.insert(canonical, index);
        Ok(index)
    }

    /// The loaded documents, in load order.
    pub fn docs(&self) -> &[SourceDoc] {
        &self.docs
    }

    /// The value at `node`, if it exists.
    pub fn get(&self, node: &NodeRef) -> Option<&Value> {
        self.docs.get(node.doc)?.parsed.value.pointer(&node.pointer)
    }

    /// `file:line:col` of `node`, or of its nearest ancestor that has a position. A mapping or
    /// list is located by its key (`get:` rather than the first line inside it).
    pub fn location(&self, node: &NodeRef) -> Location {
        let Some(doc) = self.docs.get(node.doc) else {
            return Location {
                file: String::from("<unknown>"),
                line: 1,
                column: 1,
            };
        };
        let mut pointer = node.pointer.as_str();
        loop {
            let is_collection = doc
                .parsed
                .value
                .pointer(pointer)
                .is_some_and(|v| v.is_object() || v.is_array());
            let key = if is_collection {
                doc.parsed.key_positions.get(pointer)
            } else {
                None
            };
            if let Some(&(line, column)) = key.or_else(|| doc.parsed.positions.get(pointer)) {
                return Location {
                    file: doc.display.clone(),
                    line,
                    column,
                };
            }
            match pointer.rfind('/') {
                Some(i) => pointer = &pointer[..i],
                None => {
                    return Location {
                        file: doc.display.clone(),
                        line: 1,
                        column: 1,
                    };
                }
            }
        }
    }

    /// Resolves the `$ref` string found at `at` (relative to `at`'s document).
    pub fn resolve_ref(&mut self, at: &NodeRef, reference: &str) -> Result<NodeRef, Diagnostic> {
        let unresolved = |sources: &Sources, why: String| {
            Diagnostic::new(
                Code::E1010,
                sources.location(at),
                format!("unresolved $ref '{reference}': {why}"),
                "point the $ref at an existing node: '#/components/…' or 'file.yaml#/…'",
            )
        };
        let (file_part, fragment) = match reference.split_once('#') {
            Some((f, frag)) => (f, frag),
            None => (reference, ""),
        };
        let doc = if file_part.is_empty() {
            at.doc
        } else {
            if file_part.contains("://") {
                return Err(unresolved(
                    self,
                    String::from(
                        "remote references are not fetched; copy the file next to the spec",
                    ),
                ));
            }
            let base = self.docs[at.doc]
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let display_base = Path::new(&self.docs[at.doc].display)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let decoded = percent_encoding::percent_decode_str(file_part).decode_utf8_lossy();
            let target = base.join(decoded.as_ref());
            match self.load(&target) {
                Ok(index) => {
                    // Diagnostics name the file relative to how the user named the root spec.
                    let shown = display_base.join(decoded.as_ref()).display().to_string();
                    if self.docs[index].display == target.display().to_string() {
                        self.docs[index].display = shown;
                    }
                    index
                }
                Err(d) if d.code == Code::E1001 => {
                    return Err(unresolved(
                        self,
                        format!("cannot read {}", target.display()),
                    ));
                }
                Err(d) => return Err(d),
            }
        };
        let pointer = percent_encoding::percent_decode_str(fragment)
            .decode_utf8_lossy()
            .into_owned();
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(unresolved(
                self,
                String::from("only JSON-pointer fragments ('#/…') are supported"),
            ));
        }
        let node = NodeRef { doc, pointer };
        if self.get(&node).is_none() {
            return Err(unresolved(self, String::from("no such node")));
        }
        Ok(node)
    }

    /// Follows `$ref`s from `node` until a node that is not a reference (for path items,
    /// parameters, request bodies: objects that may not be recursive).
    pub fn deref(&mut self, node: &NodeRef) -> Result<NodeRef, Diagnostic> {
        let mut current = node.clone();
        let mut seen = HashSet::new();
        while let Some(reference) = self
            .get(&current)
            .and_then(|v| v.get("$ref"))
            .and_then(Value::as_str)
            .map(str::to_owned)
        {
            if !seen.insert(current.clone()) || seen.len() > MAX_REF_HOPS {
                return Err(Diagnostic::new(
                    Code::E1011,
                    self.location(node),
                    format!("$ref loop starting at '{reference}'"),
                    "break the cycle: a reference must end at a real object",
                ));
            }
            let at = current.child("$ref");
            current = self.resolve_ref(&at, &reference)?;
        }
        Ok(current)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

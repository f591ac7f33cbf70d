//! The optional project manifest, `barbacane.yaml`: plugin sources and the trust policy.
//!
//! Plugins arrive with the Proxy-Wasm host; for now the manifest's shape is checked so that a
//! project written against the documented format compiles, and its bytes go into the artifact.

use crate::compile::SourceFile;
use crate::diag::{Code, Diagnostic, Location};
use crate::spec::{hex, yaml};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// `barbacane.yaml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Plugin name → where its module comes from.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSource>,
    /// Which keys may sign `oci://` plugins.
    #[serde(default)]
    pub trust: Trust,
}

/// A plugin's origin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSource {
    /// `file:PATH` or `oci://REGISTRY/REPO[:TAG|@DIGEST]`.
    pub source: String,
}

/// The trust policy for OCI plugins.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// Public keys (cosign format) whose signatures are accepted.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Accept unsigned plugins.
    #[serde(default)]
    pub allow_unsigned: bool,
}

/// Reads and checks the manifest at `path`.
pub fn load(path: &Path) -> Result<SourceFile, Diagnostic> {
    let name = path.display().to_string();
    let at = |line, column| Location {
        file: name.clone(),
        line,
        column,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::new(
            Code::E1001,
            at(1, 1),
            format!("cannot read {name}: {e}"),
            "check the --manifest path",
        )
    })?;
    let parsed = yaml::parse(&text).map_err(|e| {
        Diagnostic::new(
            Code::E1002,
            at(e.line, e.column),
            format!("invalid YAML: {}", e.message),
            "fix the syntax at this position",
        )
    })?;
    let value = match parsed.value {
        serde_json::Value::Null => serde_json::json!({}),
        v => v,
    };
    let project: Project = serde_json::from_value(value).map_err(|e| {
        Diagnostic::new(
            Code::E1070,
            at(1, 1),
            format!("invalid project manifest: {e}"),
            "the manifest has 'plugins: {name: {source: …}}' and 'trust: {keys: […]}'",
        )
    })?;
    for (plugin, source) in &project.plugins {
        if !(source.source.starts_with("file:") || source.source.starts_with("oci://")) {
            let (line, column) = parsed
                .positions
                .get(&format!("/plugins/{plugin}/source"))
                .copied()
                .unwrap_or((1, 1));
            return Err(Diagnostic::new(
                Code::E1070,
                at(line, column),
                format!(
                    "plugin '{plugin}': source '{}' is neither file: nor oci://",
                    source.source
                ),
                "write 'file:path/to/plugin.wasm' or 'oci://registry/repo:tag'",
            ));
        }
    }
    Ok(SourceFile {
        name,
        sha256: hex(&Sha256::digest(text.as_bytes())),
        text,
    })
}

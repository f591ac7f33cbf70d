//! The optional project manifest, `barbacane.yaml`: plugin sources and the trust policy.
//! `file:` sources are read relative to the manifest; `oci://` sources arrive with the registry.

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
    /// The manifest's directory, which `file:` sources are relative to.
    #[serde(skip)]
    pub dir: std::path::PathBuf,
}

impl Project {
    /// The file a `file:` plugin source names, resolved against the manifest's directory.
    pub fn plugin_file(&self, name: &str) -> Option<std::path::PathBuf> {
        let source = &self.plugins.get(name)?.source;
        source.strip_prefix("file:").map(|path| self.dir.join(path))
    }
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
pub fn load(path: &Path) -> Result<(Project, SourceFile), Diagnostic> {
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
    let mut project: Project = serde_json::from_value(value).map_err(|e| {
        Diagnostic::new(
            Code::E1070,
            at(1, 1),
            format!("invalid project manifest: {e}"),
            "the manifest has 'plugins: {name: {source: …}}' and 'trust: {keys: […]}'",
        )
    })?;
    for (plugin, source) in &project.plugins {
        let (line, column) = parsed
            .positions
            .get(&format!("/plugins/{plugin}/source"))
            .copied()
            .unwrap_or((1, 1));
        let problem = if source.source.starts_with("oci://") {
            "oci:// sources are not supported yet (they come with signed OCI distribution)"
        } else if !source.source.starts_with("file:") {
            "is neither file: nor oci://"
        } else {
            continue;
        };
        return Err(Diagnostic::new(
            Code::E1070,
            at(line, column),
            format!("plugin '{plugin}': source '{}' {problem}", source.source),
            "write 'file:path/to/plugin.wasm', relative to barbacane.yaml",
        ));
    }
    project.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let file = SourceFile {
        name,
        sha256: hex(&Sha256::digest(text.as_bytes())),
        text,
    };
    Ok((project, file))
}

//! The plugin manifest, `plugin.toml` (name, version, kind, abi, schema, description,
//! capabilities), and the JSON form it takes inside a pushed artifact's config blob, under the one
//! key `io.barbacane.plugin`. The config JSON Schema file named by `schema` is read and embedded,
//! so the artifact carries everything the compiler needs to check a plugin's configuration.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A parsed `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginManifest {
    /// Plugin name (`jwt-auth`).
    pub name: String,
    /// Plugin version (`0.1.0`).
    pub version: String,
    /// What the plugin does in the chain (`auth`, `middleware`, …).
    pub kind: String,
    /// The Proxy-Wasm ABI version the plugin targets (`0.2.1`), if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abi: Option<String>,
    /// The config JSON Schema file, relative to `plugin.toml`, as written there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// One-line description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Host capabilities the plugin uses (`http-calls`, `timers`, …).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The config JSON Schema itself, read from `schema` by [`PluginManifest::load`] (or carried in
    /// an artifact's config).
    #[serde(
        default,
        rename = "config_schema",
        skip_serializing_if = "Option::is_none"
    )]
    pub config_schema: Option<serde_json::Value>,
}

impl PluginManifest {
    /// Parses `plugin.toml` text (the schema file is not read; see [`PluginManifest::load`]).
    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        let m: PluginManifest = toml::from_str(text).map_err(|e| Error::BadFile {
            path: path.to_path_buf(),
            reason: format!("not a valid plugin manifest: {e}"),
        })?;
        let bad = |reason: &str| Error::BadFile {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if m.name.trim().is_empty() {
            return Err(bad("`name` is empty"));
        }
        if m.version.trim().is_empty() {
            return Err(bad("`version` is empty"));
        }
        if m.kind.trim().is_empty() {
            return Err(bad("`kind` is empty"));
        }
        Ok(m)
    }

    /// Reads `plugin.toml` at `path` and the JSON Schema file it names (relative to it).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut m = PluginManifest::from_toml(&text, path)?;
        if let Some(schema) = &m.schema {
            let file = path.parent().unwrap_or(Path::new(".")).join(schema);
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::BadFile {
                    path: file.clone(),
                    reason: format!("not JSON: {e}"),
                })?;
            m.config_schema = Some(value);
        }
        Ok(m)
    }
}

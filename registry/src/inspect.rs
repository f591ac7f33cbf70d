//! `inspect`: what a plugin is, for a registry reference (manifest JSON, digests, layout, size,
//! ABI marker, imports, and the plugin manifest carried in a barbacane config) or for a local
//! `.wasm` file (size, digest, ABI marker, imports).

use std::path::Path;

use serde::Serialize;

use crate::client::Registry;
use crate::error::{Error, Result};
use crate::layout::{Layout, PLUGIN_CONFIG_KEY, WASM_CONFIG_V0};
use crate::module::{ModuleInfo, check_module};
use crate::progress::Progress;
use crate::reference::PluginRef;

/// What [`Registry::inspect`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The reference, pinned to the manifest digest.
    pub reference: String,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// The manifest as served.
    pub manifest: serde_json::Value,
    /// The detected layout.
    pub layout: Layout,
    /// `sha256:…` of the module layer.
    pub layer_digest: String,
    /// That layer's media type.
    pub media_type: String,
    /// The module: size, digest, ABI marker, imports, exports.
    pub module: ModuleInfo,
    /// The plugin manifest from the config (`io.barbacane.plugin`), when present.
    pub plugin: Option<serde_json::Value>,
}

impl Registry {
    /// Pulls and describes the plugin at `reference`.
    pub async fn inspect(
        &self,
        reference: &PluginRef,
        progress: &dyn Progress,
    ) -> Result<Inspection> {
        let conn = self.conn(reference).await?;
        let pulled = self.pull_with(&conn, reference, progress).await?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&pulled.manifest_bytes).map_err(|e| Error::BadLayout {
                reference: reference.to_string(),
                reason: e.to_string(),
            })?;
        let config = &pulled.manifest.config;
        let plugin = if config.media_type == WASM_CONFIG_V0 {
            let blob = self
                .fetch_blob(
                    &conn,
                    &pulled.reference,
                    config,
                    self.options.limits.max_manifest_bytes,
                    "config",
                    &crate::NoProgress,
                )
                .await?;
            serde_json::from_slice::<serde_json::Value>(&blob)
                .ok()
                .and_then(|v| v.get(PLUGIN_CONFIG_KEY).cloned())
        } else {
            None
        };
        Ok(Inspection {
            reference: pulled.reference.to_string(),
            manifest_digest: pulled.manifest_digest,
            manifest,
            layout: pulled.layout,
            layer_digest: pulled.layer_digest,
            media_type: pulled.media_type,
            module: pulled.module,
            plugin,
        })
    }
}

/// Describes a local `.wasm` file (refusing files that are not Proxy-Wasm modules).
pub fn inspect_file(path: &Path) -> Result<ModuleInfo> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    check_module(&bytes, &path.display().to_string())
}

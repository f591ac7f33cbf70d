//! `pull`: fetches a plugin's manifest (size-capped), detects its layout (see [`crate::layout`]),
//! fetches the module layer (size-capped, digest-checked against the descriptor, from the cache
//! when it is there), extracts `plugin.wasm` from tar.gz layers, and checks the module is
//! Proxy-Wasm ([`crate::module`]). Only then is the layer stored in the cache.

use crate::client::{Conn, Registry};
use crate::error::Result;
use crate::layout::{Layout, Manifest, detect, extract_compat, parse_manifest};
use crate::module::{ModuleInfo, check_module};
use crate::progress::Progress;
use crate::reference::PluginRef;

/// A pulled, checked plugin module.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The module bytes.
    pub bytes: Vec<u8>,
    /// The reference, pinned to the manifest digest.
    pub reference: PluginRef,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// `sha256:…` of the layer holding the module (the tar.gz for the compat layout).
    pub layer_digest: String,
    /// Media type of that layer.
    pub media_type: String,
    /// Which layout the artifact uses.
    pub layout: Layout,
    /// What the module check found.
    pub module: ModuleInfo,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The manifest bytes as served.
    pub manifest_bytes: Vec<u8>,
}

impl Registry {
    /// Pulls the plugin module at `reference` (tag or digest).
    pub async fn pull(&self, reference: &PluginRef, progress: &dyn Progress) -> Result<Pulled> {
        let conn = self.conn(reference).await?;
        self.pull_with(&conn, reference, progress).await
    }

    pub(crate) async fn pull_with(
        &self,
        conn: &Conn,
        reference: &PluginRef,
        progress: &dyn Progress,
    ) -> Result<Pulled> {
        let shown = reference.to_string();
        let (manifest_bytes, manifest_digest) = self.fetch_plugin_manifest(conn, reference).await?;
        let manifest = parse_manifest(&manifest_bytes, &shown)?;
        let (layout, layer) = detect(&manifest, &shown)?;
        let limit = self.options.limits.max_module_bytes;
        let blob = self
            .fetch_blob(conn, reference, &layer, limit, "plugin.wasm", progress)
            .await?;
        let bytes = match layout {
            Layout::SoloCompat => extract_compat(&blob, limit, &shown)?,
            _ => blob.clone(),
        };
        let module = check_module(&bytes, &format!("the module of {shown}"))?;
        if let Some(cache) = &self.options.cache {
            cache.put(&layer.digest, &blob)?;
        }
        Ok(Pulled {
            bytes,
            reference: reference.with_digest(&manifest_digest),
            manifest_digest,
            layer_digest: layer.digest,
            media_type: layer.media_type,
            layout,
            module,
            manifest,
            manifest_bytes,
        })
    }
}

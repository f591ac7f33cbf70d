//! Artifact layouts: the media types barbacane writes (the CNCF TAG-Runtime Wasm layout), the
//! older layouts it accepts on pull (in Istio's detection order), the OCI manifest JSON types, and
//! the extraction of the module from a detected layer (raw, or `plugin.wasm` inside a tar.gz).
//!
//! Written (push): OCI image manifest with `artifactType` [`BARBACANE_ARTIFACT_TYPE`], config
//! [`WASM_CONFIG_V0`] and exactly one [`WASM_LAYER`] layer titled `plugin.wasm`.
//!
//! Accepted (pull), first match wins:
//! 1. [`Layout::Cncf`]: one `application/wasm` layer;
//! 2. [`Layout::WasmToOci`]: one `application/vnd.wasm.content.layer.v1+wasm` layer;
//! 3. [`Layout::SoloOci`]: two layers, `application/vnd.module.wasm.config.v1+json` and
//!    `application/vnd.module.wasm.content.layer.v1+wasm` (the module);
//! 4. [`Layout::SoloCompat`]: the last layer is a gzip'd tar (`application/vnd.oci.image.layer.v1.tar+gzip`
//!    or Docker's `application/vnd.docker.image.rootfs.diff.tar.gzip`, OCI or Docker schema 2
//!    manifest) holding `plugin.wasm`.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type (refused: plugins are single-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type (refused).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// `artifactType` barbacane writes.
pub const BARBACANE_ARTIFACT_TYPE: &str = "application/vnd.barbacane.plugin.v1+wasm";
/// CNCF Wasm config media type.
pub const WASM_CONFIG_V0: &str = "application/vnd.wasm.config.v0+json";
/// CNCF Wasm layer media type.
pub const WASM_LAYER: &str = "application/wasm";
/// wasm-to-oci (legacy) layer media type.
pub const WASM_TO_OCI_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// wasm-to-oci (legacy) config media type.
pub const WASM_TO_OCI_CONFIG: &str = "application/vnd.wasm.config.v1+json";
/// Solo "oci" runtime-config layer media type.
pub const SOLO_CONFIG_LAYER: &str = "application/vnd.module.wasm.config.v1+json";
/// Solo "oci" content layer media type.
pub const SOLO_CONTENT_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// OCI gzip'd tar layer media type (Solo "compat").
pub const OCI_TAR_GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker gzip'd tar layer media type.
pub const DOCKER_TAR_GZIP_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The layer title annotation key.
pub const TITLE: &str = "org.opencontainers.image.title";
/// The config key holding the plugin manifest.
pub const PLUGIN_CONFIG_KEY: &str = "io.barbacane.plugin";
/// The file a tar.gz layer must contain.
pub const COMPAT_FILE: &str = "plugin.wasm";

/// Media types sent in `Accept` when fetching a plugin manifest.
pub(crate) const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
];

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// `sha256:<hex>` of the content.
    pub digest: String,
    /// Size of the content in bytes.
    pub size: u64,
    /// Descriptor annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI image manifest (or Docker schema 2 manifest, which has the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's media type (set by everything barbacane writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// OCI 1.1 artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config descriptor.
    pub config: Descriptor,
    /// The layers, in order.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// OCI 1.1 subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// How a pulled artifact stores its module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// CNCF TAG-Runtime: one `application/wasm` layer (what barbacane pushes).
    Cncf,
    /// wasm-to-oci / Kubewarden / legacy `oci-client`: one `application/vnd.wasm.content.layer.v1+wasm` layer.
    WasmToOci,
    /// Solo "oci": a runtime-config layer and a `application/vnd.module.wasm.content.layer.v1+wasm` layer.
    SoloOci,
    /// Solo "compat" / Docker image: a tar.gz layer holding `plugin.wasm`.
    SoloCompat,
}

impl Layout {
    /// A short name (`cncf`, `wasm-to-oci`, `solo-oci`, `solo-compat`).
    pub fn name(self) -> &'static str {
        match self {
            Layout::Cncf => "cncf",
            Layout::WasmToOci => "wasm-to-oci",
            Layout::SoloOci => "solo-oci",
            Layout::SoloCompat => "solo-compat",
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses manifest bytes, refusing indexes and non-manifests with a [`Error::BadLayout`].
pub(crate) fn parse_manifest(bytes: &[u8], reference: &str) -> Result<Manifest> {
    let bad = |reason: String| Error::BadLayout {
        reference: reference.to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("manifest is not JSON: {e}")))?;
    let media_type = value.get("mediaType").and_then(|v| v.as_str());
    if matches!(media_type, Some(OCI_INDEX | DOCKER_MANIFEST_LIST))
        || value.get("manifests").is_some()
    {
        return Err(bad(
            "an image index / manifest list; plugins are single-platform artifacts: reference the plugin manifest's digest"
                .to_string(),
        ));
    }
    if let Some(mt) = media_type
        && mt != OCI_MANIFEST
        && mt != DOCKER_MANIFEST
    {
        return Err(bad(format!("unsupported manifest media type `{mt}`")));
    }
    let m: Manifest =
        serde_json::from_value(value).map_err(|e| bad(format!("malformed image manifest: {e}")))?;
    if m.schema_version != 2 {
        return Err(bad(format!(
            "manifest schemaVersion {} (expected 2)",
            m.schema_version
        )));
    }
    Ok(m)
}

/// Picks the layer holding the module, in Istio's order. Returns the layout and the layer.
pub fn detect(manifest: &Manifest, reference: &str) -> Result<(Layout, Descriptor)> {
    let layers = &manifest.layers;
    let bad = |reason: String| Error::BadLayout {
        reference: reference.to_string(),
        reason,
    };
    if layers.is_empty() {
        return Err(bad("the manifest has no layers".to_string()));
    }
    let count = |mt: &str| layers.iter().filter(|l| l.media_type == mt).count();
    let single = |mt: &str| {
        if count(mt) == 1 && layers.len() == 1 {
            Some(layers[0].clone())
        } else {
            None
        }
    };
    if count(WASM_LAYER) > 0 {
        return single(WASM_LAYER)
            .map(|l| (Layout::Cncf, l))
            .ok_or_else(|| {
                bad(format!(
                    "{} layers with an `application/wasm` layer; the CNCF layout has exactly one",
                    layers.len()
                ))
            });
    }
    if count(WASM_TO_OCI_LAYER) > 0 {
        return single(WASM_TO_OCI_LAYER)
            .map(|l| (Layout::WasmToOci, l))
            .ok_or_else(|| {
                bad(format!(
                    "{} layers with a wasm-to-oci layer; that layout has exactly one",
                    layers.len()
                ))
            });
    }
    if count(SOLO_CONTENT_LAYER) > 0 {
        if layers.len() == 2 && count(SOLO_CONTENT_LAYER) == 1 && count(SOLO_CONFIG_LAYER) == 1 {
            let content = layers
                .iter()
                .find(|l| l.media_type == SOLO_CONTENT_LAYER)
                .cloned()
                .ok_or_else(|| bad("no content layer".to_string()))?;
            return Ok((Layout::SoloOci, content));
        }
        return Err(bad(
            "a Solo Wasm content layer, but not exactly one config and one content layer"
                .to_string(),
        ));
    }
    if let Some(last) = layers.last()
        && (last.media_type == OCI_TAR_GZIP_LAYER || last.media_type == DOCKER_TAR_GZIP_LAYER)
    {
        return Ok((Layout::SoloCompat, last.clone()));
    }
    let types: Vec<&str> = layers.iter().map(|l| l.media_type.as_str()).collect();
    Err(bad(format!(
        "no Wasm layer (layer media types: {})",
        types.join(", ")
    )))
}

/// Extracts `plugin.wasm` from a gzip'd tar, refusing more than `limit` bytes.
pub(crate) fn extract_compat(blob: &[u8], limit: u64, reference: &str) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::BadLayout {
        reference: reference.to_string(),
        reason,
    };
    let gz = flate2::read::GzDecoder::new(blob);
    let mut archive = tar::Archive::new(gz);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("layer is not a tar.gz: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("layer is not a tar.gz: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| bad(format!("bad path in tar: {e}")))?
            .into_owned();
        let name = path.to_string_lossy();
        let name = name.trim_start_matches("./").trim_start_matches('/');
        if name != COMPAT_FILE || !entry.header().entry_type().is_file() {
            continue;
        }
        let size = entry.header().size().unwrap_or(0);
        if size > limit {
            return Err(Error::TooLarge {
                what: format!("{reference}: {COMPAT_FILE}"),
                size,
                limit,
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        (&mut entry)
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                bad(format!(
                    "cannot read {COMPAT_FILE} from the tar.gz layer: {e}"
                ))
            })?;
        if out.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: format!("{reference}: {COMPAT_FILE}"),
                size: out.len() as u64,
                limit,
            });
        }
        return Ok(out);
    }
    Err(bad(format!("the tar.gz layer holds no `{COMPAT_FILE}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(mt: &str) -> Descriptor {
        Descriptor {
            media_type: mt.to_string(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 1,
            annotations: None,
        }
    }

    fn manifest(layers: &[&str]) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: None,
            config: desc(WASM_CONFIG_V0),
            layers: layers.iter().map(|l| desc(l)).collect(),
            subject: None,
            annotations: None,
        }
    }

    #[test]
    fn detection_order() {
        assert_eq!(
            detect(&manifest(&[WASM_LAYER]), "r").unwrap().0,
            Layout::Cncf
        );
        assert_eq!(
            detect(&manifest(&[WASM_TO_OCI_LAYER]), "r").unwrap().0,
            Layout::WasmToOci
        );
        assert_eq!(
            detect(&manifest(&[SOLO_CONFIG_LAYER, SOLO_CONTENT_LAYER]), "r")
                .unwrap()
                .0,
            Layout::SoloOci
        );
        assert_eq!(
            detect(&manifest(&[DOCKER_TAR_GZIP_LAYER]), "r").unwrap().0,
            Layout::SoloCompat
        );
        for bad in [
            &[][..],
            &[WASM_LAYER, WASM_LAYER][..],
            &[WASM_LAYER, "text/plain"][..],
            &[SOLO_CONTENT_LAYER][..],
            &["text/plain"][..],
        ] {
            let e = detect(&manifest(bad), "r").unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::BadLayout, "{bad:?}");
        }
    }

    #[test]
    fn indexes_are_refused() {
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let e = parse_manifest(idx, "r").unwrap_err();
        assert!(e.to_string().contains("index"), "{e}");
        assert!(parse_manifest(b"not json", "r").is_err());
    }
}

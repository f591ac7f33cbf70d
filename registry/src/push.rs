//! `push`: uploads a Proxy-Wasm module in the CNCF TAG-Runtime Wasm layout.
//!
//! The manifest is an OCI image manifest (`mediaType` set) with `artifactType`
//! `application/vnd.barbacane.plugin.v1+wasm`; its config (`application/vnd.wasm.config.v0+json`)
//! has the CNCF fields `created`, `architecture: "wasm"`, `os: "wasip1"`, `layerDigests`, plus the
//! plugin manifest under the one key `io.barbacane.plugin`; its one layer is the module,
//! `application/wasm`, titled `plugin.wasm`. Manifest annotations:
//! `org.opencontainers.image.{version,created,title[,description]}` and
//! `io.barbacane.plugin.{name,kind,abi}`. Bytes that are not a Proxy-Wasm module are refused
//! before anything is uploaded.

use std::collections::BTreeMap;

use serde_json::json;

use crate::client::Registry;
use crate::error::{Error, Result};
use crate::layout::{
    BARBACANE_ARTIFACT_TYPE, Descriptor, Manifest, OCI_MANIFEST, PLUGIN_CONFIG_KEY, TITLE,
    WASM_CONFIG_V0, WASM_LAYER,
};
use crate::module::{check_module, sha256_digest};
use crate::plugin_manifest::PluginManifest;
use crate::progress::Progress;
use crate::reference::PluginRef;

/// What [`Registry::push`] uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The pushed reference, pinned to the manifest digest.
    pub reference: PluginRef,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// `sha256:…` of the module layer.
    pub layer_digest: String,
    /// `sha256:…` of the config blob.
    pub config_digest: String,
    /// Size of the module in bytes.
    pub size: u64,
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

impl Registry {
    /// Pushes `wasm` to `reference` (which must name a tag) in the CNCF Wasm layout, with the
    /// plugin manifest in the config and annotations when given.
    pub async fn push(
        &self,
        wasm: &[u8],
        reference: &PluginRef,
        manifest: Option<&PluginManifest>,
        progress: &dyn Progress,
    ) -> Result<Pushed> {
        let Some(tag) = reference.tag() else {
            return Err(Error::BadReference {
                input: reference.to_string(),
                reason: "push needs a tag (REPO:TAG), not only a digest".to_string(),
            });
        };
        if reference.digest().is_some() {
            return Err(Error::BadReference {
                input: reference.to_string(),
                reason: "push takes REPO:TAG without @digest (the digest is the result)"
                    .to_string(),
            });
        }
        let limit = self.options.limits.max_module_bytes;
        if wasm.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: "module".to_string(),
                size: wasm.len() as u64,
                limit,
            });
        }
        let info = check_module(wasm, "the file to push")?;
        let created = now_rfc3339();
        let layer_digest = sha256_digest(wasm);

        let mut config = serde_json::Map::new();
        config.insert("created".into(), json!(created));
        config.insert("architecture".into(), json!("wasm"));
        config.insert("os".into(), json!("wasip1"));
        config.insert("layerDigests".into(), json!([layer_digest]));
        if let Some(m) = manifest {
            let value = serde_json::to_value(m).map_err(|e| Error::BadFile {
                path: "plugin.toml".into(),
                reason: e.to_string(),
            })?;
            config.insert(PLUGIN_CONFIG_KEY.into(), value);
        }
        let config_bytes =
            serde_json::to_vec(&serde_json::Value::Object(config)).map_err(|e| Error::BadFile {
                path: "config".into(),
                reason: e.to_string(),
            })?;
        let config_digest = sha256_digest(&config_bytes);

        let mut annotations = BTreeMap::new();
        let version = manifest
            .map(|m| m.version.clone())
            .unwrap_or(tag.to_string());
        annotations.insert("org.opencontainers.image.version".into(), version);
        annotations.insert("org.opencontainers.image.created".into(), created);
        let title = manifest.map(|m| m.name.clone()).unwrap_or_else(|| {
            reference
                .repository()
                .rsplit('/')
                .next()
                .unwrap_or(reference.repository())
                .to_string()
        });
        annotations.insert("org.opencontainers.image.title".into(), title);
        if let Some(m) = manifest {
            if let Some(d) = &m.description
                && !d.contains('\n')
            {
                annotations.insert("org.opencontainers.image.description".into(), d.clone());
            }
            annotations.insert("io.barbacane.plugin.name".into(), m.name.clone());
            annotations.insert("io.barbacane.plugin.kind".into(), m.kind.clone());
        }
        annotations.insert("io.barbacane.plugin.abi".into(), info.abi_version());

        let oci_manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_string()),
            artifact_type: Some(BARBACANE_ARTIFACT_TYPE.to_string()),
            config: Descriptor {
                media_type: WASM_CONFIG_V0.to_string(),
                digest: config_digest.clone(),
                size: config_bytes.len() as u64,
                annotations: None,
            },
            layers: vec![Descriptor {
                media_type: WASM_LAYER.to_string(),
                digest: layer_digest.clone(),
                size: wasm.len() as u64,
                annotations: Some(BTreeMap::from([(
                    TITLE.to_string(),
                    "plugin.wasm".to_string(),
                )])),
            }],
            subject: None,
            annotations: Some(annotations),
        };
        let manifest_bytes = serde_json::to_vec(&oci_manifest).map_err(|e| Error::BadFile {
            path: "manifest".into(),
            reason: e.to_string(),
        })?;

        let conn = self.conn(reference).await?;
        self.push_blob(&conn, reference, wasm, "plugin.wasm", progress)
            .await?;
        self.push_blob(
            &conn,
            reference,
            &config_bytes,
            "config",
            &crate::NoProgress,
        )
        .await?;
        let manifest_digest = self
            .push_manifest(&conn, reference, manifest_bytes, OCI_MANIFEST)
            .await?;
        Ok(Pushed {
            reference: reference.with_digest(&manifest_digest),
            manifest_digest,
            layer_digest,
            config_digest,
            size: wasm.len() as u64,
        })
    }
}

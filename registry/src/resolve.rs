//! `resolve`: what the compiler calls for each `oci://` plugin. Given the source, the trust
//! policy, the lock's entry (if any) and whether to update:
//!
//! 1. use the lock's digest when it pins this source and `update` is off (a source written with
//!    `@sha256:` uses that digest); otherwise resolve the tag to a digest;
//! 2. unless `allow_unsigned`, verify a signature for exactly that digest
//!    ([`Registry::verify`](crate::Registry::verify) rules);
//! 3. pull `repo@digest`, detect the layout, check the layer against its descriptor;
//! 4. check the module is Proxy-Wasm;
//!
//! and return the bytes with the [`LockEntry`] to record. Nothing is written on any refusal (the
//! only write is the module layer into the cache, after every check passed); the caller writes
//! the lock.

use std::path::Path;

use crate::client::Registry;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::lockfile::LockEntry;
use crate::module::ModuleInfo;
use crate::progress::Progress;
use crate::push::now_rfc3339;
use crate::reference::PluginRef;

/// Which plugins are accepted: `trust:` in `barbacane.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Trusted public keys (`PUBLIC KEY` PEM text).
    pub keys: Vec<String>,
    /// Accept plugins without a (trusted) signature.
    pub allow_unsigned: bool,
}

impl TrustPolicy {
    /// Reads the key files (paths as given; resolve them against the manifest's directory first).
    pub fn from_key_files(paths: &[impl AsRef<Path>], allow_unsigned: bool) -> Result<Self> {
        let keys = paths
            .iter()
            .map(|p| {
                let p = p.as_ref();
                let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
                crate::signing::key_fingerprint(&text).map_err(|e| Error::BadFile {
                    path: p.to_path_buf(),
                    reason: e.to_string(),
                })?;
                Ok(text)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TrustPolicy {
            keys,
            allow_unsigned,
        })
    }
}

/// A resolved, verified, checked plugin.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The module bytes (to bundle into the artifact).
    pub bytes: Vec<u8>,
    /// What to record in `barbacane.lock`.
    pub entry: LockEntry,
    /// The layout it was stored in.
    pub layout: Layout,
    /// What the module check found.
    pub module: ModuleInfo,
}

impl Registry {
    /// Resolves plugin `source` under `trust`, pinned by `locked` unless `update`.
    pub async fn resolve(
        &self,
        source: &str,
        trust: &TrustPolicy,
        locked: Option<&LockEntry>,
        update: bool,
        progress: &dyn Progress,
    ) -> Result<Resolved> {
        let reference = PluginRef::parse(source)?;
        let conn = self.conn(&reference).await?;
        let pinned = match (reference.digest(), locked) {
            (Some(_), _) => None,
            (None, Some(entry)) if !update && entry.source == source => Some(entry),
            _ => None,
        };
        let digest = match (reference.digest(), pinned) {
            (Some(d), _) => self
                .resolve_digest(&reference)
                .await
                .map(|_| d.to_string())?,
            (None, Some(entry)) => {
                crate::reference::check_digest(&entry.manifest_digest).map_err(|reason| {
                    Error::BadFile {
                        path: "barbacane.lock".into(),
                        reason: format!("{source}: {reason}"),
                    }
                })?;
                let at = reference.with_digest(&entry.manifest_digest);
                match self.resolve_digest(&at).await {
                    Ok(_) => entry.manifest_digest.clone(),
                    Err(Error::NotFound { .. }) => {
                        return Err(Error::PinnedDigestMissing {
                            reference: reference.to_string(),
                            digest: entry.manifest_digest.clone(),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            (None, None) => self.resolve_digest(&reference).await?,
        };
        let signer = if trust.allow_unsigned {
            None
        } else {
            let verified = self
                .verify_digest(&conn, &reference, &digest, &trust.keys)
                .await?;
            Some(verified.key_fingerprint)
        };
        let at = reference.with_digest(&digest);
        let pulled = match self.pull_with(&conn, &at, progress).await {
            Err(Error::NotFound { .. }) if pinned.is_some() => {
                return Err(Error::PinnedDigestMissing {
                    reference: reference.to_string(),
                    digest,
                });
            }
            other => other?,
        };
        if let Some(entry) = pinned
            && entry.layer_digest != pulled.layer_digest
        {
            return Err(Error::Tampered {
                reference: at.to_string(),
                what: format!(
                    "barbacane.lock pins layer {}, but manifest {digest} has layer {}",
                    entry.layer_digest, pulled.layer_digest
                ),
            });
        }
        Ok(Resolved {
            entry: LockEntry {
                source: source.to_string(),
                manifest_digest: pulled.manifest_digest.clone(),
                layer_digest: pulled.layer_digest.clone(),
                media_type: pulled.media_type.clone(),
                signer,
                resolved_at: now_rfc3339(),
            },
            layout: pulled.layout,
            module: pulled.module,
            bytes: pulled.bytes,
        })
    }
}

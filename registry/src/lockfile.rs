//! `barbacane.lock`: every `oci://` plugin pinned by manifest digest, with what was verified.
//!
//! TOML, written beside `barbacane.yaml`, entries sorted by source so diffs are stable:
//!
//! ```toml
//! # barbacane.lock: written by `barbacane compile`; pins every oci:// plugin. Do not edit.
//! version = 1
//!
//! [[plugin]]
//! source = "oci://127.0.0.1:5000/filters/waf:1.2.0"   # exactly as written in barbacane.yaml
//! manifest_digest = "sha256:…"
//! layer_digest = "sha256:…"
//! media_type = "application/wasm"
//! signer = "…"          # hex sha256 of the signing key's SPKI DER; absent when unsigned
//! resolved_at = "2026-11-29T03:34:37Z"
//! ```
//!
//! Writes go to a temporary file beside the lock, are synced, then renamed over it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The lock's format version.
pub const LOCK_VERSION: u32 = 1;

const HEADER: &str =
    "# barbacane.lock: written by `barbacane compile`; pins every oci:// plugin. Do not edit.\n";

/// One pinned plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEntry {
    /// The source as written in `barbacane.yaml`.
    pub source: String,
    /// The resolved (and verified) manifest digest.
    pub manifest_digest: String,
    /// The digest of the layer holding the module.
    pub layer_digest: String,
    /// That layer's media type.
    pub media_type: String,
    /// Fingerprint of the key whose signature was verified; `None` when accepted unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// When it was resolved (RFC 3339, UTC).
    pub resolved_at: String,
}

#[derive(Serialize, Deserialize)]
struct Repr {
    version: u32,
    #[serde(default, rename = "plugin")]
    plugins: Vec<LockEntry>,
}

/// The contents of `barbacane.lock`, keyed by source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockfile {
    entries: BTreeMap<String, LockEntry>,
}

impl Lockfile {
    /// Reads `path`; a missing file is an empty lock.
    pub fn read(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Lockfile::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lockfile::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Parses lock text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::BadFile {
            path: path.to_path_buf(),
            reason,
        };
        let repr: Repr = toml::from_str(text).map_err(|e| bad(format!("not a valid lock: {e}")))?;
        if repr.version != LOCK_VERSION {
            return Err(bad(format!(
                "lock version {} (this barbacane reads version {LOCK_VERSION})",
                repr.version
            )));
        }
        let mut entries = BTreeMap::new();
        for e in repr.plugins {
            for d in [&e.manifest_digest, &e.layer_digest] {
                crate::reference::check_digest(d)
                    .map_err(|r| bad(format!("plugin `{}`: {r}", e.source)))?;
            }
            if entries.insert(e.source.clone(), e.clone()).is_some() {
                return Err(bad(format!("plugin `{}` is listed twice", e.source)));
            }
        }
        Ok(Lockfile { entries })
    }

    /// The TOML text (entries sorted by source).
    pub fn to_toml(&self) -> String {
        let repr = Repr {
            version: LOCK_VERSION,
            plugins: self.entries.values().cloned().collect(),
        };
        let body = toml::to_string(&repr).unwrap_or_default();
        format!("{HEADER}{body}")
    }

    /// Writes the lock to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::cache::write_atomic(path, self.to_toml().as_bytes())
    }

    /// The entry pinning `source`.
    pub fn get(&self, source: &str) -> Option<&LockEntry> {
        self.entries.get(source)
    }

    /// Adds or replaces the entry for its source.
    pub fn insert(&mut self, entry: LockEntry) {
        self.entries.insert(entry.source.clone(), entry);
    }

    /// Removes the entry for `source`.
    pub fn remove(&mut self, source: &str) -> Option<LockEntry> {
        self.entries.remove(source)
    }

    /// Keeps only the entries whose source satisfies `keep` (drop plugins no longer used).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.entries.retain(|k, _| keep(k));
    }

    /// All entries, sorted by source.
    pub fn entries(&self) -> impl Iterator<Item = &LockEntry> {
        self.entries.values()
    }

    /// Whether the lock pins nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: &str, signer: Option<&str>) -> LockEntry {
        LockEntry {
            source: source.to_string(),
            manifest_digest: format!("sha256:{}", "a".repeat(64)),
            layer_digest: format!("sha256:{}", "b".repeat(64)),
            media_type: "application/wasm".to_string(),
            signer: signer.map(str::to_string),
            resolved_at: "2026-11-29T00:00:00Z".to_string(),
        }
    }

    #[test]
    fn round_trip_sorted_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("barbacane.lock");
        assert!(Lockfile::read(&path).unwrap().is_empty());
        let mut lock = Lockfile::default();
        lock.insert(entry("oci://z.io/b:1", None));
        lock.insert(entry("oci://a.io/a:1", Some("ff")));
        lock.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# barbacane.lock"));
        assert!(text.find("a.io").unwrap() < text.find("z.io").unwrap());
        assert_eq!(text.matches("signer").count(), 1);
        let back = Lockfile::read(&path).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.to_toml(), text);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");

        std::fs::write(&path, "version = 7\n").unwrap();
        assert_eq!(
            Lockfile::read(&path).unwrap_err().kind(),
            crate::ErrorKind::BadFile
        );
        std::fs::write(&path, "version = 1\n[[plugin]]\nsource = \"x\"\n").unwrap();
        assert!(Lockfile::read(&path).is_err());
    }
}

//! The `.bca` artifact: one tar file holding `manifest.json` (format version, compiler version,
//! source digests, route summary, sha256 of every other entry), `routes.json` (the compiled
//! [`Api`]), the plugin modules under `plugins/` and the source files under `sources/`.
//!
//! Writing is atomic (temp file + rename), so a failed compile never leaves a partial artifact.
//! Reading checks every digest before anything is used, and tells a corrupt or truncated file, a
//! tampered one and one from a newer barbacane apart (the CLI maps each to its own exit code).
//! The bytes are deterministic: the same inputs give the same artifact.

use crate::compile::Compiled;
use crate::model::Api;
use crate::spec::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The artifact format this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "barbacane-artifact";
const MANIFEST: &str = "manifest.json";
const ROUTES: &str = "routes.json";
const PLUGINS_DIR: &str = "plugins/";
/// Refuse to load absurdly large artifacts instead of exhausting memory.
const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Always `barbacane-artifact`.
    pub format: String,
    /// Artifact format version.
    pub format_version: u32,
    /// Version of the barbacane that compiled it.
    pub compiler_version: String,
    /// Compiled with `--dev`.
    pub dev: bool,
    /// Every source file with its sha256.
    pub sources: Vec<SourceDigest>,
    /// One line per route, for people and tools reading the manifest.
    pub routes: Vec<RouteSummary>,
    /// Digest of every other entry in the archive.
    pub entries: Vec<EntryDigest>,
}

/// A source file's digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceDigest {
    /// The path as given to the compiler.
    pub name: String,
    /// sha256, hex.
    pub sha256: String,
}

/// A route in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteSummary {
    /// HTTP method.
    pub method: String,
    /// Path template.
    pub path: String,
    /// Operation id.
    pub operation: String,
}

/// An archive entry's digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EntryDigest {
    /// Entry name inside the archive.
    pub name: String,
    /// sha256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// A loaded (and verified) artifact.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Its manifest.
    pub manifest: Manifest,
    /// The compiled API.
    pub api: Api,
    /// Plugin name → module bytes.
    pub plugins: BTreeMap<String, Vec<u8>>,
}

/// Why an artifact cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The file cannot be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The artifact path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not an artifact, or cut short.
    #[error("{0}")]
    Corrupt(String),
    /// An entry does not match the digest the manifest records.
    #[error("{0}")]
    Tampered(String),
    /// Written by a newer barbacane.
    #[error(
        "artifact format {found} is newer than this barbacane reads (up to {FORMAT_VERSION}); upgrade barbacane"
    )]
    NewerFormat {
        /// The version found.
        found: u32,
    },
}

impl Artifact {
    /// The artifact `compiled` would be written as.
    pub fn from_compiled(compiled: &Compiled, dev: bool) -> Artifact {
        Artifact {
            manifest: Manifest {
                format: FORMAT_NAME.to_string(),
                format_version: FORMAT_VERSION,
                compiler_version: env!("CARGO_PKG_VERSION").to_string(),
                dev,
                sources: compiled
                    .sources
                    .iter()
                    .map(|s| SourceDigest {
                        name: s.name.clone(),
                        sha256: s.sha256.clone(),
                    })
                    .collect(),
                routes: compiled
                    .api
                    .operations
                    .iter()
                    .map(|op| RouteSummary {
                        method: op.method.clone(),
                        path: op.path.clone(),
                        operation: op.id.clone(),
                    })
                    .collect(),
                entries: Vec::new(),
            },
            api: compiled.api.clone(),
            plugins: compiled.plugins.clone(),
        }
    }
}

/// Writes `compiled` to `path` atomically.
pub fn write(path: &Path, compiled: &Compiled, dev: bool) -> Result<Manifest, ArtifactError> {
    let io_err = |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut artifact = Artifact::from_compiled(compiled, dev);
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let routes = serde_json::to_vec(&artifact.api).map_err(|e| io_err(std::io::Error::other(e)))?;
    entries.push((ROUTES.to_string(), routes));
    for (name, bytes) in &compiled.plugins {
        entries.push((format!("{PLUGINS_DIR}{name}.wasm"), bytes.clone()));
    }
    for (i, source) in compiled.sources.iter().enumerate() {
        let base = Path::new(&source.name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        entries.push((
            format!("sources/{i}-{base}"),
            source.text.clone().into_bytes(),
        ));
    }
    artifact.manifest.entries = entries
        .iter()
        .map(|(name, bytes)| EntryDigest {
            name: name.clone(),
            sha256: hex(&Sha256::digest(bytes)),
            size: bytes.len() as u64,
        })
        .collect();
    let manifest = serde_json::to_vec_pretty(&artifact.manifest)
        .map_err(|e| io_err(std::io::Error::other(e)))?;

    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
    {
        let mut builder = tar::Builder::new(&mut tmp);
        for (name, bytes) in std::iter::once((MANIFEST.to_string(), manifest)).chain(entries) {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, &name, bytes.as_slice())
                .map_err(io_err)?;
        }
        builder.finish().map_err(io_err)?;
    }
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(artifact.manifest)
}

/// Reads and verifies the artifact at `path`.
pub fn read(path: &Path) -> Result<Artifact, ArtifactError> {
    let io_err = |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let corrupt = |why: String| {
        ArtifactError::Corrupt(format!("{} is not a valid artifact: {why}", path.display()))
    };
    let mut archive = tar::Archive::new(file.take(MAX_ARTIFACT_BYTES));
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let entries = archive.entries().map_err(|e| corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(format!("{e} (truncated?)")))?;
        let name = entry
            .path()
            .map_err(|e| corrupt(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(format!("entry {name}: {e} (truncated?)")))?;
        files.insert(name, bytes);
    }
    let manifest_bytes = files
        .remove(MANIFEST)
        .ok_or_else(|| corrupt(String::from("no manifest.json")))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| corrupt(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT_NAME {
        return Err(corrupt(format!("unknown format '{}'", manifest.format)));
    }
    if manifest.format_version > FORMAT_VERSION {
        return Err(ArtifactError::NewerFormat {
            found: manifest.format_version,
        });
    }
    let mut plugins = BTreeMap::new();
    for entry in &manifest.entries {
        let bytes = files
            .remove(&entry.name)
            .ok_or_else(|| corrupt(format!("entry {} is missing (truncated?)", entry.name)))?;
        if hex(&Sha256::digest(&bytes)) != entry.sha256 {
            return Err(ArtifactError::Tampered(format!(
                "{}: entry {} does not match its sha256 in the manifest (modified after compile)",
                path.display(),
                entry.name
            )));
        }
        if entry.name == ROUTES {
            files.insert(ROUTES.to_string(), bytes);
        } else if let Some(plugin) = entry
            .name
            .strip_prefix(PLUGINS_DIR)
            .and_then(|n| n.strip_suffix(".wasm"))
        {
            plugins.insert(plugin.to_string(), bytes);
        }
    }
    if let Some(extra) = files.keys().find(|k| k.as_str() != ROUTES) {
        return Err(ArtifactError::Tampered(format!(
            "{}: entry {extra} is not listed in the manifest (added after compile)",
            path.display()
        )));
    }
    let routes = files
        .get(ROUTES)
        .ok_or_else(|| corrupt(String::from("no routes.json")))?;
    let api: Api =
        serde_json::from_slice(routes).map_err(|e| corrupt(format!("routes.json: {e}")))?;
    if let Some(missing) = api.plugins.keys().find(|name| !plugins.contains_key(*name)) {
        return Err(corrupt(format!("plugin {missing} is missing")));
    }
    Ok(Artifact {
        manifest,
        api,
        plugins,
    })
}

//! `oci://` plugin sources: resolves a project's before compiling, through the registry crate
//! ([`barbacane_registry::Registry::resolve`]: verify the signature against `trust.keys`, pull by
//! the verified digest, check the layer), and keeps `barbacane.lock` beside the manifest.
//!
//! Two modes:
//!
//! * [`Mode::Resolve`] (`compile`, `serve --spec`): every declared `oci://` source is resolved,
//!   pinned by the lock's digest unless `update`; the new lock is returned for the caller to write
//!   once the artifact is written ([`Resolution::write_lock`]). An entry whose digests and signer
//!   did not change keeps its `resolved_at`, so an unchanged project leaves the lock untouched.
//! * [`Mode::Offline`] (`validate`): no network. A source pinned in the lock whose layer is in the
//!   local cache is used (re-checked as a Proxy-Wasm module); the others are reported as
//!   unchecked.

use crate::compile::OciModules;
use crate::project::{self, Project};
use barbacane_registry::{
    Cache, Error, LockEntry, Lockfile, Options, Progress, Registry, TrustPolicy,
};
use std::path::{Path, PathBuf};

/// The lock's file name, beside the manifest.
pub const LOCK_FILE: &str = "barbacane.lock";

/// How `oci://` sources are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From the lock and the local cache only.
    Offline,
    /// From the registries; `update` ignores the lock's digests.
    Resolve {
        /// Re-resolve tags instead of using the lock's digests.
        update: bool,
    },
}

/// The resolved `oci://` plugins of a project.
#[derive(Debug, Default)]
pub struct Resolution {
    /// The modules, for [`crate::compile::compile_with`].
    pub modules: OciModules,
    /// (plugin, source) of the sources left unresolved ([`Mode::Offline`] only).
    pub unchecked: Vec<(String, String)>,
    /// The lock to write, and where, when it changed ([`Mode::Resolve`] only).
    lock: Option<(Lockfile, PathBuf)>,
}

impl Resolution {
    /// Writes `barbacane.lock` if resolving changed it; returns its path when written.
    pub fn write_lock(&self) -> Result<Option<&Path>, Error> {
        match &self.lock {
            Some((lock, path)) => {
                lock.write(path)?;
                Ok(Some(path))
            }
            None => Ok(None),
        }
    }
}

/// Resolves the `oci://` sources of the project at `manifest` (nothing to do without one). A
/// manifest that does not load resolves to nothing: the compiler then reports its diagnostics.
pub fn resolve(
    manifest: Option<&Path>,
    mode: Mode,
    progress: &dyn Progress,
) -> Result<Resolution, Error> {
    let Some(manifest) = manifest else {
        return Ok(Resolution::default());
    };
    let Ok((project, _)) = project::load(manifest) else {
        return Ok(Resolution::default());
    };
    let sources = project.oci_sources();
    if sources.is_empty() {
        return Ok(Resolution::default());
    }
    let lock_path = lock_path(manifest);
    let old = Lockfile::read(&lock_path)?;
    match mode {
        Mode::Offline => Ok(offline(&sources, &old)),
        Mode::Resolve { update } => {
            resolve_online(&project, &sources, old, lock_path, update, progress)
        }
    }
}

/// `barbacane.lock` beside `manifest`.
pub fn lock_path(manifest: &Path) -> PathBuf {
    manifest.parent().unwrap_or(Path::new("")).join(LOCK_FILE)
}

fn offline(sources: &[(&str, &str)], lock: &Lockfile) -> Resolution {
    let cache = Cache::from_env();
    let mut resolution = Resolution {
        modules: OciModules {
            offline: true,
            ..OciModules::default()
        },
        ..Resolution::default()
    };
    for (name, source) in sources {
        let bytes = lock
            .get(source)
            .filter(|entry| is_module_layer(entry))
            .and_then(|entry| cache.as_ref()?.get(&entry.layer_digest).ok().flatten())
            .filter(|bytes| barbacane_registry::check_module(bytes, source).is_ok());
        match bytes {
            Some(bytes) => {
                resolution
                    .modules
                    .modules
                    .insert((*source).to_string(), bytes);
            }
            None => resolution
                .unchecked
                .push(((*name).to_string(), (*source).to_string())),
        }
    }
    resolution
}

/// Whether the locked layer is the module itself (not a tar.gz holding it).
fn is_module_layer(entry: &LockEntry) -> bool {
    matches!(
        entry.media_type.as_str(),
        "application/wasm"
            | "application/vnd.wasm.content.layer.v1+wasm"
            | "application/vnd.module.wasm.content.layer.v1+wasm"
    )
}

fn resolve_online(
    project: &Project,
    sources: &[(&str, &str)],
    old: Lockfile,
    lock_path: PathBuf,
    update: bool,
    progress: &dyn Progress,
) -> Result<Resolution, Error> {
    let registry = Registry::new(Options {
        insecure: project.insecure_registries.clone(),
        ..Options::default()
    });
    let trust = TrustPolicy {
        keys: project.trust_keys.clone(),
        allow_unsigned: project.trust.allow_unsigned,
    };
    let runtime = runtime()?;
    let mut modules = OciModules::default();
    let mut lock = Lockfile::default();
    for (_, source) in sources {
        let locked = old.get(source);
        let resolved =
            runtime.block_on(registry.resolve(source, &trust, locked, update, progress))?;
        modules
            .modules
            .insert((*source).to_string(), resolved.bytes);
        let entry = match locked {
            Some(prev) if same_pin(prev, &resolved.entry) => prev.clone(),
            _ => resolved.entry,
        };
        lock.insert(entry);
    }
    let changed = lock != old;
    Ok(Resolution {
        modules,
        unchecked: Vec::new(),
        lock: changed.then_some((lock, lock_path)),
    })
}

/// Whether two entries pin the same thing (everything but `resolved_at`).
fn same_pin(a: &LockEntry, b: &LockEntry) -> bool {
    a.source == b.source
        && a.manifest_digest == b.manifest_digest
        && a.layer_digest == b.layer_digest
        && a.media_type == b.media_type
        && a.signer == b.signer
}

/// A runtime for the registry client's futures (the CLI is otherwise synchronous here).
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            path: PathBuf::from("(tokio runtime)"),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(manifest: char, resolved_at: &str) -> LockEntry {
        LockEntry {
            source: "oci://127.0.0.1:5000/f/waf:1".to_string(),
            manifest_digest: format!("sha256:{}", manifest.to_string().repeat(64)),
            layer_digest: format!("sha256:{}", "b".repeat(64)),
            media_type: "application/wasm".to_string(),
            signer: Some("ff".to_string()),
            resolved_at: resolved_at.to_string(),
        }
    }

    #[test]
    fn an_unchanged_pin_ignores_the_resolution_time() {
        let a = entry('a', "2026-01-01T00:00:00Z");
        assert!(same_pin(&a, &entry('a', "2026-02-02T00:00:00Z")));
        assert!(!same_pin(&a, &entry('c', "2026-01-01T00:00:00Z")));
        let mut unsigned = a.clone();
        unsigned.signer = None;
        assert!(!same_pin(&a, &unsigned));
    }

    #[test]
    fn only_raw_module_layers_are_used_offline() {
        let mut e = entry('a', "");
        assert!(is_module_layer(&e));
        e.media_type = "application/vnd.oci.image.layer.v1.tar+gzip".to_string();
        assert!(!is_module_layer(&e));
    }

    #[test]
    fn the_lock_lives_beside_the_manifest() {
        assert_eq!(
            lock_path(Path::new("proj/barbacane.yaml")),
            Path::new("proj/barbacane.lock")
        );
        assert_eq!(
            lock_path(Path::new("barbacane.yaml")),
            Path::new("barbacane.lock")
        );
    }
}

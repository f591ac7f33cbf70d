//! A plugin crate seen from its tests: its `.wasm` built from source for `wasm32-wasip1`, its
//! `plugin.toml`, and its configuration JSON Schema.

use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Builds the plugin crate at `manifest_dir` with `cargo build --release --target wasm32-wasip1`
/// and returns its `.wasm`. Call it with `Path::new(env!("CARGO_MANIFEST_DIR"))` from the
/// plugin's own tests. Each crate is built once per test binary (cargo makes a rebuild of
/// unchanged sources a no-op anyway). Panics, failing the test, with the compiler's output when
/// the build fails or the `wasm32-wasip1` target is missing.
pub fn build_plugin(manifest_dir: &Path) -> Vec<u8> {
    static BUILT: OnceLock<Mutex<HashMap<PathBuf, Vec<u8>>>> = OnceLock::new();
    // Held for the whole build: tests running in parallel wait for one build instead of racing
    // cargo for its lock. A panicking build leaves nothing behind worth protecting.
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let manifest = manifest_dir.join("Cargo.toml");
    let manifest = manifest
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    if let Some(wasm) = built.get(&manifest) {
        return wasm.clone();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip1"])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    if !output.status.success() {
        panic!(
            "building {} for wasm32-wasip1 failed (is the target installed? \
             `rustup target add wasm32-wasip1`):\n{}",
            manifest.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let file =
        wasm_artifact(&String::from_utf8_lossy(&output.stdout), &manifest).unwrap_or_else(|| {
            panic!(
                "cargo built no .wasm for {} (is it a crate-type = [\"cdylib\"] library?)",
                manifest.display()
            )
        });
    let wasm = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    built.insert(manifest, wasm.clone());
    wasm
}

/// The `.wasm` that cargo's JSON messages report for the package whose manifest is `manifest`.
fn wasm_artifact(messages: &str, manifest: &Path) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["manifest_path"].as_str().map(Path::new) == Some(manifest))
        .filter_map(|m| m["filenames"].as_array().cloned())
        .flatten()
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
}

/// `plugin.toml`: what the gateway and the registry know about a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PluginManifest {
    /// The name a spec uses in `x-barbacane-middlewares`.
    pub name: String,
    /// The plugin's version (semver).
    pub version: String,
    /// `auth`, `transform`, `traffic` or `logging`.
    pub kind: String,
    /// The Proxy-Wasm ABI version the module is built for (`0.2.1`).
    pub abi: String,
    /// The configuration's JSON Schema, relative to `plugin.toml`.
    pub schema: String,
    /// One line saying what the plugin does.
    pub description: String,
    /// What it does beyond filtering its own streams: `http-calls`, `grpc-calls`, `shared-data`,
    /// `shared-queues`, `metrics`, `timers`, `foreign-functions` (none when absent).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// The kinds a plugin may declare.
pub const KINDS: [&str; 4] = ["auth", "transform", "traffic", "logging"];

/// Reads `plugin.toml` in `manifest_dir` and checks it: every field present, a known `kind`,
/// ABI `0.2.1`, a lowercase dashed name, known capabilities. Panics, failing the test, with what is wrong.
pub fn plugin_manifest(manifest_dir: &Path) -> PluginManifest {
    let path = manifest_dir.join("plugin.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: PluginManifest =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let named = !manifest.name.is_empty()
        && manifest
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    assert!(
        named,
        "{}: name must be lowercase letters, digits and dashes",
        path.display()
    );
    assert!(
        KINDS.contains(&manifest.kind.as_str()),
        "{}: kind must be one of {KINDS:?}",
        path.display()
    );
    assert_eq!(manifest.abi, "0.2.1", "{}: abi", path.display());
    for capability in &manifest.capabilities {
        assert!(
            barbacane::proxywasm::Capability::from_name(capability).is_some(),
            "{}: unknown capability '{capability}' (known: {:?})",
            path.display(),
            barbacane::proxywasm::Capability::ALL.map(|c| c.name())
        );
    }
    manifest
}

/// Checks `config` against the plugin's JSON Schema (named by `plugin.toml` in
/// `manifest_dir`), as JSON Schema 2020-12 with formats, the dialect the gateway uses for
/// OpenAPI 3.1. Returns each violation as `pointer: message`. Panics when the schema itself is
/// missing or invalid.
pub fn check_config(manifest_dir: &Path, config: &Value) -> Result<(), Vec<String>> {
    let manifest = plugin_manifest(manifest_dir);
    let path = manifest_dir.join(&manifest.schema);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let validator =
        barbacane::validate::compile_schema(&schema, barbacane::spec::bundle::Dialect::OpenApi31)
            .unwrap_or_else(|e| panic!("{}: not a valid JSON Schema: {e}", path.display()));
    let errors: Vec<String> = validator
        .iter_errors(config)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_wasm_of_the_package() {
        let messages = [
            r#"{"reason":"compiler-artifact","manifest_path":"/p/dep/Cargo.toml","filenames":["/t/dep.wasm"]}"#,
            r#"{"reason":"build-script-executed","manifest_path":"/p/me/Cargo.toml"}"#,
            "not json",
            r#"{"reason":"compiler-artifact","manifest_path":"/p/me/Cargo.toml","filenames":["/t/libme.rlib","/t/me.wasm"]}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(
            wasm_artifact(&messages, Path::new("/p/me/Cargo.toml")),
            Some(PathBuf::from("/t/me.wasm"))
        );
        assert_eq!(
            wasm_artifact(&messages, Path::new("/p/other/Cargo.toml")),
            None
        );
    }
}

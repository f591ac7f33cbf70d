//! The optional project manifest, `barbacane.yaml`: plugin sources and the trust policy.
//! `file:` sources (and plugin `schema:` files) are read relative to the manifest; `builtin:`
//! sources name a plugin embedded in the binary ([`crate::builtins`]); `oci://` sources name a
//! plugin in an OCI registry (their syntax is checked here; [`crate::oci`] resolves them). A
//! built-in needs no entry: a middleware may name it directly, and an entry of the same name
//! overrides it. `trust.keys` files are read relative to the manifest and checked here.

use crate::builtins::{self, Builtin};
use crate::compile::SourceFile;
use crate::diag::{Code, Diagnostic, Location};
use crate::spec::{hex, yaml};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `barbacane.yaml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Plugin name → where its module comes from.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSource>,
    /// Which keys may sign `oci://` plugins.
    #[serde(default)]
    pub trust: Trust,
    /// Registries (`host` or `host:port`) spoken to over plain HTTP besides loopback ones.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// The manifest's directory, which `file:` sources are relative to.
    #[serde(skip)]
    pub dir: PathBuf,
    /// Plugin name → the JSON Schema its `schema:` file holds (read and checked by [`load`]).
    #[serde(skip)]
    pub schemas: BTreeMap<String, Value>,
    /// The `trust.keys` files' contents (`PUBLIC KEY` PEM), in order (read and checked by
    /// [`load`]).
    #[serde(skip)]
    pub trust_keys: Vec<String>,
}

/// Where a plugin's module comes from, once its name is resolved.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A `file:` source, resolved against the manifest's directory.
    File(PathBuf),
    /// A built-in plugin: named by a `builtin:` source, or by a middleware with no entry.
    Builtin(&'static Builtin),
    /// An `oci://` source, as written (resolved by [`crate::oci`] before compiling).
    Oci(String),
}

impl Project {
    /// Where plugin `name`'s module comes from: its entry in the manifest, or else the built-in
    /// of that name. `None` when it is neither.
    pub fn origin(&self, name: &str) -> Option<Origin> {
        let Some(entry) = self.plugins.get(name) else {
            return builtins::find(name).map(Origin::Builtin);
        };
        if let Some(path) = entry.source.strip_prefix("file:") {
            Some(Origin::File(self.dir.join(path)))
        } else if is_oci(&entry.source) {
            Some(Origin::Oci(entry.source.clone()))
        } else {
            entry
                .source
                .strip_prefix("builtin:")
                .and_then(builtins::find)
                .map(Origin::Builtin)
        }
    }

    /// The `oci://` sources of the declared plugins: (plugin name, source), by name.
    pub fn oci_sources(&self) -> Vec<(&str, &str)> {
        self.plugins
            .iter()
            .filter(|(_, p)| is_oci(&p.source))
            .map(|(name, p)| (name.as_str(), p.source.as_str()))
            .collect()
    }
}

/// Whether `source` is an `oci://` source.
pub fn is_oci(source: &str) -> bool {
    source.starts_with("oci://")
}

/// A plugin's entry in the manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSource {
    /// `file:PATH`, `builtin:NAME` or `oci://REGISTRY/REPO[:TAG|@DIGEST]`.
    pub source: String,
    /// A JSON Schema file (JSON or YAML, relative to the manifest) that the plugin's
    /// configuration must match; a built-in's own schema applies without one.
    #[serde(default)]
    pub schema: Option<String>,
}

/// The trust policy for OCI plugins.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// Public keys (cosign format) whose signatures are accepted.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Accept unsigned plugins.
    #[serde(default)]
    pub allow_unsigned: bool,
}

/// Reads and checks the manifest at `path`; returns it with every file read (the manifest first,
/// then the plugins' schema files).
pub fn load(path: &Path) -> Result<(Project, Vec<SourceFile>), Diagnostic> {
    let name = path.display().to_string();
    let at = |line, column| Location {
        file: name.clone(),
        line,
        column,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::new(
            Code::E1001,
            at(1, 1),
            format!("cannot read {name}: {e}"),
            "check the --manifest path",
        )
    })?;
    let parsed = yaml::parse(&text).map_err(|e| {
        Diagnostic::new(
            Code::E1002,
            at(e.line, e.column),
            format!("invalid YAML: {}", e.message),
            "fix the syntax at this position",
        )
    })?;
    let value = match parsed.value {
        serde_json::Value::Null => serde_json::json!({}),
        v => v,
    };
    let mut project: Project = serde_json::from_value(value).map_err(|e| {
        Diagnostic::new(
            Code::E1070,
            at(1, 1),
            format!("invalid project manifest: {e}"),
            "the manifest has 'plugins: {name: {source: …}}', 'trust: {keys: […], allow_unsigned: false}' \
             and 'insecure_registries: [host:port]'",
        )
    })?;
    let position = |pointer: &str| {
        let (line, column) = parsed.positions.get(pointer).copied().unwrap_or((1, 1));
        at(line, column)
    };
    for (plugin, source) in &project.plugins {
        let problem = if is_oci(&source.source) {
            match barbacane_registry::PluginRef::parse(&source.source) {
                Ok(_) => continue,
                Err(e) => e.to_string(),
            }
        } else if let Some(builtin) = source.source.strip_prefix("builtin:") {
            if builtins::find(builtin).is_some() {
                continue;
            }
            format!("names no built-in plugin (built-ins: {})", builtin_names())
        } else if !source.source.starts_with("file:") {
            String::from("is neither file:, builtin: nor oci://")
        } else {
            continue;
        };
        return Err(Diagnostic::new(
            Code::E1070,
            position(&yaml::pointer_push(&entry_pointer(plugin), "source")),
            format!("plugin '{plugin}': source '{}' {problem}", source.source),
            "write 'file:path/to/plugin.wasm' (relative to barbacane.yaml), 'builtin:NAME' \
             or 'oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]'",
        ));
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for (i, key) in project.trust.keys.iter().enumerate() {
        let at = position(&format!("/trust/keys/{i}"));
        project.trust_keys.push(load_trust_key(&dir.join(key), at)?);
    }
    let mut files = Vec::new();
    for (plugin, source) in &project.plugins {
        if let Some(schema) = &source.schema {
            let at = position(&yaml::pointer_push(&entry_pointer(plugin), "schema"));
            let (value, file) = load_schema(plugin, &dir.join(schema), at)?;
            project.schemas.insert(plugin.clone(), value);
            files.push(file);
        }
    }
    project.dir = dir;
    let manifest = SourceFile {
        name,
        sha256: hex(&Sha256::digest(text.as_bytes())),
        text,
    };
    files.insert(0, manifest);
    Ok((project, files))
}

/// Reads a `trust.keys` file and checks that it holds a `PUBLIC KEY` PEM; `at` is its entry.
fn load_trust_key(path: &Path, at: Location) -> Result<String, Diagnostic> {
    let shown = path.display().to_string();
    let fail = |why: String| {
        Diagnostic::new(
            Code::E1070,
            at.clone(),
            format!("trust key {shown}: {why}"),
            "list cosign public keys (cosign.pub, from `barbacane plugin keygen`) relative to barbacane.yaml",
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    barbacane_registry::key_fingerprint(&text).map_err(|e| fail(e.to_string()))?;
    Ok(text)
}

/// The JSON pointer of plugin `plugin`'s entry in the manifest.
fn entry_pointer(plugin: &str) -> String {
    yaml::pointer_push("/plugins", plugin)
}

/// Reads plugin `plugin`'s schema file and checks that it is a JSON Schema; `at` is its
/// `schema:` entry in the manifest.
fn load_schema(plugin: &str, path: &Path, at: Location) -> Result<(Value, SourceFile), Diagnostic> {
    let shown = path.display().to_string();
    let fail = |why: String| {
        Diagnostic::new(
            Code::E1070,
            at.clone(),
            format!("plugin '{plugin}': schema {shown}: {why}"),
            "point schema: at a JSON Schema file (JSON or YAML), relative to barbacane.yaml",
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let parsed = yaml::parse(&text).map_err(|e| {
        fail(format!(
            "invalid YAML/JSON at {}:{}: {}",
            e.line, e.column, e.message
        ))
    })?;
    crate::compile::plugin_schema(&parsed.value)
        .map_err(|e| fail(format!("not a valid JSON Schema: {e}")))?;
    let file = SourceFile {
        name: shown,
        sha256: hex(&Sha256::digest(text.as_bytes())),
        text,
    };
    Ok((parsed.value, file))
}

/// The built-ins' names, for messages.
pub fn builtin_names() -> String {
    let names: Vec<&str> = builtins::all().iter().map(|b| b.name).collect();
    if names.is_empty() {
        String::from("none in this build")
    } else {
        names.join(", ")
    }
}

//! The built-in plugins: Proxy-Wasm modules from `plugins/`, built for `wasm32-wasip1` and
//! embedded in the binary by `host/build.rs`, each with its `plugin.toml` fields and the JSON
//! Schema of its configuration. A middleware may name one without declaring it in
//! `barbacane.yaml`; the compiler then checks its config against the schema and bundles its
//! module into the artifact like any other plugin's. The table is empty in a binary built with
//! `BARBACANE_NO_BUILTINS=1`.

use std::fmt;

/// What a plugin is for (`kind` in `plugin.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Authenticates or authorises requests.
    Auth,
    /// Rewrites requests or responses.
    Transform,
    /// Shapes traffic (rate limits, …).
    Traffic,
    /// Records requests.
    Logging,
}

impl Kind {
    /// The `plugin.toml` spelling: `auth`, `transform`, `traffic`, `logging`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Auth => "auth",
            Kind::Transform => "transform",
            Kind::Traffic => "traffic",
            Kind::Logging => "logging",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One built-in plugin.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The name a middleware uses (`plugin.toml` `name`).
    pub name: &'static str,
    /// The plugin's version.
    pub version: &'static str,
    /// What it is for.
    pub kind: Kind,
    /// The Proxy-Wasm ABI version it is built for, e.g. `0.2.1`.
    pub abi: &'static str,
    /// One line about what it does.
    pub description: &'static str,
    /// What it does beyond filtering its own streams (`http-calls`, `shared-data`, …; see
    /// [`crate::proxywasm::Capability`]), as `plugin.toml` declares it.
    pub capabilities: &'static [&'static str],
    /// The JSON Schema (2020-12 unless it says otherwise) of its configuration.
    pub schema: &'static str,
    /// The Wasm module.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// Every built-in plugin, sorted by name.
pub fn all() -> &'static [Builtin] {
    BUILTINS
}

/// The built-in plugin called `name`.
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

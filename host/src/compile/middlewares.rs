//! `x-barbacane-middlewares`: the Proxy-Wasm filter chains. Each plugin named must come from the
//! project manifest; its module is compiled and every distinct (plugin, configuration) is started
//! once, as `serve` will start it, so a plugin that rejects its configuration fails the build
//! with the plugin's name and its own explanation.

use super::Compiler;
use crate::diag::Code;
use crate::model::{FailurePolicy, Middleware};
use crate::proxywasm::{self, PluginConfig, PluginModule, Vm};
use crate::spec::NodeRef;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// Plugin state gathered while compiling.
#[derive(Default)]
pub(super) struct Plugins {
    engine: Option<wasmtime::Engine>,
    /// Name → compiled module (`None` once it has failed, so it is reported once).
    modules: std::collections::BTreeMap<String, Option<PluginModule>>,
    /// Name → module bytes, for the artifact.
    pub(super) bytes: std::collections::BTreeMap<String, Vec<u8>>,
    /// Chain entries already started successfully.
    started: std::collections::HashSet<Middleware>,
}

impl Compiler {
    /// The chain at `at`, or `None` when the node is absent (the caller then inherits a chain).
    pub(super) fn middlewares(&mut self, at: &NodeRef) -> Option<Vec<Middleware>> {
        let value = self.value(at)?;
        let Value::Array(entries) = value else {
            self.error(
                Code::E1005,
                at,
                "x-barbacane-middlewares must be a list",
                "write '- name: plugin' entries",
            );
            return Some(Vec::new());
        };
        let mut chain = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            if let Some(middleware) = self.middleware(&at.child(&i.to_string()), entry) {
                chain.push(middleware);
            }
        }
        Some(chain)
    }

    fn middleware(&mut self, at: &NodeRef, entry: Value) -> Option<Middleware> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            name: String,
            config: Option<Value>,
            root_id: Option<String>,
            vm_config: Option<Value>,
            #[serde(default)]
            failure: FailurePolicy,
        }
        let raw: Raw = match serde_json::from_value(entry) {
            Ok(raw) => raw,
            Err(e) => {
                self.error(
                    Code::E1005,
                    at,
                    format!("invalid middleware: {e}"),
                    "a middleware is {name, config, root_id, vm_config, failure: closed|open}",
                );
                return None;
            }
        };
        let middleware = Middleware {
            config: as_plugin_text(raw.config),
            vm_config: as_plugin_text(raw.vm_config),
            root_id: raw.root_id.unwrap_or_default(),
            failure: raw.failure,
            plugin: raw.name,
        };
        self.start_once(at, &middleware).then_some(middleware)
    }

    /// Compiles the plugin's module (once) and starts this chain entry (once per distinct entry).
    fn start_once(&mut self, at: &NodeRef, middleware: &Middleware) -> bool {
        if self.plugins.started.contains(middleware) {
            return true;
        }
        let name = middleware.plugin.clone();
        if !self.plugins.modules.contains_key(&name) {
            let module = self.load_module(at, &name);
            self.plugins.modules.insert(name.clone(), module);
        }
        let (Some(Some(module)), Some(engine)) =
            (self.plugins.modules.get(&name), &self.plugins.engine)
        else {
            return false;
        };
        // Callouts cannot happen while a plugin starts, so no upstream names are needed.
        let config = PluginConfig::for_middleware(middleware, Arc::from(Vec::new()));
        match Vm::start(engine, module, config) {
            Ok(_) => {
                self.plugins.started.insert(middleware.clone());
                true
            }
            Err(e) => {
                self.error(
                    Code::E1061,
                    at,
                    e.to_string(),
                    "fix the middleware's config (or vm_config) so the plugin accepts it",
                );
                false
            }
        }
    }

    fn load_module(&mut self, at: &NodeRef, name: &str) -> Option<PluginModule> {
        let Some(file) = self.project.plugin_file(name) else {
            let hint = if self.project.plugins.is_empty() {
                String::from(
                    "declare it in barbacane.yaml: plugins: {NAME: {source: 'file:NAME.wasm'}}, and pass --manifest",
                )
            } else {
                let known: Vec<&str> = self.project.plugins.keys().map(String::as_str).collect();
                format!(
                    "declare it under plugins: in barbacane.yaml (known: {})",
                    known.join(", ")
                )
            };
            self.error(Code::E1060, at, format!("unknown plugin '{name}'"), &hint);
            return None;
        };
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) => {
                self.error(
                    Code::E1061,
                    at,
                    format!("plugin '{name}': cannot read {}: {e}", file.display()),
                    "check the plugin's file: source in barbacane.yaml",
                );
                return None;
            }
        };
        if self.plugins.engine.is_none() {
            match proxywasm::engine() {
                Ok(engine) => self.plugins.engine = Some(engine),
                Err(e) => {
                    self.error(Code::E1061, at, e.to_string(), "this is a bug in barbacane");
                    return None;
                }
            }
        }
        let engine = self.plugins.engine.as_ref()?;
        match PluginModule::compile(engine, &bytes) {
            Ok(module) => {
                self.plugins.bytes.insert(name.to_string(), bytes);
                Some(module)
            }
            Err(e) => {
                self.error(
                    Code::E1061,
                    at,
                    format!("plugin '{name}' ({}): {e}", file.display()),
                    "build the plugin as a Proxy-Wasm module (e.g. for wasm32-wasip1 with the proxy-wasm crate)",
                );
                None
            }
        }
    }
}

/// A plugin receives its configuration as bytes: strings as they are, anything else as JSON.
fn as_plugin_text(value: Option<Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

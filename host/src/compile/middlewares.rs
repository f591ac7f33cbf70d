//! `x-barbacane-middlewares`: the Proxy-Wasm filter chains. Each plugin named comes from the
//! project manifest (a file, or an `oci://` module resolved before compiling) or, without an
//! entry there, is a built-in ([`crate::builtins`]). Its module
//! is compiled; its configuration is checked against its JSON Schema when it has one (a
//! built-in's, or a manifest `schema:` file), each failure pointing at the offending node; and
//! every distinct (plugin, configuration) is started once, as `serve` will start it, so a plugin
//! that rejects its configuration fails the build with the plugin's name and its own explanation.

use super::Compiler;
use crate::diag::Code;
use crate::model::{Backoff, FailurePolicy, Middleware};
use crate::project::{self, Origin};
use crate::proxywasm::{self, PluginConfig, PluginModule, Vm};
use crate::spec::NodeRef;
use jsonschema::Validator;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// Compiles a plugin's configuration schema: JSON Schema 2020-12 unless its `$schema` names
/// another draft, formats checked. An invalid schema is an error.
pub fn plugin_schema(schema: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| e.to_string())
}

/// A plugin ready to start.
struct Loaded {
    module: PluginModule,
    /// Its configuration schema, if it has one.
    schema: Option<Validator>,
    /// The hint of a config that does not match it: where to read the schema.
    schema_hint: String,
}

/// Plugin state gathered while compiling.
#[derive(Default)]
pub(super) struct Plugins {
    engine: Option<wasmtime::Engine>,
    /// Name → loaded plugin (`None` once it has failed, so it is reported once).
    modules: std::collections::BTreeMap<String, Option<Loaded>>,
    /// Name → module bytes, for the artifact.
    pub(super) bytes: std::collections::BTreeMap<String, Vec<u8>>,
    /// Chain entries already started successfully.
    started: std::collections::HashSet<Middleware>,
    /// `oci://` plugins not resolved while offline: their middlewares are kept unchecked.
    unchecked: std::collections::BTreeSet<String>,
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
            deadline: Option<Value>,
            backoff: Option<Value>,
            allow_on_headers_stop_iteration: Option<Value>,
        }
        let raw: Raw = match serde_json::from_value(entry) {
            Ok(raw) => raw,
            Err(e) => {
                self.error(
                    Code::E1005,
                    at,
                    format!("invalid middleware: {e}"),
                    "a middleware is {name, config, root_id, vm_config, failure: closed|open, deadline, backoff, allow_on_headers_stop_iteration}",
                );
                return None;
            }
        };
        let deadline_ms = match raw.deadline {
            None => crate::model::default_deadline_ms(),
            Some(value) => self.deadline(&at.child("deadline"), value)?,
        };
        let backoff = match raw.backoff {
            None => Backoff::default(),
            Some(value) => self.backoff(&at.child("backoff"), value)?,
        };
        let allow_on_headers_stop_iteration = match raw.allow_on_headers_stop_iteration {
            None => false,
            Some(Value::Bool(allow)) => allow,
            Some(value) => {
                self.error(
                    Code::E1005,
                    &at.child("allow_on_headers_stop_iteration"),
                    format!("invalid allow_on_headers_stop_iteration: {value}"),
                    "write true or false",
                );
                return None;
            }
        };
        let loaded = self.load_once(at, &raw.name);
        let unchecked = self.plugins.unchecked.contains(&raw.name);
        if !unchecked && (!loaded || !self.check_config(at, &raw.name, raw.config.as_ref())) {
            return None;
        }
        let middleware = Middleware {
            config: as_plugin_text(raw.config),
            vm_config: as_plugin_text(raw.vm_config),
            root_id: raw.root_id.unwrap_or_default(),
            failure: raw.failure,
            deadline_ms,
            backoff,
            allow_on_headers_stop_iteration,
            plugin: raw.name,
        };
        if unchecked {
            return Some(middleware);
        }
        self.start_once(at, &middleware).then_some(middleware)
    }

    /// A middleware's `deadline`: a duration from 10 ms (the engine's epoch tick) to 1 minute.
    fn deadline(&mut self, at: &NodeRef, value: Value) -> Option<u64> {
        match super::dispatch::parse_duration_ms(&value) {
            Some(ms) if (10..=60_000).contains(&ms) => Some(ms),
            _ => {
                self.error(
                    Code::E1005,
                    at,
                    format!("invalid deadline: {value}"),
                    "write a duration from '10ms' to '1m', such as '50ms' or '2s'",
                );
                None
            }
        }
    }

    /// A middleware's `backoff: {base_interval, max_interval}` (durations; the base defaults to
    /// 1 s, the max to 10 × the base, as Envoy's `BackoffStrategy`).
    fn backoff(&mut self, at: &NodeRef, value: Value) -> Option<Backoff> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            base_interval: Option<Value>,
            max_interval: Option<Value>,
        }
        const HINT: &str = "write {base_interval: 1s, max_interval: 10s}: durations such as '500ms', '5s', '1m' or '1h', the max not below the base";
        let raw: Raw = match serde_json::from_value(value) {
            Ok(raw) => raw,
            Err(e) => {
                self.error(Code::E1005, at, format!("invalid backoff: {e}"), HINT);
                return None;
            }
        };
        let mut duration = |field: &str, value: Option<Value>| -> Option<Option<u64>> {
            let Some(value) = value else {
                return Some(None);
            };
            match super::dispatch::parse_duration_ms(&value) {
                Some(ms) if ms > 0 => Some(Some(ms)),
                _ => {
                    self.error(
                        Code::E1005,
                        &at.child(field),
                        format!("invalid {field}: {value}"),
                        HINT,
                    );
                    None
                }
            }
        };
        let base = duration("base_interval", raw.base_interval);
        let max = duration("max_interval", raw.max_interval);
        let base_ms = base?.unwrap_or(Backoff::default().base_ms);
        let max_ms = max?.unwrap_or(base_ms.saturating_mul(10));
        if max_ms < base_ms {
            self.error(
                Code::E1005,
                &at.child("max_interval"),
                format!("max_interval ({max_ms} ms) is below base_interval ({base_ms} ms)"),
                HINT,
            );
            return None;
        }
        Some(Backoff { base_ms, max_ms })
    }

    /// Loads plugin `name` (once); false when it cannot be used.
    fn load_once(&mut self, at: &NodeRef, name: &str) -> bool {
        if !self.plugins.modules.contains_key(name) {
            let loaded = self.load(at, name);
            self.plugins.modules.insert(name.to_string(), loaded);
        }
        matches!(self.plugins.modules.get(name), Some(Some(_)))
    }

    /// Checks the middleware's `config` against the plugin's schema, if it has one: every
    /// failure is an E1062 at the node it concerns. A string config is checked as the JSON it
    /// holds when it parses (the plugin receives the text), and no config as `{}`.
    fn check_config(&mut self, at: &NodeRef, name: &str, config: Option<&Value>) -> bool {
        let Some(Some(Loaded {
            schema: Some(validator),
            schema_hint,
            ..
        })) = self.plugins.modules.get(name)
        else {
            return true;
        };
        let config_at = at.child("config");
        let (instance, structured) = match config {
            None | Some(Value::Null) => (Value::Object(serde_json::Map::new()), false),
            Some(Value::String(text)) => (
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
                false,
            ),
            Some(value) => (value.clone(), true),
        };
        let failures: Vec<(String, String)> = validator
            .iter_errors(&instance)
            .map(|e| (e.instance_path().to_string(), e.to_string()))
            .collect();
        let hint = schema_hint.clone();
        for (pointer, reason) in &failures {
            // Inside a structured config the failing node itself has a position.
            let node = if structured {
                NodeRef {
                    doc: config_at.doc,
                    pointer: format!("{}{pointer}", config_at.pointer),
                }
            } else {
                config_at.clone()
            };
            let shown = if pointer.is_empty() {
                "config"
            } else {
                pointer
            };
            self.error(
                Code::E1062,
                &node,
                format!("plugin '{name}': {shown}: {reason}"),
                &hint,
            );
        }
        failures.is_empty()
    }

    /// Starts this chain entry (once per distinct entry) with the plugin's module, which
    /// [`Self::load_once`] has loaded.
    fn start_once(&mut self, at: &NodeRef, middleware: &Middleware) -> bool {
        if self.plugins.started.contains(middleware) {
            return true;
        }
        let (Some(Some(loaded)), Some(engine)) = (
            self.plugins.modules.get(&middleware.plugin),
            &self.plugins.engine,
        ) else {
            return false;
        };
        // A plugin may start a callout while it starts (a JWKS fetch): it must be accepted as in
        // `serve`, though the compiler never sends it. The upstreams are known by now (they are
        // read before the middlewares; in a multi-file spec, those of the files read so far).
        let upstreams: Arc<[String]> = self.upstreams.keys().cloned().collect();
        let config = PluginConfig::for_middleware(middleware, upstreams);
        match Vm::start(engine, &loaded.module, config) {
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

    /// Resolves plugin `name` (manifest entry, else built-in), compiles its module and its
    /// schema.
    fn load(&mut self, at: &NodeRef, name: &str) -> Option<Loaded> {
        let Some(origin) = self.project.origin(name) else {
            let builtins = project::builtin_names();
            let hint = if self.project.plugins.is_empty() {
                format!(
                    "use a built-in plugin ({builtins}) or declare it in barbacane.yaml: \
                     plugins: {{NAME: {{source: 'file:NAME.wasm'}}}}, and pass --manifest"
                )
            } else {
                let known: Vec<&str> = self.project.plugins.keys().map(String::as_str).collect();
                format!(
                    "declare it under plugins: in barbacane.yaml (declared: {}; built-in: {builtins})",
                    known.join(", ")
                )
            };
            self.error(Code::E1060, at, format!("unknown plugin '{name}'"), &hint);
            return None;
        };
        let (bytes, shown, builtin_schema) = match origin {
            Origin::File(file) => match std::fs::read(&file) {
                Ok(bytes) => (bytes, file.display().to_string(), None),
                Err(e) => {
                    self.error(
                        Code::E1061,
                        at,
                        format!("plugin '{name}': cannot read {}: {e}", file.display()),
                        "check the plugin's file: source in barbacane.yaml",
                    );
                    return None;
                }
            },
            Origin::Builtin(builtin) => (
                builtin.wasm.to_vec(),
                format!("built-in {}", builtin.name),
                Some(builtin),
            ),
            Origin::Oci(source) => match self.oci.modules.get(&source) {
                Some(bytes) => (bytes.clone(), source, None),
                None if self.oci.offline => {
                    self.plugins.unchecked.insert(name.to_string());
                    return None;
                }
                None => {
                    self.error(
                        Code::E1061,
                        at,
                        format!("plugin '{name}': {source} was not resolved from its registry"),
                        "compile with the barbacane CLI, which pulls and verifies oci:// plugins",
                    );
                    return None;
                }
            },
        };
        let declared_schema = self
            .project
            .plugins
            .get(name)
            .and_then(|p| p.schema.as_ref());
        let (schema, schema_hint) = match (self.project.schemas.get(name), declared_schema) {
            (Some(schema), Some(file)) => (
                Some(schema.clone()),
                format!(
                    "make the config match the plugin's schema, {}",
                    self.project.dir.join(file).display()
                ),
            ),
            _ => match builtin_schema {
                Some(builtin) => match serde_json::from_str(builtin.schema) {
                    Ok(schema) => (
                        Some(schema),
                        format!(
                            "make the config match the schema of built-in plugin '{}' \
                             (`barbacane plugin list --format json` prints it)",
                            builtin.name
                        ),
                    ),
                    Err(e) => {
                        self.error(
                            Code::E1061,
                            at,
                            format!("built-in plugin '{}': invalid schema: {e}", builtin.name),
                            "this is a bug in barbacane",
                        );
                        return None;
                    }
                },
                None => (None, String::new()),
            },
        };
        let schema = match schema.as_ref().map(plugin_schema).transpose() {
            Ok(schema) => schema,
            Err(e) => {
                self.error(
                    Code::E1061,
                    at,
                    format!("plugin '{name}' ({shown}): invalid config schema: {e}"),
                    "fix the plugin's JSON Schema",
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
                Some(Loaded {
                    module,
                    schema,
                    schema_hint,
                })
            }
            Err(e) => {
                self.error(
                    Code::E1061,
                    at,
                    format!("plugin '{name}' ({shown}): {e}"),
                    e.hint(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plugin_schemas_are_2020_12_unless_they_say_otherwise_and_must_be_valid() {
        let v = plugin_schema(&json!({"type": "object", "properties": {"n": {"type": "integer"}}}))
            .unwrap();
        assert!(v.is_valid(&json!({"n": 1})) && !v.is_valid(&json!({"n": "x"})));
        // `prefixItems` is 2020-12; draft 7 ignores it.
        let tuple = json!({"prefixItems": [{"type": "string"}]});
        assert!(!plugin_schema(&tuple).unwrap().is_valid(&json!([1])));
        let mut draft7 = tuple.clone();
        draft7["$schema"] = json!("http://json-schema.org/draft-07/schema#");
        assert!(plugin_schema(&draft7).unwrap().is_valid(&json!([1])));
        assert!(plugin_schema(&json!({"type": 5})).is_err());
    }

    #[test]
    fn configs_reach_plugins_as_text() {
        assert_eq!(as_plugin_text(None), "");
        assert_eq!(as_plugin_text(Some(json!("a: b"))), "a: b");
        assert_eq!(as_plugin_text(Some(json!({"a": 1}))), r#"{"a":1}"#);
    }
}

//! The compiler: OpenAPI specs (+ optional project manifest) → [`Api`], or the complete list of
//! diagnostics. Checks everything `serve` would otherwise discover at run time: dispatchers and
//! their configs, upstream names and URLs, route conflicts (also across specs), path templates,
//! parameters and schemas (each schema is compiled once here so a bad one fails the build),
//! plugins (built-in or declared) and their configs, against the plugin's schema and by
//! starting the plugin.
//!
//! It keeps going after an error so that one run reports every problem it can find.

mod dispatch;
mod middlewares;
mod parameters;
mod servers;
mod upstreams;

pub use middlewares::plugin_schema;

use crate::diag::{Code, Diagnostic};
use crate::model::{Api, Middleware, Operation, Parameter, ServerMatch, Upstream};
use crate::project;
use crate::spec::bundle::Dialect;
use crate::spec::{NodeRef, Sources, hex};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Compiler switches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Development mode: allows plaintext `http://` upstreams.
    pub dev: bool,
}

/// The `oci://` plugin modules resolved before compiling (by [`crate::oci`]), keyed by source.
#[derive(Debug, Clone, Default)]
pub struct OciModules {
    /// Source, as written in `barbacane.yaml` → module bytes (verified and pinned).
    pub modules: BTreeMap<String, Vec<u8>>,
    /// Without the network (`validate`): a middleware naming an `oci://` plugin that has no
    /// module here is left unchecked instead of being an error.
    pub offline: bool,
}

/// One source file that went into the build (for the artifact manifest).
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as given.
    pub name: String,
    /// sha256 of its bytes.
    pub sha256: String,
    /// Its text.
    pub text: String,
}

/// The compiler's output.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The compiled API.
    pub api: Api,
    /// Every file read: specs, files they reference, the manifest and plugin schema files.
    pub sources: Vec<SourceFile>,
    /// Plugin name → module bytes.
    pub plugins: BTreeMap<String, Vec<u8>>,
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Compiles `specs` (and `manifest`, if given). A manifest with `oci://` sources needs
/// [`compile_with`] and their modules.
pub fn compile(
    specs: &[PathBuf],
    manifest: Option<&Path>,
    options: Options,
) -> Result<Compiled, Vec<Diagnostic>> {
    compile_with(specs, manifest, options, OciModules::default())
}

/// Compiles `specs` (and `manifest`, if given) with the `oci://` plugin modules resolved before.
pub fn compile_with(
    specs: &[PathBuf],
    manifest: Option<&Path>,
    options: Options,
    oci: OciModules,
) -> Result<Compiled, Vec<Diagnostic>> {
    let mut compiler = Compiler {
        sources: Sources::default(),
        diagnostics: Vec::new(),
        options,
        operations: Vec::new(),
        upstreams: BTreeMap::new(),
        upstream_uses: Vec::new(),
        default_dispatch: None,
        default_middlewares: Vec::new(),
        project: project::Project::default(),
        plugins: middlewares::Plugins::default(),
        oci,
    };
    let mut extra_sources = Vec::new();
    if let Some(path) = manifest {
        match project::load(path) {
            Ok((project, files)) => {
                compiler.project = project;
                extra_sources.extend(files);
            }
            Err(d) => compiler.diagnostics.push(d),
        }
    }
    for spec in specs {
        match compiler.sources.load(spec) {
            Ok(doc) => compiler.spec(doc),
            Err(d) => compiler.diagnostics.push(d),
        }
    }
    compiler.check_upstream_uses();
    compiler.check_conflicts();
    if !compiler.diagnostics.is_empty() {
        return Err(compiler.diagnostics);
    }
    let mut sources: Vec<SourceFile> = compiler
        .sources
        .docs()
        .iter()
        .map(|d| SourceFile {
            name: d.display.clone(),
            sha256: d.sha256.clone(),
            text: d.text.clone(),
        })
        .collect();
    sources.extend(extra_sources);
    Ok(Compiled {
        api: Api {
            operations: compiler.operations,
            upstreams: compiler
                .upstreams
                .into_iter()
                .map(|(k, (u, _))| (k, u))
                .collect(),
            plugins: compiler
                .plugins
                .bytes
                .iter()
                .map(|(name, bytes)| (name.clone(), hex(&Sha256::digest(bytes))))
                .collect(),
        },
        sources,
        plugins: compiler.plugins.bytes,
    })
}

struct Compiler {
    sources: Sources,
    diagnostics: Vec<Diagnostic>,
    options: Options,
    operations: Vec<Operation>,
    /// Upstream name → (definition, where it was defined).
    upstreams: BTreeMap<String, (Upstream, NodeRef)>,
    /// (upstream name, where a dispatcher names it).
    upstream_uses: Vec<(String, NodeRef)>,
    /// The current spec's root `x-barbacane-dispatch`: the dispatcher of operations without one.
    default_dispatch: Option<NodeRef>,
    /// The current spec's global middleware chain.
    default_middlewares: Vec<Middleware>,
    /// The project manifest (empty without `--manifest`).
    project: project::Project,
    /// Plugins loaded so far.
    plugins: middlewares::Plugins,
    /// The `oci://` plugin modules.
    oci: OciModules,
}

impl Compiler {
    fn error(&mut self, code: Code, at: &NodeRef, message: impl Into<String>, hint: &str) {
        let location = self.sources.location(at);
        self.diagnostics
            .push(Diagnostic::new(code, location, message, hint));
    }

    fn value(&self, at: &NodeRef) -> Option<Value> {
        self.sources.get(at).cloned()
    }

    fn spec(&mut self, doc: usize) {
        let root = NodeRef {
            doc,
            pointer: String::new(),
        };
        let Some(Value::Object(top)) = self.value(&root) else {
            self.error(
                Code::E1003,
                &root,
                "not an OpenAPI document: the top level is not a mapping",
                "a spec starts with 'openapi: 3.1.0' (or 3.0.x), 'info' and 'paths'",
            );
            return;
        };
        let Some(dialect) = self.dialect(&root, &top) else {
            return;
        };
        self.upstream_definitions(&root.child("x-barbacane-upstreams"));
        let default_dispatch = root.child("x-barbacane-dispatch");
        self.default_dispatch = self
            .sources
            .get(&default_dispatch)
            .is_some()
            .then_some(default_dispatch);
        let servers = self.servers(&root.child("servers"));
        self.default_middlewares = self
            .middlewares(&root.child("x-barbacane-middlewares"))
            .unwrap_or_default();
        let paths_at = root.child("paths");
        match top.get("paths") {
            None => {}
            Some(Value::Object(paths)) => {
                for template in paths.keys() {
                    self.path_item(&paths_at.child(template), template, &servers, dialect);
                }
            }
            Some(_) => self.error(
                Code::E1005,
                &paths_at,
                "'paths' must be a mapping of path templates to path items",
                "write paths as '/pets: {get: …}'",
            ),
        }
    }

    fn dialect(&mut self, root: &NodeRef, top: &Map<String, Value>) -> Option<Dialect> {
        if top.contains_key("swagger") {
            self.error(
                Code::E1004,
                &root.child("swagger"),
                "Swagger 2.0 is not supported",
                "convert the document to OpenAPI 3.0 or 3.1",
            );
            return None;
        }
        let at = root.child("openapi");
        match top.get("openapi") {
            None => {
                self.error(
                    Code::E1003,
                    root,
                    "not an OpenAPI document: missing 'openapi' field",
                    "add 'openapi: 3.1.0' (or 3.0.x) at the top",
                );
                None
            }
            Some(Value::String(v)) if version_matches(v, "3.0") => Some(Dialect::OpenApi30),
            Some(Value::String(v)) if version_matches(v, "3.1") => Some(Dialect::OpenApi31),
            Some(other) => {
                let shown = match other {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                self.error(
                    Code::E1004,
                    &at,
                    format!("unsupported OpenAPI version '{shown}'"),
                    "use a quoted 3.0.x or 3.1.x version, e.g. openapi: \"3.1.0\"",
                );
                None
            }
        }
    }

    fn path_item(
        &mut self,
        at: &NodeRef,
        template: &str,
        servers: &[ServerMatch],
        dialect: Dialect,
    ) {
        if let Err(why) = check_template(template) {
            self.error(
                Code::E1041,
                at,
                format!("invalid path template '{template}': {why}"),
                "templates start with '/' and use whole-segment parameters like '/pets/{id}'",
            );
            return;
        }
        let item_at = match self.sources.deref(at) {
            Ok(n) => n,
            Err(d) => return self.diagnostics.push(d),
        };
        let Some(Value::Object(item)) = self.value(&item_at) else {
            self.error(
                Code::E1005,
                at,
                format!("path item '{template}' must be a mapping of methods to operations"),
                "write '/pets: {get: …}'",
            );
            return;
        };
        let shared_params = self.parameters(&item_at.child("parameters"), dialect);
        let item_servers = match item.get("servers") {
            Some(_) => self.servers(&item_at.child("servers")),
            None => servers.to_vec(),
        };
        for method in METHODS {
            if item.contains_key(*method) {
                self.operation(
                    &item_at.child(method),
                    method,
                    template,
                    &item_servers,
                    &shared_params,
                    dialect,
                );
            }
        }
    }

    fn operation(
        &mut self,
        at: &NodeRef,
        method: &str,
        template: &str,
        servers: &[ServerMatch],
        shared_params: &[Parameter],
        dialect: Dialect,
    ) {
        let Some(Value::Object(op)) = self.value(at) else {
            self.error(
                Code::E1005,
                at,
                format!(
                    "operation {} {template} must be a mapping",
                    method.to_uppercase()
                ),
                "write 'get: {x-barbacane-dispatch: …}'",
            );
            return;
        };
        let servers = match op.get("servers") {
            Some(_) => self.servers(&at.child("servers")),
            None => servers.to_vec(),
        };
        let mut parameters = self.parameters(&at.child("parameters"), dialect);
        for shared in shared_params {
            if !parameters
                .iter()
                .any(|p| p.name == shared.name && p.location == shared.location)
            {
                parameters.push(shared.clone());
            }
        }
        self.check_path_parameters(at, template, &parameters);
        let request_body = match op.get("requestBody") {
            Some(_) => self.request_body(&at.child("requestBody"), dialect),
            None => None,
        };
        let middlewares = match self.middlewares(&at.child("x-barbacane-middlewares")) {
            Some(chain) => chain,
            None => self.default_middlewares.clone(),
        };
        let Some(dispatch) = self.dispatch(at, template) else {
            return;
        };
        let method_upper = method.to_uppercase();
        let id = op
            .get("operationId")
            .and_then(Value::as_str)
            .map_or_else(|| format!("{method_upper} {template}"), str::to_owned);
        let source = self.sources.location(at).to_string();
        self.operations.push(Operation {
            id,
            method: method_upper,
            path: template.to_string(),
            servers,
            parameters,
            request_body,
            dialect,
            middlewares,
            dispatch,
            source,
        });
    }

    /// Two operations conflict when they share a method, a host and the same route once
    /// parameter names are ignored (`/pets/{id}` and `/pets/{petId}` are one route).
    fn check_conflicts(&mut self) {
        let mut seen: HashMap<(Option<String>, String, String), usize> = HashMap::new();
        let mut conflicts = Vec::new();
        for (index, op) in self.operations.iter().enumerate() {
            for server in &op.servers {
                let route = route_shape(&format!("{}{}", server.base_path, op.path));
                let key = (server.host.clone(), route, op.method.clone());
                if let Some(&first) = seen.get(&key) {
                    conflicts.push((first, index));
                    break;
                }
                seen.insert(key, index);
            }
        }
        for (first, second) in conflicts {
            let a = &self.operations[first];
            let b = &self.operations[second];
            let location = parse_location(&b.source);
            self.diagnostics.push(Diagnostic::new(
                Code::E1040,
                location,
                format!(
                    "{} {} conflicts with {} {} at {}",
                    b.method, b.path, a.method, a.path, a.source
                ),
                "remove one of them, or serve them under different servers/base paths",
            ));
        }
    }
}

fn parse_location(source: &str) -> crate::diag::Location {
    let mut parts = source.rsplitn(3, ':');
    let column = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
    let line = parts.next().and_then(|l| l.parse().ok()).unwrap_or(1);
    let file = parts.next().unwrap_or(source).to_string();
    crate::diag::Location { file, line, column }
}

fn version_matches(version: &str, major_minor: &str) -> bool {
    match version.strip_prefix(major_minor) {
        Some("") => true,
        Some(rest) => rest.strip_prefix('.').is_some_and(|patch| {
            !patch.is_empty()
                && patch
                    .split(['-', '+'])
                    .next()
                    .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
        }),
        None => false,
    }
}

/// Checks a path template: leading `/`, whole-segment `{name}` parameters, no duplicates.
pub fn check_template(template: &str) -> Result<(), String> {
    if !template.starts_with('/') {
        return Err(String::from("it must start with '/'"));
    }
    let mut names = Vec::new();
    for segment in template.split('/').skip(1) {
        if !segment.contains(['{', '}']) {
            continue;
        }
        let name = segment
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .filter(|n| !n.is_empty() && !n.contains(['{', '}']))
            .ok_or_else(|| format!("segment '{segment}' must be a whole '{{name}}' parameter"))?;
        if names.contains(&name) {
            return Err(format!("parameter '{name}' appears twice"));
        }
        names.push(name);
    }
    Ok(())
}

/// The parameter names of a (valid) template, in order.
pub fn template_params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// A template with parameter names erased and empty segments dropped: the route's identity.
fn route_shape(template: &str) -> String {
    let segments: Vec<&str> = template
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect();
    format!("/{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        assert!(check_template("/pets/{id}").is_ok());
        assert!(check_template("pets").is_err());
        assert!(check_template("/pets/{id}.json").is_err());
        assert!(check_template("/a/{x}/b/{x}").is_err());
    }

    #[test]
    fn route_shape_ignores_parameter_names_and_slashes() {
        assert_eq!(
            route_shape("/v1/pets/{id}/"),
            route_shape("/v1//pets/{petId}")
        );
    }

    #[test]
    fn versions() {
        assert!(version_matches("3.0.3", "3.0"));
        assert!(version_matches("3.1.0", "3.1"));
        assert!(!version_matches("3.10.0", "3.1"));
        assert!(!version_matches("3.1.x", "3.1"));
    }
}

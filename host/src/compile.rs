//! The compiler: OpenAPI specs (+ optional project manifest) → [`Api`], or the complete list of
//! diagnostics. Checks everything `serve` would otherwise discover at run time: dispatchers and
//! their configs, upstream names and URLs, route conflicts (also across specs), path templates,
//! parameters and schemas (each schema is compiled once here so a bad one fails the build).
//!
//! It keeps going after an error so that one run reports every problem it can find.

use crate::diag::{Code, Diagnostic};
use crate::model::{
    Api, Dispatch, HttpUpstreamDispatch, MediaType, MockDispatch, Operation, ParamLocation,
    ParamStyle, Parameter, RequestBody, ServerMatch, Upstream,
};
use crate::project;
use crate::spec::bundle::{Dialect, bundle_schema};
use crate::spec::{NodeRef, Sources};
use crate::validate;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Compiler switches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Development mode: allows plaintext `http://` upstreams.
    pub dev: bool,
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
    /// Every file read: specs, files they reference, and the manifest.
    pub sources: Vec<SourceFile>,
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The default `http-upstream` timeout when the config gives none.
const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 30_000;

/// Compiles `specs` (and `manifest`, if given).
pub fn compile(
    specs: &[PathBuf],
    manifest: Option<&Path>,
    options: Options,
) -> Result<Compiled, Vec<Diagnostic>> {
    let mut compiler = Compiler {
        sources: Sources::default(),
        diagnostics: Vec::new(),
        options,
        operations: Vec::new(),
        upstreams: BTreeMap::new(),
        upstream_uses: Vec::new(),
        default_dispatch: None,
    };
    let mut extra_sources = Vec::new();
    if let Some(path) = manifest {
        match project::load(path) {
            Ok(file) => extra_sources.push(file),
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
        },
        sources,
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
        self.check_middlewares(&root.child("x-barbacane-middlewares"));
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

    fn upstream_definitions(&mut self, at: &NodeRef) {
        let Some(value) = self.value(at) else { return };
        let Value::Object(map) = value else {
            self.error(
                Code::E1031,
                at,
                "x-barbacane-upstreams must be a mapping of names to upstreams",
                "write 'x-barbacane-upstreams: {pets: {endpoints: [\"https://pets.internal\"]}}'",
            );
            return;
        };
        for (name, definition) in map {
            let def_at = at.child(&name);
            let Some(upstream) = self.upstream(&def_at, &name, definition) else {
                continue;
            };
            if let Some((existing, existing_at)) = self.upstreams.get(&name) {
                if *existing != upstream {
                    let first = self.sources.location(existing_at);
                    self.error(
                        Code::E1031,
                        &def_at,
                        format!("upstream '{name}' is already defined differently at {first}"),
                        "give the two upstreams different names or make them identical",
                    );
                }
                continue;
            }
            self.upstreams.insert(name, (upstream, def_at));
        }
    }

    fn upstream(&mut self, at: &NodeRef, name: &str, definition: Value) -> Option<Upstream> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            endpoints: Vec<String>,
            #[serde(default)]
            allow_plaintext: bool,
        }
        let raw: Raw = match serde_json::from_value(definition) {
            Ok(raw) => raw,
            Err(e) => {
                self.error(
                    Code::E1031,
                    at,
                    format!("invalid upstream '{name}': {e}"),
                    "an upstream is {endpoints: [\"https://host:port\"]}",
                );
                return None;
            }
        };
        if raw.endpoints.is_empty() {
            self.error(
                Code::E1031,
                at,
                format!("upstream '{name}' has no endpoints"),
                "list at least one URL under 'endpoints'",
            );
            return None;
        }
        let mut ok = true;
        for (i, endpoint) in raw.endpoints.iter().enumerate() {
            let endpoint_at = at.child("endpoints").child(&i.to_string());
            match url::Url::parse(endpoint) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host_str().is_some()
                        && u.query().is_none()
                        && u.fragment().is_none() =>
                {
                    if u.scheme() == "http" && !self.options.dev && !raw.allow_plaintext {
                        self.error(
                            Code::E1032,
                            &endpoint_at,
                            format!("upstream '{name}' uses plaintext http:// ({endpoint})"),
                            "use https://, compile with --dev, or set 'allow_plaintext: true' on the upstream",
                        );
                        ok = false;
                    }
                }
                _ => {
                    self.error(
                        Code::E1031,
                        &endpoint_at,
                        format!("upstream '{name}': '{endpoint}' is not an http(s) URL"),
                        "write endpoints as 'https://host:port' with an optional base path",
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(Upstream {
            endpoints: raw.endpoints,
        })
    }

    fn servers(&mut self, at: &NodeRef) -> Vec<ServerMatch> {
        let any = || {
            vec![ServerMatch {
                host: None,
                base_path: String::new(),
            }]
        };
        let Some(Value::Array(list)) = self.value(at) else {
            return any();
        };
        let mut servers = Vec::new();
        for (i, server) in list.iter().enumerate() {
            let server_at = at.child(&i.to_string());
            match server_match(server) {
                Ok(m) => {
                    if !servers.contains(&m) {
                        servers.push(m);
                    }
                }
                Err(why) => self.error(
                    Code::E1042,
                    &server_at,
                    format!("invalid server: {why}"),
                    "write servers as 'https://api.example.com/v1' or '/v1'",
                ),
            }
        }
        if servers.is_empty() { any() } else { servers }
    }

    fn check_middlewares(&mut self, at: &NodeRef) {
        match self.value(at) {
            None => {}
            Some(Value::Array(chain)) => {
                for (i, entry) in chain.iter().enumerate() {
                    let name = entry
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("<unnamed>")
                        .to_string();
                    self.error(
                        Code::E1060,
                        &at.child(&i.to_string()),
                        format!("unknown plugin '{name}'"),
                        "this build has no Proxy-Wasm plugins yet; remove the middleware",
                    );
                }
            }
            Some(_) => self.error(
                Code::E1005,
                at,
                "x-barbacane-middlewares must be a list",
                "write '- name: plugin' entries",
            ),
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
        self.check_middlewares(&at.child("x-barbacane-middlewares"));
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
            dispatch,
            source,
        });
    }

    fn check_path_parameters(&mut self, at: &NodeRef, template: &str, parameters: &[Parameter]) {
        let names = template_params(template);
        for p in parameters
            .iter()
            .filter(|p| p.location == ParamLocation::Path)
        {
            if !names.contains(&p.name.as_str()) {
                self.error(
                    Code::E1050,
                    &at.child("parameters"),
                    format!(
                        "path parameter '{}' does not appear in '{template}'",
                        p.name
                    ),
                    "rename the parameter or add '{name}' to the path",
                );
            }
        }
    }

    fn parameters(&mut self, at: &NodeRef, dialect: Dialect) -> Vec<Parameter> {
        let Some(value) = self.value(at) else {
            return Vec::new();
        };
        let Value::Array(list) = value else {
            self.error(
                Code::E1005,
                at,
                "'parameters' must be a list",
                "write '- name: …' entries",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for i in 0..list.len() {
            let entry_at = at.child(&i.to_string());
            let param_at = match self.sources.deref(&entry_at) {
                Ok(n) => n,
                Err(d) => {
                    self.diagnostics.push(d);
                    continue;
                }
            };
            if let Some(p) = self.parameter(&param_at, dialect) {
                out.push(p);
            }
        }
        out
    }

    fn parameter(&mut self, at: &NodeRef, dialect: Dialect) -> Option<Parameter> {
        #[derive(Deserialize)]
        struct Raw {
            name: String,
            #[serde(rename = "in")]
            location: ParamLocation,
            #[serde(default)]
            required: bool,
            style: Option<String>,
            explode: Option<bool>,
        }
        let raw: Raw = match self.value(at).map(serde_json::from_value) {
            Some(Ok(raw)) => raw,
            Some(Err(e)) => {
                self.error(
                    Code::E1050,
                    at,
                    format!("invalid parameter: {e}"),
                    "a parameter needs 'name' and 'in' (path, query, header or cookie)",
                );
                return None;
            }
            None => return None,
        };
        let style = match (raw.style.as_deref(), raw.location) {
            (None, ParamLocation::Path | ParamLocation::Header) | (Some("simple"), _) => {
                ParamStyle::Simple
            }
            (None, ParamLocation::Query | ParamLocation::Cookie) | (Some("form"), _) => {
                ParamStyle::Form
            }
            (Some("label"), ParamLocation::Path) => ParamStyle::Label,
            (Some("matrix"), ParamLocation::Path) => ParamStyle::Matrix,
            (Some("spaceDelimited"), ParamLocation::Query) => ParamStyle::SpaceDelimited,
            (Some("pipeDelimited"), ParamLocation::Query) => ParamStyle::PipeDelimited,
            (Some("deepObject"), ParamLocation::Query) => ParamStyle::DeepObject,
            (Some(other), location) => {
                self.error(
                    Code::E1050,
                    &at.child("style"),
                    format!(
                        "parameter '{}': style '{other}' is not supported for {} parameters",
                        raw.name,
                        location.as_str()
                    ),
                    "use simple, label or matrix (path), simple (header), form (cookie), or form, spaceDelimited, pipeDelimited or deepObject (query)",
                );
                return None;
            }
        };
        if raw.location == ParamLocation::Path && !raw.required {
            self.error(
                Code::E1050,
                &at.child("required"),
                format!("path parameter '{}' must be required", raw.name),
                "add 'required: true' (OpenAPI requires it for path parameters)",
            );
        }
        let schema = self.schema(&at.child("schema"), dialect);
        let name = match raw.location {
            ParamLocation::Header => raw.name.to_ascii_lowercase(),
            _ => raw.name,
        };
        Some(Parameter {
            name,
            location: raw.location,
            required: raw.required,
            style,
            explode: raw.explode.unwrap_or(style == ParamStyle::Form),
            schema,
        })
    }

    fn request_body(&mut self, at: &NodeRef, dialect: Dialect) -> Option<RequestBody> {
        let body_at = match self.sources.deref(at) {
            Ok(n) => n,
            Err(d) => {
                self.diagnostics.push(d);
                return None;
            }
        };
        let Some(Value::Object(body)) = self.value(&body_at) else {
            self.error(
                Code::E1005,
                at,
                "'requestBody' must be a mapping",
                "write 'requestBody: {content: …}'",
            );
            return None;
        };
        let required = body
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut content = Vec::new();
        if let Some(Value::Object(types)) = body.get("content") {
            for media_type in types.keys() {
                let schema = self.schema(
                    &body_at.child("content").child(media_type).child("schema"),
                    dialect,
                );
                content.push(MediaType {
                    media_type: media_type.to_ascii_lowercase(),
                    schema,
                });
            }
        }
        Some(RequestBody { required, content })
    }

    /// Bundles the schema at `at` (if present) and checks that it compiles.
    fn schema(&mut self, at: &NodeRef, dialect: Dialect) -> Option<Value> {
        self.sources.get(at)?;
        match bundle_schema(&mut self.sources, at, dialect) {
            Ok(schema) => match validate::compile_schema(&schema, dialect) {
                Ok(_) => Some(schema),
                Err(why) => {
                    self.error(
                        Code::E1051,
                        at,
                        format!("invalid schema: {why}"),
                        "fix the schema so that it is valid JSON Schema",
                    );
                    None
                }
            },
            Err(d) => {
                self.diagnostics.push(d);
                None
            }
        }
    }

    fn dispatch(&mut self, op_at: &NodeRef, template: &str) -> Option<Dispatch> {
        let own = op_at.child("x-barbacane-dispatch");
        let at = match (self.sources.get(&own), &self.default_dispatch) {
            (None, Some(default)) => default.clone(),
            _ => own,
        };
        let Some(value) = self.value(&at) else {
            self.error(
                Code::E1020,
                op_at,
                "operation has no x-barbacane-dispatch",
                "add 'x-barbacane-dispatch: {name: mock}' or an http-upstream here, or a default one at the top of the spec",
            );
            return None;
        };
        let name = value.get("name").and_then(Value::as_str).unwrap_or("");
        let config = value
            .get("config")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let config_at = at.child("config");
        match name {
            "mock" => match serde_json::from_value::<MockDispatch>(config) {
                Ok(mock) if (100..=999).contains(&mock.status) => Some(Dispatch::Mock(mock)),
                Ok(mock) => {
                    self.error(
                        Code::E1022,
                        &config_at.child("status"),
                        format!("mock status {} is not an HTTP status", mock.status),
                        "use a status between 100 and 999",
                    );
                    None
                }
                Err(e) => {
                    self.error(
                        Code::E1022,
                        &config_at,
                        format!("invalid mock config: {e}"),
                        "mock takes {status, headers, body}",
                    );
                    None
                }
            },
            "http-upstream" => self.http_upstream(&config_at, config, template),
            _ => {
                self.error(
                    Code::E1021,
                    &at.child("name"),
                    format!("unknown dispatcher '{name}'"),
                    "use one of: mock, http-upstream",
                );
                None
            }
        }
    }

    fn http_upstream(&mut self, at: &NodeRef, config: Value, template: &str) -> Option<Dispatch> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            upstream: String,
            path: Option<String>,
            timeout: Option<Value>,
        }
        let raw: Raw = match serde_json::from_value(config) {
            Ok(raw) => raw,
            Err(e) => {
                self.error(
                    Code::E1022,
                    at,
                    format!("invalid http-upstream config: {e}"),
                    "http-upstream takes {upstream, path, timeout}",
                );
                return None;
            }
        };
        let path = raw.path.unwrap_or_else(|| template.to_string());
        let mut ok = true;
        if let Err(why) = check_template(&path) {
            self.error(
                Code::E1022,
                &at.child("path"),
                format!("invalid upstream path '{path}': {why}"),
                "use a path template like '/pets/{id}'",
            );
            ok = false;
        }
        let known = template_params(template);
        for name in template_params(&path) {
            if !known.contains(&name) {
                self.error(
                    Code::E1022,
                    &at.child("path"),
                    format!(
                        "upstream path uses '{{{name}}}', which is not a parameter of '{template}'"
                    ),
                    "use only the operation's path parameters in the upstream path",
                );
                ok = false;
            }
        }
        let timeout_ms = match raw.timeout.as_ref().map(parse_duration_ms) {
            None => DEFAULT_UPSTREAM_TIMEOUT_MS,
            Some(Some(ms)) if ms > 0 => ms,
            Some(_) => {
                self.error(
                    Code::E1022,
                    &at.child("timeout"),
                    "invalid timeout",
                    "write a duration such as '500ms', '5s' or '1m'",
                );
                ok = false;
                0
            }
        };
        self.upstream_uses
            .push((raw.upstream.clone(), at.child("upstream")));
        ok.then_some(Dispatch::HttpUpstream(HttpUpstreamDispatch {
            upstream: raw.upstream,
            path,
            timeout_ms,
        }))
    }

    fn check_upstream_uses(&mut self) {
        for (name, at) in std::mem::take(&mut self.upstream_uses) {
            if !self.upstreams.contains_key(&name) {
                let known: Vec<&str> = self.upstreams.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    String::from("declare it under x-barbacane-upstreams")
                } else {
                    format!(
                        "declare it under x-barbacane-upstreams (known: {})",
                        known.join(", ")
                    )
                };
                self.error(
                    Code::E1030,
                    &at,
                    format!("unknown upstream '{name}'"),
                    &hint,
                );
            }
        }
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

/// Reduces a `servers` entry to a host pattern and base path. Variables in the host match any
/// label; variables in the path take their default. Loopback and unspecified hosts match any host.
fn server_match(server: &Value) -> Result<ServerMatch, String> {
    let url = server
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| String::from("'url' is missing"))?;
    let variables = server.get("variables").and_then(Value::as_object);
    let default_of = |name: &str| {
        variables
            .and_then(|v| v.get(name))
            .and_then(|v| v.get("default"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => (Some(&rest[..i]), &rest[i..]),
            None => (Some(rest), "/"),
        },
        None => (None, url),
    };
    let host = host
        .map(|h| {
            // Drop userinfo and port; keep IPv6 literals whole.
            let h = h.rsplit('@').next().unwrap_or(h);
            let h = if h.starts_with('[') {
                h.split_inclusive(']').next().unwrap_or(h)
            } else {
                h.split(':').next().unwrap_or(h)
            };
            h.split('.')
                .map(|label| {
                    if label.starts_with('{') {
                        String::from("*")
                    } else {
                        label.to_ascii_lowercase()
                    }
                })
                .collect::<Vec<_>>()
                .join(".")
        })
        .filter(|h| {
            !matches!(
                h.as_str(),
                "" | "localhost" | "127.0.0.1" | "[::1]" | "0.0.0.0" | "*"
            )
        });
    let mut base_path = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        base_path.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(var) => base_path.push_str(
                &default_of(var).ok_or_else(|| format!("variable '{var}' has no default"))?,
            ),
            None => base_path.push_str(segment),
        }
    }
    Ok(ServerMatch { host, base_path })
}

/// Parses `500ms`, `5s`, `2m` or a bare number of seconds.
fn parse_duration_ms(value: &Value) -> Option<u64> {
    if let Some(secs) = value.as_f64() {
        return (secs >= 0.0).then_some((secs * 1000.0) as u64);
    }
    let text = value.as_str()?.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => return None,
    };
    Some((number * factor) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_are_checked() {
        assert!(check_template("/pets/{id}").is_ok());
        assert!(check_template("pets").is_err());
        assert!(check_template("/pets/{id}.json").is_err());
        assert!(check_template("/a/{x}/b/{x}").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms(&json!("500ms")), Some(500));
        assert_eq!(parse_duration_ms(&json!("5s")), Some(5000));
        assert_eq!(parse_duration_ms(&json!("1m")), Some(60_000));
        assert_eq!(parse_duration_ms(&json!(2)), Some(2000));
        assert_eq!(parse_duration_ms(&json!("5 parsecs")), None);
    }

    #[test]
    fn servers_reduce_to_host_and_base_path() {
        let m = server_match(&json!({"url": "https://API.example.com:8443/v1/"})).unwrap();
        assert_eq!(
            m,
            ServerMatch {
                host: Some("api.example.com".into()),
                base_path: "/v1".into()
            }
        );
        let m = server_match(&json!({"url": "http://localhost:8080"})).unwrap();
        assert_eq!(
            m,
            ServerMatch {
                host: None,
                base_path: String::new()
            }
        );
        let m = server_match(&json!({"url": "https://{env}.example.com/{v}", "variables": {"env": {"default": "prod"}, "v": {"default": "v2"}}})).unwrap();
        assert_eq!(
            m,
            ServerMatch {
                host: Some("*.example.com".into()),
                base_path: "/v2".into()
            }
        );
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

//! The compiled API: what `compile` produces, what the artifact stores (as `routes.json`) and what
//! `serve` loads. Plain data with no behaviour, so the three stages share one vocabulary.
//!
//! **Invariant:** everything here is resolved: no `$ref`s, no file paths to read, no names left
//! to look up except upstream names, which `compile` has checked.

use crate::spec::bundle::Dialect;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The whole compiled API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Api {
    /// Every operation of every spec, in source order.
    pub operations: Vec<Operation>,
    /// Named upstream clusters from `x-barbacane-upstreams`.
    pub upstreams: BTreeMap<String, Upstream>,
    /// Plugin name → sha256 of its module; the bytes travel as artifact entries.
    #[serde(default)]
    pub plugins: BTreeMap<String, String>,
}

/// One OpenAPI operation, ready to route, validate and dispatch. The default (an empty GET-less
/// mock with no servers) exists for tests and benchmarks, which set the fields they need.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Operation {
    /// `operationId`, or `METHOD /path` when the spec gives none.
    pub id: String,
    /// Upper-case HTTP method.
    pub method: String,
    /// The path template as written in the spec, e.g. `/pets/{id}`.
    pub path: String,
    /// Where this operation is served (from `servers`).
    pub servers: Vec<ServerMatch>,
    /// Path, query, header and cookie parameters (path-item level merged in).
    pub parameters: Vec<Parameter>,
    /// The request body contract, if the operation declares one.
    pub request_body: Option<RequestBody>,
    /// The schema dialect of the spec the operation came from.
    pub dialect: Dialect,
    /// The Proxy-Wasm filters a request passes through, in order (the spec's global chain unless
    /// the operation sets its own).
    #[serde(default)]
    pub middlewares: Vec<Middleware>,
    /// How the request is answered.
    pub dispatch: Dispatch,
    /// `file:line:col` of the operation, for logs and conflict messages.
    pub source: String,
}

/// One entry of a middleware chain: a plugin and the configuration it runs with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Middleware {
    /// The plugin's name (a key of `Api::plugins`).
    pub plugin: String,
    /// The plugin configuration as the plugin receives it (JSON text; a string as-is).
    pub config: String,
    /// The root id the plugin's root context is created with.
    pub root_id: String,
    /// The VM configuration (JSON text; a string as-is).
    pub vm_config: String,
    /// What a failing (trapping) plugin does to the request.
    pub failure: FailurePolicy,
    /// The most time one of the plugin's callbacks may run, in milliseconds.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// How long the plugin is suspended after a callback runs past its deadline.
    #[serde(default)]
    pub backoff: Backoff,
    /// Envoy's `allow_on_headers_stop_iteration`: a filter that pauses on headers followed by a
    /// body gets that body (its body callbacks run) while the headers wait; otherwise (the
    /// default, as in Envoy) it sees the body only once it resumes the headers.
    #[serde(default)]
    pub allow_on_headers_stop_iteration: bool,
}

/// [`Middleware::deadline_ms`] when the entry sets none (and in artifacts made before it existed):
/// Envoy sets no deadline, but a loop must not hold a worker thread for good, and a filter that
/// needs a second per callback is broken.
pub fn default_deadline_ms() -> u64 {
    1000
}

/// How long a plugin whose callback ran past its deadline is suspended: `base_ms` the first time,
/// doubling on each overrun that follows the end of a suspension within `max_ms`, up to
/// `max_ms` (Envoy's `reload_config.backoff`, a `BackoffStrategy`: 1 s base, max 10 × base).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// The first suspension, in milliseconds (> 0).
    pub base_ms: u64,
    /// The longest suspension, in milliseconds (≥ `base_ms`).
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 1000,
            max_ms: 10_000,
        }
    }
}

/// A plugin's failure policy.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// The request fails with a 500 problem (Envoy's default, fail closed).
    #[default]
    Closed,
    /// The plugin is skipped.
    Open,
}

/// A `servers` entry reduced to what routing needs; the default matches any host at the root.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerMatch {
    /// Host pattern (lower case; a `*` label matches any one label); `None` matches any host.
    pub host: Option<String>,
    /// Base path without a trailing slash (`""` for the root).
    pub base_path: String,
}

/// Where a parameter lives.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ParamLocation {
    /// A `{name}` path segment.
    Path,
    /// The query string.
    Query,
    /// A request header.
    Header,
    /// A cookie in the `Cookie` header.
    Cookie,
}

impl ParamLocation {
    /// The name used in the spec and in problem `errors[].location`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamLocation::Path => "path",
            ParamLocation::Query => "query",
            ParamLocation::Header => "header",
            ParamLocation::Cookie => "cookie",
        }
    }
}

/// How an array or object parameter is serialised (OpenAPI `style`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ParamStyle {
    /// `a,b,c` (path and header default).
    Simple,
    /// `.a.b.c` or `.a,b,c` (path).
    Label,
    /// `;x=a;x=b` or `;x=a,b` (path).
    Matrix,
    /// `?x=a&x=b` or `?x=a,b` (query and cookie default).
    Form,
    /// `?x=a%20b`.
    SpaceDelimited,
    /// `?x=a|b`.
    PipeDelimited,
    /// `?x[k]=v`.
    DeepObject,
}

/// One parameter with its bundled schema.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Parameter {
    /// The name (lower case for headers).
    pub name: String,
    /// Where it lives.
    pub location: ParamLocation,
    /// Whether the request must carry it.
    pub required: bool,
    /// `style` (defaulted per location).
    pub style: ParamStyle,
    /// `explode` (defaulted per style).
    pub explode: bool,
    /// The bundled JSON Schema, if any.
    pub schema: Option<Value>,
}

/// The request body contract.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestBody {
    /// Whether a body is required.
    pub required: bool,
    /// Accepted media types (lower case; may be `type/*` or `*/*`) with their bundled schemas.
    pub content: Vec<MediaType>,
}

/// One accepted media type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MediaType {
    /// e.g. `application/json`.
    pub media_type: String,
    /// The bundled schema, validated for JSON media types only.
    pub schema: Option<Value>,
}

/// How an operation is answered (`x-barbacane-dispatch`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "name", content = "config", rename_all = "kebab-case")]
pub enum Dispatch {
    /// A fixed response from config.
    Mock(MockDispatch),
    /// Forward to a named upstream.
    HttpUpstream(HttpUpstreamDispatch),
}

/// The `mock` dispatcher's config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MockDispatch {
    /// Response status (default 200).
    #[serde(default = "default_mock_status")]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body: a string is sent as-is, anything else as JSON.
    #[serde(default)]
    pub body: Option<Value>,
}

fn default_mock_status() -> u16 {
    200
}

impl Default for MockDispatch {
    fn default() -> Self {
        MockDispatch {
            status: default_mock_status(),
            headers: BTreeMap::new(),
            body: None,
        }
    }
}

impl Default for Dispatch {
    /// An empty 200 from the mock dispatcher.
    fn default() -> Self {
        Dispatch::Mock(MockDispatch::default())
    }
}

/// The `http-upstream` dispatcher's compiled config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HttpUpstreamDispatch {
    /// Name of the upstream in `x-barbacane-upstreams`.
    pub upstream: String,
    /// Upstream path template, filled from path parameters (defaults to the operation's path).
    pub path: String,
    /// Time allowed for the upstream's response head, in milliseconds.
    pub timeout_ms: u64,
}

/// A named upstream cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Upstream {
    /// Base URLs (`scheme://host:port[/base]`), used round-robin.
    pub endpoints: Vec<String>,
    /// PEM CA certificates trusted for this upstream instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

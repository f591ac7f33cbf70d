//! The request pipeline: limits → admin endpoints → path normalisation → router → parameter
//! and body validation → Proxy-Wasm chain (request headers) → dispatcher → chain in reverse
//! (response headers), with `x-request-id` stamped on every response and response counters for
//! `/__barbacane/metrics`.
//!
//! [`Gateway`] is the read-only state all workers share; [`Worker`] adds what one worker thread
//! owns (its upstream connection pools).
//!
//! **Invariant:** nothing on a request's path panics on input; every refusal is a problem
//! response from [`crate::problem`].

mod filters;
mod replica;
mod suspension;

pub use filters::StreamReset;

use crate::artifact::Artifact;
use crate::dispatch;
use crate::model::Api;
use crate::problem::{Kind, Problem};
use crate::proxywasm::properties::{Route, StreamInfo, TlsSession};
use crate::request_body;
use crate::router::{Lookup, Router};
use crate::server::{Body, Config, empty, full};
use crate::upstream::Upstreams;
use crate::validate::{BodyPlan, FieldError, OperationValidator, RequestParts};
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the gateway knows about the client connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ClientConnection {
    /// The client's address.
    pub peer: SocketAddr,
    /// The gateway's address on the connection.
    pub local: SocketAddr,
    /// Whether the connection is TLS (what it negotiated, a [`TlsSession`], is in each
    /// request's extensions).
    pub tls: bool,
    /// Unique to this connection in the process (Envoy's `connection.id`).
    pub id: u64,
}

/// Request counters for `/__barbacane/metrics`.
#[derive(Debug, Default)]
struct Metrics {
    /// Responses by status class 1xx..5xx (index 0 unused).
    by_class: [AtomicU64; 6],
}

/// A loaded API, ready to answer requests: the read-only state all workers share.
pub struct Gateway {
    api: Api,
    router: Router,
    validators: Vec<OperationValidator>,
    filters: filters::FilterSet,
    config: Config,
    metrics: Metrics,
}

/// How long a plugin whose root `on_done` returned false has to call `proxy_done`.
pub const PLUGIN_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What one worker thread owns: the shared gateway, its own upstream connection pools and its
/// own Proxy-Wasm VM replicas.
pub struct Worker {
    gateway: Arc<Gateway>,
    upstreams: Upstreams,
    replicas: filters::Replicas,
}

impl Worker {
    /// A worker for `gateway`; call it on the thread whose runtime will serve it.
    pub fn new(gateway: Arc<Gateway>) -> Result<Worker, String> {
        let upstreams = Upstreams::new(&gateway.api.upstreams)?;
        let replicas = gateway.filters.replicas(&upstreams)?;
        Ok(Worker {
            gateway,
            upstreams,
            replicas,
        })
    }

    /// Ends the plugins' VMs as Envoy does when it stops or drops a configuration: each root
    /// context gets `on_done` (and up to [`PLUGIN_SHUTDOWN_GRACE`] to finish, e.g. flush logs by
    /// callout, if it returns false), then `on_delete`. Call it once no request uses the worker.
    pub async fn shutdown(&self) {
        self.replicas.shutdown(PLUGIN_SHUTDOWN_GRACE).await;
    }

    /// How the gateway runs.
    pub fn config(&self) -> &Config {
        &self.gateway.config
    }

    /// Answers one request: every error becomes a response, except a plugin's reset of the
    /// stream, which aborts it.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: ClientConnection,
    ) -> Result<Response<Body>, StreamReset> {
        let gateway = &self.gateway;
        let request_id = request_id(request.headers());
        let mut response = gateway.respond(self, request, client, &request_id).await?;
        response.headers_mut().insert(X_REQUEST_ID, request_id);
        let class = usize::from(response.status().as_u16() / 100).min(5);
        gateway.metrics.by_class[class].fetch_add(1, Ordering::Relaxed);
        Ok(response)
    }
}

impl Gateway {
    /// Prepares routing and validators for `artifact`, and checks its upstream definitions.
    pub fn new(artifact: Artifact, config: Config) -> Result<Gateway, String> {
        let Artifact { api, plugins, .. } = artifact;
        let validators = api
            .operations
            .iter()
            .map(|op| OperationValidator::new(op).map_err(|e| format!("operation {}: {e}", op.id)))
            .collect::<Result<Vec<_>, _>>()?;
        // Fail at load, not on the first request, if an endpoint or a plugin cannot be used.
        Upstreams::new(&api.upstreams)?;
        let filters =
            filters::FilterSet::new(&api, &plugins, config.limits.max_body_bytes as usize)?;
        Ok(Gateway {
            filters,
            router: Router::new(&api.operations),
            api,
            validators,
            config,
            metrics: Metrics::default(),
        })
    }

    async fn respond(
        &self,
        worker: &Worker,
        request: Request<Incoming>,
        client: ClientConnection,
        request_id: &HeaderValue,
    ) -> Result<Response<Body>, StreamReset> {
        if let Some(problem) = self.check_limits(&request) {
            return Ok(problem.into_response());
        }
        let path = request.uri().path();
        if let Some(admin) = path.strip_prefix("/__barbacane/") {
            return Ok(self.admin(request.method(), admin));
        }
        let segments = match crate::router::normalize(path) {
            Ok(s) => s,
            Err(e) => return Ok(Problem::new(Kind::InvalidPath, e.to_string()).into_response()),
        };
        let host = request_host(&request);
        let (index, path_params) = match self.router.lookup(request.method(), &host, &segments) {
            Lookup::Found(index, params) => (index, params),
            Lookup::NotFound => {
                let path = request.uri().path();
                let hosts = self.router.hosts_serving(&segments);
                let detail = if hosts.is_empty() {
                    format!("no route for {path}")
                } else {
                    // The spec's `servers` are public, so naming them leaks nothing.
                    format!(
                        "no route for {path} on host '{host}'; it is served on: {}",
                        hosts.join(", ")
                    )
                };
                return Ok(Problem::new(Kind::NotFound, detail).into_response());
            }
            Lookup::MethodNotAllowed(allowed) => {
                if let Some(index) = self.preflight_target(&request, &host, &segments) {
                    let preflight =
                        self.preflight(worker, index, request, client, request_id, &allowed);
                    return Box::pin(preflight).await;
                }
                return Ok(method_not_allowed(request.method(), &allowed));
            }
        };
        let operation = &self.api.operations[index];
        let validator = &self.validators[index];
        let (mut parts, body) = request.into_parts();
        let errors = validator.check_params(&RequestParts {
            path_params: &path_params,
            query: parts.uri.query(),
            headers: &parts.headers,
        });
        if !errors.is_empty() {
            return Ok(
                self.validation_problem("the request parameters do not match the API", errors)
            );
        }
        let body = match self.prepare_body(validator, &parts.headers, body).await {
            Ok(body) => body,
            Err(response) => return Ok(response),
        };
        let (admitted, body) = if self.filters.is_empty(index) {
            (None, body)
        } else {
            let route = self.filters.route(index);
            let info = stream_info(&parts, client, request_id, route);
            // The chain's futures are boxed: kept inline they would make every request's future
            // (moved as a whole by hyper) several kilobytes larger, filters or not.
            let chain = self
                .filters
                .request(&worker.replicas, index, &mut parts, body, info);
            match Box::pin(chain).await {
                Ok((admitted, body)) => (Some(admitted), body),
                Err(filters::Early::Respond(response)) => return Ok(response),
                Err(filters::Early::Reset) => return Err(StreamReset),
            }
        };
        let response = std::pin::pin!(dispatch::dispatch(
            &operation.dispatch,
            &worker.upstreams,
            dispatch::Context {
                parts,
                body,
                path_params: &path_params,
                client,
                request_id,
            },
        ));
        match admitted {
            Some(admitted) => Box::pin(self.filters.after_dispatch(admitted, response)).await,
            None => Ok(response.await),
        }
    }

    /// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) on a path that does not
    /// declare `options`: the operation of the method it asks about, when that operation has
    /// plugins, so its chain (a `cors` plugin) can answer without the spec declaring `options`.
    fn preflight_target(
        &self,
        request: &Request<Incoming>,
        host: &str,
        segments: &[std::borrow::Cow<'_, str>],
    ) -> Option<usize> {
        if request.method() != Method::OPTIONS {
            return None;
        }
        let asked = request
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)?
            .as_bytes();
        let method = Method::from_bytes(asked).ok()?;
        match self.router.lookup(&method, host, segments) {
            Lookup::Found(index, _) if !self.filters.is_empty(index) => Some(index),
            _ => None,
        }
    }

    /// Runs a preflight through the request phase of operation `index`'s chain, with no
    /// validation and no dispatch: a plugin's local response is the answer; when none answers,
    /// the path still has no `OPTIONS`, so 405.
    async fn preflight(
        &self,
        worker: &Worker,
        index: usize,
        request: Request<Incoming>,
        client: ClientConnection,
        request_id: &HeaderValue,
        allowed: &[Method],
    ) -> Result<Response<Body>, StreamReset> {
        let (mut parts, body) = request.into_parts();
        let route = self.filters.route(index);
        let info = stream_info(&parts, client, request_id, route);
        let body = request_body::limited(body, &self.config.limits);
        match self
            .filters
            .request(&worker.replicas, index, &mut parts, body, info)
            .await
        {
            Ok(_) => Ok(method_not_allowed(&parts.method, allowed)),
            Err(filters::Early::Respond(response)) => Ok(response),
            Err(filters::Early::Reset) => Err(StreamReset),
        }
    }

    fn check_limits(&self, request: &Request<Incoming>) -> Option<Problem> {
        let limits = &self.config.limits;
        let target = request
            .uri()
            .path_and_query()
            .map_or(0, |p| p.as_str().len());
        if target > limits.max_uri_bytes {
            return Some(Problem::new(
                Kind::UriTooLong,
                format!("the request target exceeds {} bytes", limits.max_uri_bytes),
            ));
        }
        let headers = request.headers();
        if headers.len() > limits.max_headers {
            return Some(Problem::new(
                Kind::HeadersTooLarge,
                format!("more than {} request headers", limits.max_headers),
            ));
        }
        let size: usize = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        if size > limits.max_header_bytes {
            return Some(Problem::new(
                Kind::HeadersTooLarge,
                format!("request headers exceed {} bytes", limits.max_header_bytes),
            ));
        }
        None
    }

    /// Applies the body contract: required, content type, size, and JSON schema (buffered);
    /// bodies without a schema to check stream through under the size limit.
    async fn prepare_body(
        &self,
        validator: &OperationValidator,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Result<Body, Response<Body>> {
        let max = self.config.limits.max_body_bytes;
        let declared_length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length.is_some_and(|n| n > max) {
            return Err(request_body::ReadError::TooLarge(max)
                .problem()
                .into_response());
        }
        let has_body = !http_body::Body::is_end_stream(&body);
        if !has_body {
            if validator.body_required() {
                return Err(self.validation_problem(
                    "the request body is required",
                    vec![FieldError {
                        location: String::from("body"),
                        reason: String::from("required request body is missing"),
                    }],
                ));
            }
            return Ok(empty());
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        match validator.body_plan(content_type) {
            BodyPlan::UnsupportedMediaType => Err(Problem::new(
                Kind::UnsupportedMediaType,
                format!(
                    "content type '{}' is not accepted here",
                    content_type.unwrap_or("none")
                ),
            )
            .into_response()),
            BodyPlan::Stream => Ok(request_body::limited(body, &self.config.limits)),
            BodyPlan::ValidateJson(index) => {
                let body = request_body::limited(body, &self.config.limits);
                let bytes = match body.collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(e) => {
                        let problem = request_body::read_problem(e.as_ref()).unwrap_or_else(|| {
                            Problem::new(
                                Kind::Validation,
                                format!("the request body could not be read: {e}"),
                            )
                        });
                        return Err(problem.into_response());
                    }
                };
                let errors = validator.check_json_body(index, &bytes);
                if !errors.is_empty() {
                    return Err(
                        self.validation_problem("the request body does not match the API", errors)
                    );
                }
                Ok(full(bytes))
            }
        }
    }

    /// A 400 problem; outside `--dev` the reasons are reduced so no schema internals leak.
    fn validation_problem(&self, detail: &str, errors: Vec<FieldError>) -> Response<Body> {
        let errors = if self.config.dev {
            errors
        } else {
            errors
                .into_iter()
                .map(|e| FieldError {
                    reason: String::from(if e.reason.starts_with("required") {
                        "required"
                    } else {
                        "invalid"
                    }),
                    location: e.location,
                })
                .collect()
        };
        Problem::new(Kind::Validation, detail)
            .with_errors(errors)
            .into_response()
    }

    fn admin(&self, method: &Method, endpoint: &str) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut response =
                Problem::new(Kind::MethodNotAllowed, "admin endpoints answer GET only")
                    .into_response();
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let (content_type, body) = match endpoint {
            "health" => (
                "application/json",
                serde_json::json!({"status": "ok", "operations": self.api.operations.len()})
                    .to_string(),
            ),
            "metrics" => ("text/plain; version=0.0.4", self.metrics_text()),
            _ => {
                return Problem::new(Kind::NotFound, format!("no admin endpoint '{endpoint}'"))
                    .into_response();
            }
        };
        let mut response = Response::new(full(body));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }

    fn metrics_text(&self) -> String {
        let mut text = String::from(
            "# HELP barbacane_responses_total Responses sent, by status class.\n# TYPE barbacane_responses_total counter\n",
        );
        for class in 1..=5 {
            let n = self.metrics.by_class[class].load(Ordering::Relaxed);
            text.push_str(&format!(
                "barbacane_responses_total{{class=\"{class}xx\"}} {n}\n"
            ));
        }
        text.push_str(
            "# HELP barbacane_plugin_failures_total Plugin traps and failed callbacks (each replaces the VM).\n# TYPE barbacane_plugin_failures_total counter\n",
        );
        for (plugin, n) in self.filters.failures() {
            text.push_str(&format!(
                "barbacane_plugin_failures_total{{plugin=\"{plugin}\"}} {n}\n"
            ));
        }
        self.filters.render_suspensions(&mut text);
        crate::proxywasm::shared::PluginMetrics::global().render_prometheus(&mut text);
        text
    }
}

/// What properties report about a request's stream.
fn stream_info(
    parts: &http::request::Parts,
    client: ClientConnection,
    request_id: &HeaderValue,
    route: Arc<Route>,
) -> Arc<StreamInfo> {
    let host = match parts.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    // Built inside `Arc::new`: a few hundred bytes, which a value returned and then shared
    // would be copied twice, on every request that has filters.
    Arc::new(StreamInfo {
        method: Some(parts.method.clone()),
        path: Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        ),
        scheme: if client.tls { "https" } else { "http" },
        host,
        protocol: match parts.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        },
        request_id: Some(request_id.clone()),
        start: Some(std::time::SystemTime::now()),
        source: Some(client.peer),
        destination: Some(client.local),
        tls: parts.extensions.get::<TlsSession>().cloned(),
        connection_id: client.id,
        route,
        ..StreamInfo::default()
    })
}

/// 405 with the `Allow` header.
fn method_not_allowed(method: &Method, allowed: &[Method]) -> Response<Body> {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = Problem::new(
        Kind::MethodNotAllowed,
        format!("{method} is not allowed here; allowed: {allow}"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// The request id header, sent back to the client and forwarded upstream (a constant: inserting
/// a `&'static str` name that is not a standard header allocates a copy of it each time).
pub(crate) const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Keeps a well-formed incoming `x-request-id` (1–128 visible ASCII characters), else makes one.
/// Never inlined: `bench/instructions` counts the requests a run served by its calls.
#[inline(never)]
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(X_REQUEST_ID)
        && (1..=128).contains(&v.len())
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return v.clone();
    }
    // Owned, not copied into a `Vec`: the id is cloned for the upstream and the plugins' stream
    // info, and a clone of `Vec`-backed bytes allocates (once) to share them.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(uuid_v4(fastrand::u128(..))))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `random` as a UUIDv4 (RFC 9562 §5.4) in its 36-character text form, written without the
/// formatting machinery (this runs for every request).
fn uuid_v4(random: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = (random & !(0xf << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62)).to_be_bytes();
    let mut text = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    text
}

/// The request's host without port: `Host` for HTTP/1.1, `:authority` for HTTP/2; lower case
/// (borrowed from the request when it already is, as it nearly always is).
fn request_host(request: &Request<Incoming>) -> std::borrow::Cow<'_, str> {
    let raw = request
        .uri()
        .host()
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default();
    let host = crate::router::host_without_port(raw);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_uuid_v4_text() {
        let text = |random| String::from_utf8(super::uuid_v4(random).to_vec()).unwrap();
        assert_eq!(text(0), "00000000-0000-4000-8000-000000000000");
        assert_eq!(text(u128::MAX), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(
            text(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            "01234567-89ab-4def-8123-456789abcdef"
        );
    }
}

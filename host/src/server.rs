//! The data plane's front: worker threads, listeners, HTTP/1.1 (keep-alive) and h2c connections,
//! graceful shutdown, the admin endpoints under `/__barbacane/`, and the per-request pipeline:
//! limits → router → validation → dispatcher, with `x-request-id` stamped on every response.
//!
//! Threading follows Envoy and nginx: one worker thread per core, each with its own
//! single-threaded runtime, its own `SO_REUSEPORT` listener and its own upstream connection pools
//! (a [`Worker`]), so a request never hops threads. The shared, read-only part of a loaded API
//! is the [`Gateway`]. Measured on the proxy benchmark, a multi-threaded runtime spent most of its
//! time waking threads across cores.
//!
//! **Invariant:** nothing on a request's path panics on input; every refusal is a problem
//! response from [`crate::problem`].

use crate::artifact::Artifact;
use crate::dispatch;
use crate::model::Api;
use crate::problem::{Kind, Problem};
use crate::router::{Lookup, Router};
use crate::upstream::Upstreams;
use crate::validate::{BodyPlan, FieldError, OperationValidator, RequestParts};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Empty, Full, Limited, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// Errors carried by bodies in flight.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response the gateway produces.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

/// Request limits; exceeding one gets 413, 414 or 431.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: u64,
    /// Most request headers.
    pub max_headers: usize,
    /// Largest total of header names and values, in bytes.
    pub max_header_bytes: usize,
    /// Longest request target (path and query), in bytes.
    pub max_uri_bytes: usize,
}

impl Default for Limits {
    /// nginx's 1 MiB body limit is a common complaint for APIs; 10 MiB is closer to Kong's and
    /// Envoy's practice. Headers follow Envoy (100 headers, 60 KiB), URIs nginx (8 KiB).
    fn default() -> Self {
        Limits {
            max_body_bytes: 10 * 1024 * 1024,
            max_headers: 100,
            max_header_bytes: 60 * 1024,
            max_uri_bytes: 8 * 1024,
        }
    }
}

/// How the gateway runs.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Development mode: problem responses carry every failing field with its reason.
    pub dev: bool,
    /// Request limits.
    pub limits: Limits,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dev: false,
            limits: Limits::default(),
            drain_timeout: Duration::from_secs(30),
        }
    }
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
    config: Config,
    metrics: Metrics,
}

/// What one worker thread owns: the shared gateway and its own upstream connection pools.
pub struct Worker {
    gateway: Arc<Gateway>,
    upstreams: Upstreams,
}

impl Worker {
    /// A worker for `gateway`; call it on the thread whose runtime will serve it.
    pub fn new(gateway: Arc<Gateway>) -> Result<Worker, String> {
        let upstreams = Upstreams::new(&gateway.api.upstreams)?;
        Ok(Worker { gateway, upstreams })
    }

    /// Answers one request. Never fails: every error becomes a response.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let gateway = &self.gateway;
        let request_id = request_id(request.headers());
        let mut response = gateway
            .respond(&self.upstreams, request, peer, &request_id)
            .await;
        response.headers_mut().insert("x-request-id", request_id);
        let class = usize::from(response.status().as_u16() / 100).min(5);
        gateway.metrics.by_class[class].fetch_add(1, Ordering::Relaxed);
        response
    }
}

impl Gateway {
    /// Prepares routing and validators for `artifact`, and checks its upstream definitions.
    pub fn new(artifact: Artifact, config: Config) -> Result<Gateway, String> {
        let api = artifact.api;
        let validators = api
            .operations
            .iter()
            .map(|op| OperationValidator::new(op).map_err(|e| format!("operation {}: {e}", op.id)))
            .collect::<Result<Vec<_>, _>>()?;
        // Fail at load, not on the first request, if an endpoint cannot be used.
        Upstreams::new(&api.upstreams)?;
        Ok(Gateway {
            router: Router::new(&api.operations),
            api,
            validators,
            config,
            metrics: Metrics::default(),
        })
    }

    async fn respond(
        &self,
        upstreams: &Upstreams,
        request: Request<Incoming>,
        peer: SocketAddr,
        request_id: &HeaderValue,
    ) -> Response<Body> {
        if let Some(problem) = self.check_limits(&request) {
            return problem.into_response();
        }
        let path = request.uri().path();
        if let Some(admin) = path.strip_prefix("/__barbacane/") {
            return self.admin(request.method(), admin);
        }
        let segments = match crate::router::normalize(path) {
            Ok(s) => s,
            Err(e) => return Problem::new(Kind::InvalidPath, e.to_string()).into_response(),
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
                return Problem::new(Kind::NotFound, detail).into_response();
            }
            Lookup::MethodNotAllowed(allowed) => {
                let allow = allowed
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut response = Problem::new(
                    Kind::MethodNotAllowed,
                    format!("{} is not allowed here; allowed: {allow}", request.method()),
                )
                .into_response();
                if let Ok(value) = HeaderValue::from_str(&allow) {
                    response.headers_mut().insert(header::ALLOW, value);
                }
                return response;
            }
        };
        let operation = &self.api.operations[index];
        let validator = &self.validators[index];
        let (parts, body) = request.into_parts();
        let errors = validator.check_params(&RequestParts {
            path_params: &path_params,
            query: parts.uri.query(),
            headers: &parts.headers,
        });
        if !errors.is_empty() {
            return self.validation_problem("the request parameters do not match the API", errors);
        }
        let body = match self.prepare_body(validator, &parts.headers, body).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        dispatch::dispatch(
            &operation.dispatch,
            upstreams,
            dispatch::Context {
                parts,
                body,
                path_params: &path_params,
                peer,
                request_id,
            },
        )
        .await
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
        let too_large = || {
            Problem::new(
                Kind::PayloadTooLarge,
                format!("the request body exceeds {max} bytes"),
            )
            .into_response()
        };
        let declared_length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length.is_some_and(|n| n > max) {
            return Err(too_large());
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
            BodyPlan::Stream => Ok(Limited::new(body, max as usize).boxed_unsync()),
            BodyPlan::ValidateJson(index) => {
                let bytes = match Limited::new(body, max as usize).collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
                    Err(e) => {
                        return Err(Problem::new(
                            Kind::Validation,
                            format!("the request body could not be read: {e}"),
                        )
                        .into_response());
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
        text
    }
}

/// Keeps a well-formed incoming `x-request-id` (1–128 visible ASCII characters), else makes one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get("x-request-id")
        && (1..=128).contains(&v.len())
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return v.clone();
    }
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    );
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The request's host without port: `Host` for HTTP/1.1, `:authority` for HTTP/2.
fn request_host(request: &Request<Incoming>) -> String {
    let raw = request
        .uri()
        .host()
        .map(str::to_owned)
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let host = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(&raw).to_string()
    } else {
        raw.split(':').next().unwrap_or("").to_string()
    };
    host.to_ascii_lowercase()
}

/// Serves `worker` on `listener` until `shutdown` resolves, then stops accepting and waits up
/// to the drain timeout for in-flight requests.
pub async fn serve(
    worker: Arc<Worker>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = worker.gateway.config.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Envoy's default; slow senders cannot hold a connection open forever.
        .header_read_timeout(Duration::from_secs(60))
        // The codec's hard ceiling; the configurable limit below it answers with a problem.
        .max_headers(limits.max_headers.saturating_mul(4).max(100));
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Running out of file descriptors must not kill the loop.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let worker = worker.clone();
                let service = hyper::service::service_fn(move |request| {
                    let worker = worker.clone();
                    async move { Ok::<_, Infallible>(worker.handle(request, peer).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::debug!(connections = graceful.count(), "draining");
    let drain = worker.gateway.config.drain_timeout;
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            "drain timeout reached; closing remaining connections"
        );
    }
}

/// Binds `count` listening sockets on `addr` with `SO_REUSEPORT`, so the kernel spreads new
/// connections over the workers. With port 0, the first socket picks the port for all.
pub fn bind(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Runs one worker thread per listener, each on its own single-threaded runtime, until
/// `shutdown` turns true; returns once every worker has drained.
pub fn run_workers(
    gateway: Arc<Gateway>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let threads = listeners
        .into_iter()
        .enumerate()
        .map(|(index, listener)| {
            let gateway = gateway.clone();
            let mut shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name(format!("barbacane-worker-{index}"))
                .spawn(move || -> Result<(), String> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("worker {index}: cannot start a runtime: {e}"))?;
                    runtime.block_on(async move {
                        let listener = TcpListener::from_std(listener)
                            .map_err(|e| format!("worker {index}: {e}"))?;
                        let worker = Arc::new(Worker::new(gateway)?);
                        serve(worker, listener, async move {
                            let _ = shutdown.wait_for(|stop| *stop).await;
                        })
                        .await;
                        Ok(())
                    })
                })
                .map_err(|e| format!("cannot start worker {index}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    for thread in threads {
        thread
            .join()
            .map_err(|_| String::from("a worker thread panicked"))??;
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

//! Upstream clusters and forwarding: one pooled keep-alive client (HTTP/1.1, TLS by rustls) for
//! all named upstreams, round-robin over each upstream's endpoints, and the proxy rules: path
//! template filled from path parameters, query passed through, hop-by-hop headers stripped,
//! `x-forwarded-*` set, bodies streamed both ways, timeout → 504 (from the end of the request
//! body; also while the upstream takes none of it, and between parts of the response body),
//! connect failure → 502.
//! Plugins' HTTP callouts go through the same pools; their gRPC callouts (`grpc`) through an
//! HTTP/2 pool per cluster.

mod grpc;
mod noted_tls;

pub(crate) use grpc::grpc_status_of_http;

use crate::dispatch::Context;
use crate::idle::IdleTimer;
use crate::model::{HttpUpstreamDispatch, Upstream};
use crate::problem::{Kind, Problem};
use crate::proxywasm::http::Pairs;
use crate::proxywasm::properties::{ResponseOrigin, flags};
use crate::proxywasm::{CallResponse, Callout};
use crate::server::{Body, BoxError};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

/// Characters kept as-is in a path segment (RFC 3986 unreserved and sub-delims, `:` and `@`);
/// everything else, `/` included, is percent-encoded so a parameter stays one segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// RFC 9110 §7.6.1 connection-specific headers, never forwarded. `Trailer` is not one of them
/// (it is end to end, and HTTP/1.1 only sends the trailers it announces).
/// Typed names rather than strings: removal then skips parsing the name on every request.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

type HttpsClient = Client<noted_tls::NotingConnector, Body>;

struct Endpoint {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// `authority` as the `Host` of forwarded requests (made once: cloning it does not allocate).
    host: HeaderValue,
    /// Base path without trailing slash.
    base_path: String,
}

struct Cluster {
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    /// The system-trust client shared by most clusters, or one trusting the cluster's own CAs.
    client: HttpsClient,
    /// The same for gRPC callouts: HTTP/2 only (h2c on `http://`, ALPN `h2` on `https://`).
    grpc_client: HttpsClient,
}

/// All upstream clusters of one worker (cheap to clone: plugin VMs hold a copy for callouts).
#[derive(Clone)]
pub struct Upstreams {
    clusters: Arc<HashMap<String, Cluster>>,
}

impl Upstreams {
    /// Builds clusters (and their connection pools) from the compiled upstream definitions.
    pub fn new(upstreams: &BTreeMap<String, Upstream>) -> Result<Upstreams, String> {
        let mut system_clients: Option<(HttpsClient, HttpsClient)> = None;
        let mut clusters = HashMap::new();
        for (name, upstream) in upstreams {
            let endpoints = upstream
                .endpoints
                .iter()
                .map(|e| {
                    parse_endpoint(e)
                        .ok_or_else(|| format!("upstream '{name}': invalid endpoint '{e}'"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (client, grpc_client) = match &upstream.ca_pem {
                Some(pem) => {
                    clients(roots_from_pem(pem).map_err(|e| format!("upstream '{name}': {e}"))?)?
                }
                None => match &system_clients {
                    Some(c) => c.clone(),
                    None => system_clients.insert(clients(system_roots())?).clone(),
                },
            };
            clusters.insert(
                name.clone(),
                Cluster {
                    endpoints,
                    next: AtomicUsize::new(0),
                    client,
                    grpc_client,
                },
            );
        }
        Ok(Upstreams {
            clusters: Arc::new(clusters),
        })
    }

    /// Upstream `name` and its next endpoint (round robin).
    fn pick(&self, name: &str) -> Option<(&Cluster, &Endpoint)> {
        let cluster = self.clusters.get(name)?;
        let index = cluster.next.fetch_add(1, Ordering::Relaxed) % cluster.endpoints.len().max(1);
        Some((cluster, cluster.endpoints.get(index)?))
    }

    /// Forwards one request; failures become 502/504 problems.
    pub async fn forward(&self, config: &HttpUpstreamDispatch, cx: Context<'_>) -> Response<Body> {
        let Some(cluster) = self.clusters.get(&config.upstream) else {
            let problem = Problem::new(Kind::BadGateway, "the upstream is not configured");
            return failed(problem, ResponseOrigin::local("cluster_not_found"));
        };
        let index = cluster.next.fetch_add(1, Ordering::Relaxed) % cluster.endpoints.len().max(1);
        let Some(endpoint) = cluster.endpoints.get(index) else {
            let problem = Problem::new(Kind::BadGateway, "the upstream has no endpoints");
            return failed(problem, ResponseOrigin::local("no_healthy_upstream"));
        };
        let uri = match upstream_uri(endpoint, &config.path, cx.path_params, cx.parts.uri.query()) {
            Some(uri) => uri,
            None => {
                let problem = Problem::new(Kind::BadGateway, "cannot build the upstream URI");
                return failed(problem, ResponseOrigin::local("invalid_upstream_uri"));
            }
        };
        // A body still to send is tied to the exchange: the timeout counts from its end (Envoy's
        // route timeout: a slow upload is not cut short; the client's pauses have their own
        // bound, `Limits::body_read_timeout`) and until then bounds each wait for the upstream
        // to take more; it fails once the response is over (below).
        let (body, sending, response_over) = if cx.body.is_end_stream() {
            (cx.body, None, None)
        } else {
            let (sent, sending) = tokio::sync::oneshot::channel();
            let (over, response_over) = tokio::sync::oneshot::channel();
            let progress = Arc::new(Progress::default());
            let body = Forwarded {
                body: cx.body,
                progress: progress.clone(),
                sent: Some(sent),
                response_over,
                aborted: false,
            };
            (body.boxed_unsync(), Some((sending, progress)), Some(over))
        };
        let mut request = Request::new(body);
        *request.method_mut() = cx.parts.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        let headers = request.headers_mut();
        *headers = cx.parts.headers;
        let original_host = headers.get(header::HOST).cloned().or_else(|| {
            cx.parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let accepts_trailers = accepts_trailers(headers);
        strip_hop_by_hop(headers);
        // TE is hop-by-hop, but the gateway itself forwards trailers: like Envoy, it keeps
        // `te: trailers` (servers such as gRPC's, and HTTP/1.1 ones, only send trailers then).
        if accepts_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        headers.insert(header::HOST, endpoint.host.clone());
        append_forwarded_for(headers, cx.client.peer);
        let proto = if cx.client.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        match original_host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(X_FORWARDED_HOST),
        };
        headers.insert(crate::gateway::X_REQUEST_ID, cx.request_id.clone());

        let timeout = Duration::from_millis(config.timeout_ms);
        match answer_within(timeout, sending, cluster.client.request(request)).await {
            Err(late) => {
                let what = match late {
                    Late::Answer => "answer",
                    Late::Body => "take the request body",
                };
                let upstream = &config.upstream;
                let detail = format!("upstream '{upstream}' did not {what} within {timeout:?}");
                let problem = Problem::new(Kind::GatewayTimeout, detail);
                let details = "upstream_response_timeout";
                let origin =
                    ResponseOrigin::upstream_failed(details, flags::UPSTREAM_REQUEST_TIMEOUT);
                failed(problem, origin)
            }
            Ok(Err(e)) => upstream_error(&config.upstream, &e),
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let body = UpstreamBody {
                    body,
                    idle: IdleTimer::new(timeout),
                    over: response_over,
                    stalled: false,
                };
                Response::from_parts(parts, body.boxed_unsync())
            }
        }
    }
}

/// What an upstream was too slow for.
enum Late {
    /// The response did not come within the timeout after the request body was over.
    Answer,
    /// The upstream took none of the request body for the timeout (nginx's
    /// `proxy_send_timeout`) while the gateway had some for it.
    Body,
}

/// `answer`, unless the upstream is too slow: the timeout counts from when the request body is
/// over (`sending`'s receiver resolves, see [`Forwarded`]), or from now when there is no body to
/// send; until then, the upstream may go no longer than the timeout without taking any of it.
async fn answer_within<T>(
    timeout: Duration,
    sending: Option<(tokio::sync::oneshot::Receiver<()>, Arc<Progress>)>,
    answer: impl Future<Output = T>,
) -> Result<T, Late> {
    let mut answer = std::pin::pin!(answer);
    if let Some((mut sent, progress)) = sending {
        let mut polls = progress.polls.load(Ordering::Relaxed);
        loop {
            // An upstream may answer before it has the whole body (a 413, say).
            tokio::select! {
                biased;
                answered = &mut answer => return Ok(answered),
                _ = &mut sent => break,
                () = tokio::time::sleep(timeout) => {
                    let now = progress.polls.load(Ordering::Relaxed);
                    if now == polls && !progress.waiting_on_client.load(Ordering::Relaxed) {
                        return Err(Late::Body);
                    }
                    polls = now;
                }
            }
        }
    }
    tokio::time::timeout(timeout, answer)
        .await
        .map_err(|_| Late::Answer)
}

/// How a forwarded request body gets on, as [`Forwarded`] tells [`answer_within`].
#[derive(Default)]
struct Progress {
    /// Times hyper asked for more of the body (it asks once it has written what it had).
    polls: AtomicU64,
    /// The last ask waits on the client, whose pauses the body read timeout bounds.
    waiting_on_client: AtomicBool,
}

/// A request body forwarded to an upstream. It tells `progress` how it gets on, and its sender
/// `sent` is dropped once it is over (sent, failed, or dropped by hyper): the upstream timeout
/// starts then. It fails once the upstream's response is over (`response_over`, see
/// [`UpstreamBody`]) while it is not: as Envoy resets an upstream request whose response
/// completed first, and stops reading the client (whose HTTP/1.1 connection then closes after
/// the response; an HTTP/2 stream is reset).
struct Forwarded {
    body: Body,
    progress: Arc<Progress>,
    sent: Option<tokio::sync::oneshot::Sender<()>>,
    response_over: tokio::sync::oneshot::Receiver<()>,
    aborted: bool,
}

/// The request body a response that was over left unsent.
#[derive(Debug, thiserror::Error)]
#[error("the upstream's response was over before the request body")]
struct ResponseOver;

impl http_body::Body for Forwarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.aborted {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        self.progress.polls.fetch_add(1, Ordering::Relaxed);
        (self.progress.waiting_on_client).store(polled.is_pending(), Ordering::Relaxed);
        if is_over(&polled, &self.body) {
            self.sent = None;
            return polled;
        }
        if Pin::new(&mut self.response_over).poll(cx).is_ready() {
            self.sent = None;
            self.aborted = true;
            return Poll::Ready(Some(Err(ResponseOver.into())));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.aborted || self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The upstream stopped sending its response body.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing of its response body for {0:?}")]
pub struct ResponseStalled(Duration);

/// An upstream's response body. The upstream may keep the gateway waiting for its next part no
/// longer than its `timeout` (nginx's `proxy_read_timeout`; Envoy bounds an idle stream too),
/// else the body fails with [`ResponseStalled`]: the client's stream is reset. While the
/// request body is still being forwarded, its sender `over` is dropped once the response is over
/// (ended, failed, or dropped, e.g. replaced by a plugin's local response), which fails what is
/// left of the request body ([`Forwarded`]).
struct UpstreamBody {
    body: hyper::body::Incoming,
    idle: IdleTimer,
    over: Option<tokio::sync::oneshot::Sender<()>>,
    stalled: bool,
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.stalled {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            self.idle.read();
            let polled = Poll::Ready(frame.map(|frame| frame.map_err(BoxError::from)));
            if is_over(&polled, &self.body) {
                self.over = None;
            }
            return polled;
        }
        std::task::ready!(self.idle.poll_expired(cx));
        self.stalled = true;
        self.over = None;
        let timeout = self.idle.timeout();
        Poll::Ready(Some(Err(ResponseStalled(timeout).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.stalled || self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether `body` is over once it gave `polled`: its end, an error, or a last frame.
fn is_over<T, E>(polled: &Poll<Option<Result<T, E>>>, body: &impl http_body::Body) -> bool {
    match polled {
        Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
        Poll::Ready(_) => true,
        Poll::Pending => false,
    }
}

impl Upstreams {
    /// Sends a plugin's HTTP callout (`proxy_http_call`) to its named upstream. As in Envoy, a
    /// timeout and a connection failure come back as responses the gateway makes (504, 503); a
    /// reset or a response body over [`CALLOUT_BODY_LIMIT`] as a failure with status 11, "reset".
    pub async fn callout(&self, callout: &Callout) -> Result<CallResponse, (u32, String)> {
        let reset = |why: &str| {
            tracing::debug!(upstream = %callout.upstream, why, "callout failed");
            (BROKEN_CONNECTION, String::from("reset"))
        };
        let local = |status: u16, body: &str| CallResponse {
            headers: Pairs::from([
                (":status", status.to_string().as_bytes()),
                ("content-type", b"text/plain"),
            ]),
            body: body.as_bytes().to_vec(),
            trailers: Pairs::new(),
        };
        let Some((cluster, endpoint)) = self.pick(&callout.upstream) else {
            return Ok(local(503, "no healthy upstream"));
        };
        let Some(request) = callout_request(endpoint, callout) else {
            return Err(reset("the callout headers do not make a valid request"));
        };
        let exchange = async {
            let response = match cluster.client.request(request).await {
                Ok(r) => r,
                Err(e) if e.is_connect() => {
                    return Ok(local(
                        503,
                        "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
                    ));
                }
                Err(_) => return Err(reset("the upstream reset the request")),
            };
            let (parts, body) = response.into_parts();
            let collected = http_body_util::Limited::new(body, CALLOUT_BODY_LIMIT)
                .collect()
                .await
                .map_err(|_| reset("the response body failed or exceeded the buffer limit"))?;
            let trailers = collected
                .trailers()
                .map(Pairs::from_iter)
                .unwrap_or_default();
            let mut headers = Pairs::from([(":status", parts.status.as_str())]);
            headers.extend(&parts.headers);
            Ok(CallResponse {
                headers,
                body: collected.to_bytes().to_vec(),
                trailers,
            })
        };
        match callout.timeout {
            Some(timeout) => tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or_else(|_| Ok(local(504, "upstream request timeout"))),
            None => exchange.await,
        }
    }
}

/// Envoy's `BrokenConnection` status, which `proxy_get_status` reports after a failed callout.
const BROKEN_CONNECTION: u32 = 11;

/// The most a callout response body may hold (Envoy's default buffer limit).
pub const CALLOUT_BODY_LIMIT: usize = 1 << 20;

/// The HTTP request for a callout: the endpoint's scheme and address, its base path joined with
/// `:path`, `:authority` as `Host`.
fn callout_request(endpoint: &Endpoint, callout: &Callout) -> Option<Request<Body>> {
    let mut builder = Request::builder();
    let mut path = None;
    for (key, value) in &callout.headers {
        match key {
            b":method" => builder = builder.method(value),
            b":path" => path = Some(String::from_utf8_lossy(value).into_owned()),
            b":authority" => builder = builder.header(header::HOST, value),
            b":scheme" => {}
            _ => builder = builder.header(key, value),
        }
    }
    let path = path?;
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let uri = format!(
        "{}://{}{}{}",
        endpoint.scheme, endpoint.authority, endpoint.base_path, path
    );
    builder
        .uri(uri)
        .header(header::CONTENT_LENGTH, callout.body.len())
        .body(crate::server::full(callout.body.clone()))
        .ok()
}

/// Pooled clients that speak TLS (rustls, ring) to `https://` endpoints with `roots`: HTTP/1.1
/// for proxying and HTTP callouts, HTTP/2 for gRPC callouts.
fn clients(roots: rustls::RootCertStore) -> Result<(HttpsClient, HttpsClient), String> {
    Ok((client(roots.clone(), false)?, client(roots, true)?))
}

fn client(roots: rustls::RootCertStore, http2: bool) -> Result<HttpsClient, String> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup failed: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let connector = noted_tls::NotingConnector(if http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    });
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .http2_only(http2)
        .build(connector))
}

/// The operating system's trusted CAs; none found means `https://` upstreams fail to verify.
fn system_roots() -> rustls::RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!(
            "no system CA certificates found; https upstreams without ca_file will fail"
        );
    }
    roots
}

fn roots_from_pem(pem: &str) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("invalid CA PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("invalid CA certificate: {e}"))?;
    }
    Ok(roots)
}

fn upstream_error(upstream: &str, e: &hyper_util::client::legacy::Error) -> Response<Body> {
    if let Some(problem) = crate::request_body::read_problem(e) {
        // The client's body failed, not the upstream.
        let details = match problem.kind() {
            Kind::PayloadTooLarge => "request_payload_too_large",
            Kind::RequestTimeout => "request_timeout",
            _ => "downstream_request_failed",
        };
        return failed(problem, ResponseOrigin::local(details));
    }
    tracing::warn!(error = ?e, upstream, "upstream request failed");
    if e.is_connect() {
        let problem = Problem::new(
            Kind::BadGateway,
            format!("cannot connect to upstream '{upstream}'"),
        );
        let details = "upstream_reset_before_response_started{connection_failure}";
        let origin = ResponseOrigin::upstream_failed(details, flags::UPSTREAM_CONNECTION_FAILURE);
        return failed(problem, origin);
    }
    let problem = Problem::new(
        Kind::BadGateway,
        format!("upstream '{upstream}' failed before answering"),
    );
    let details = "upstream_reset_before_response_started{connection_termination}";
    let origin = ResponseOrigin::upstream_failed(details, flags::UPSTREAM_CONNECTION_TERMINATION);
    failed(problem, origin)
}

/// The problem answering a request that could not be forwarded, noting for the plugins what
/// went wrong (`response.code_details`, `response.flags`).
#[cold]
fn failed(problem: Problem, origin: ResponseOrigin) -> Response<Body> {
    let mut response = problem.into_response();
    response.extensions_mut().insert(origin);
    response
}

fn parse_endpoint(text: &str) -> Option<Endpoint> {
    let uri: Uri = text.parse().ok()?;
    let authority = uri.authority()?.clone();
    Some(Endpoint {
        scheme: uri.scheme()?.clone(),
        host: HeaderValue::from_str(authority.as_str()).ok()?,
        authority,
        base_path: uri.path().trim_end_matches('/').to_string(),
    })
}

/// `endpoint` + template filled with percent-encoded parameters + the client's raw query.
fn upstream_uri(
    endpoint: &Endpoint,
    template: &str,
    params: &[(String, String)],
    query: Option<&str>,
) -> Option<Uri> {
    let mut path = endpoint.base_path.clone();
    for segment in template.split('/').filter(|s| !s.is_empty()) {
        path.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let value = params
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())?;
                path.extend(utf8_percent_encode(value, SEGMENT));
            }
            None => path.push_str(segment),
        }
    }
    if path.is_empty() || template.ends_with('/') {
        path.push('/');
    }
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    Uri::builder()
        .scheme(endpoint.scheme.clone())
        .authority(endpoint.authority.clone())
        .path_and_query(path)
        .build()
        .ok()
}

/// Whether the client's `TE` lists `trailers`.
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(&header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    let ip = peer.ip().to_string();
    let value = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, {ip}"),
        None => ip,
    };
    // From `Bytes` the value is checked, not copied.
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

// Header names the proxy sets on every request, as constants: inserting a `&'static str` name
// that is not a standard header allocates a copy of it each time.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uris_encode_parameters_as_single_segments() {
        let endpoint = parse_endpoint("http://127.0.0.1:9001/api/").unwrap();
        let params = vec![(String::from("id"), String::from("a/../b c"))];
        let uri = upstream_uri(&endpoint, "/v1/items/{id}", &params, Some("x=1&y=%20")).unwrap();
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:9001/api/v1/items/a%2F..%2Fb%20c?x=1&y=%20"
        );
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }
}

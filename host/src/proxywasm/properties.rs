//! Proxy-Wasm properties (`proxy_get_property`): Envoy's attribute names and encodings.
//!
//! Owns the pure lookup from a property path to the bytes a filter gets back: Envoy's attributes
//! (`request.*`, `response.*`, `source.*`, `destination.*`, `connection.*`, `upstream.*`,
//! `metadata`, `filter_state`, `xds.*` and their legacy spellings), the Wasm tokens (`plugin_*`,
//! `connection_id`) and the values filters stored with `proxy_set_property`, in that order
//! (`shared/reference/proxy-wasm-abi.md` §6.2, §6.3, §8), and the request's record they are
//! read from ([`StreamInfo`]).
//! Guest memory and the stream state belong to the host calls, which build a [`PropertyView`].

use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::abi::Status;
use super::http::{Pairs, serialize};
use super::vm::Direction;

/// What the host knows about one HTTP stream, for properties. One per request, shared by its
/// chain's streams as an `Arc`.
///
/// Made for every request that has plugins, so its fields share what the request already holds
/// (cloning a method, a path or a header value does not copy it) instead of copying it.
#[derive(Debug, Default)]
pub struct StreamInfo {
    /// The request method as received (`request.method` when the live headers lack `:method`).
    pub method: Option<http::Method>,
    /// The request path with its query string, as received.
    pub path: Option<http::uri::PathAndQuery>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The `:authority` (HTTP/1's `Host`).
    pub host: Option<http::HeaderValue>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// The request id (`x-request-id`).
    pub request_id: Option<http::HeaderValue>,
    /// When the first byte of the request was received.
    pub start: Option<SystemTime>,
    /// The downstream peer.
    pub source: Option<SocketAddr>,
    /// The local address the request arrived on.
    pub destination: Option<SocketAddr>,
    /// The downstream connection's TLS session; None for plain HTTP.
    pub tls: Option<TlsSession>,
    /// The downstream connection's id.
    pub connection_id: u64,
    /// The route the request took (its operation), shared by the operation's requests.
    pub route: Arc<Route>,
    /// When the request was handed to its upstream (`response.backend_latency`); unset for a
    /// route with no upstream.
    pub dispatched: OnceLock<Instant>,
    /// Body bytes received so far, each way (`request.size`, `response.size`).
    pub body_sizes: BodySizes,
    /// What the filters stored with `proxy_set_property` during this request.
    pub filter_state: FilterState,
    /// The request and response headers as they finally were, set once the phases are over:
    /// readable (not writable) in `on_done` and `on_log`, as in Envoy's access-log phase.
    pub final_heads: OnceLock<[Pairs; 2]>,
    /// Where the response came from, once the response phase has it (`response.code_details`,
    /// `response.flags`, `upstream.*`).
    pub origin: Mutex<Option<ResponseOrigin>>,
}

/// What properties report of an operation's route: made once per operation, shared by its
/// requests.
#[derive(Debug, Default)]
pub struct Route {
    /// `xds.route_name`: the operation's `operationId`; empty when there is none.
    pub name: String,
    /// The upstream the operation dispatches to; `None` for a mock.
    pub cluster: Option<Cluster>,
    /// The host patterns of the operation's `servers` (`None`: any host), of which the one a
    /// request matched is its virtual host (`xds.virtual_host_name`).
    pub hosts: Vec<Option<String>>,
}

/// An upstream as Envoy's cluster attributes report it.
#[derive(Debug)]
pub struct Cluster {
    /// `xds.cluster_name`: the upstream's name in `x-barbacane-upstreams`.
    pub name: String,
    /// `upstream.num_endpoints`: how many endpoints it has.
    pub endpoints: u64,
}

impl Route {
    /// The virtual host of a request to `host` (without port): the first of the operation's
    /// host patterns that matches it, else `*` (Envoy's catch-all domain) when one of its
    /// servers takes any host.
    fn virtual_host(&self, host: &str) -> Option<&str> {
        let mut patterns = self.hosts.iter().flatten();
        match patterns.find(|p| crate::router::labels_match(p.split('.'), host)) {
            Some(pattern) => Some(pattern),
            None => self.hosts.iter().any(Option::is_none).then_some("*"),
        }
    }
}

/// What a TLS connection negotiated.
#[derive(Debug, Clone)]
pub struct TlsSession {
    /// The protocol version as Envoy names it (`TLSv1.2`, `TLSv1.3`).
    pub version: &'static str,
    /// The server name the client asked for (SNI), if any.
    pub server_name: Option<Arc<str>>,
    /// The certificate the gateway presented.
    pub local_certificate: Arc<CertificateNames>,
}

/// Envoy's name of a negotiated TLS version (rustls speaks none older than 1.2).
pub fn tls_version(version: Option<rustls::ProtocolVersion>) -> &'static str {
    match version {
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLSv1.3",
    }
}

/// The names of a certificate, as Envoy's `*_certificate` attributes give them.
#[derive(Debug, Default)]
pub struct CertificateNames {
    /// The subject, written as RFC 2253 does (`CN=api.example.com,O=Example`).
    pub subject: String,
    /// The first DNS name among its subject alternative names.
    pub dns_san: Option<String>,
    /// The first URI among its subject alternative names.
    pub uri_san: Option<String>,
}

impl CertificateNames {
    /// The names of a DER certificate; none (an empty subject) when it cannot be read: rustls
    /// has checked the certificates the gateway serves and talks to, these are only reported.
    pub fn of(der: &[u8]) -> CertificateNames {
        use x509_cert::der::Decode;
        use x509_cert::ext::pkix::SubjectAltName;
        use x509_cert::ext::pkix::name::GeneralName;
        let Ok(certificate) = x509_cert::Certificate::from_der(der) else {
            tracing::debug!("a TLS certificate's names cannot be read: plugins get none");
            return CertificateNames::default();
        };
        let tbs = certificate.tbs_certificate();
        let alternatives = match tbs.get_extension::<SubjectAltName>() {
            Ok(Some((_, names))) => names.0,
            _ => Vec::new(),
        };
        let first = |wanted: fn(&GeneralName) -> Option<&str>| {
            alternatives.iter().find_map(wanted).map(String::from)
        };
        CertificateNames {
            subject: tbs.subject().to_string(),
            dns_san: first(|name| match name {
                GeneralName::DnsName(dns) => Some(dns.as_str()),
                _ => None,
            }),
            uri_san: first(|name| match name {
                GeneralName::UniformResourceIdentifier(uri) => Some(uri.as_str()),
                _ => None,
            }),
        }
    }
}

/// What the TLS handshake with an upstream settled (`upstream.tls_version`,
/// `upstream.*_peer_certificate`), noted on its connection.
#[derive(Debug)]
pub struct UpstreamTls {
    /// The protocol version as Envoy names it.
    pub version: &'static str,
    /// The names of the certificate the upstream presented.
    pub peer: CertificateNames,
    /// The SHA-256 digest of that certificate (DER), in lower-case hex.
    pub peer_digest: String,
}

impl UpstreamTls {
    /// What `connection` (an upstream's, after its handshake) settled.
    pub fn of(connection: &rustls::ClientConnection) -> UpstreamTls {
        use sha2::Digest;
        let leaf = connection.peer_certificates().and_then(<[_]>::first);
        let peer_digest = leaf.map_or_else(String::new, |der| {
            sha2::Sha256::digest(der)
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect()
        });
        UpstreamTls {
            version: tls_version(connection.protocol_version()),
            peer: leaf
                .map(|der| CertificateNames::of(der))
                .unwrap_or_default(),
            peer_digest,
        }
    }
}

/// Where a response came from, as Envoy's stream info records it.
#[derive(Debug, Clone, Default)]
pub struct ResponseOrigin {
    /// `response.code_details`: `via_upstream`, `direct_response` (a mock), the details a
    /// plugin gave its local response, or why the upstream failed
    /// (`upstream_response_timeout`, `upstream_reset_before_response_started{…}`).
    pub details: Cow<'static, str>,
    /// `response.flags`: Envoy's response-flag bits ([`flags`]); 0 for a normal response.
    pub flags: u64,
    /// Whether the request was sent (or tried) upstream (`upstream.request_attempt_count`).
    pub attempted: bool,
    /// The upstream connection that answered: its peer and local addresses.
    pub upstream: Option<(SocketAddr, SocketAddr)>,
    /// What that connection's TLS handshake settled; `None` for plain HTTP.
    pub upstream_tls: Option<Arc<UpstreamTls>>,
}

impl ResponseOrigin {
    /// A response the upstream sent, over the connection between `addresses` when known.
    pub fn via_upstream(addresses: Option<(SocketAddr, SocketAddr)>) -> ResponseOrigin {
        ResponseOrigin {
            details: Cow::Borrowed("via_upstream"),
            attempted: true,
            upstream: addresses,
            ..ResponseOrigin::default()
        }
    }

    /// The gateway's answer to a request the upstream failed (`flags`: [`flags`]).
    pub fn upstream_failed(details: &'static str, flags: u64) -> ResponseOrigin {
        ResponseOrigin {
            details: Cow::Borrowed(details),
            flags,
            attempted: true,
            ..ResponseOrigin::default()
        }
    }

    /// A response the gateway made itself, for `details`.
    pub fn local(details: impl Into<Cow<'static, str>>) -> ResponseOrigin {
        ResponseOrigin {
            details: details.into(),
            ..ResponseOrigin::default()
        }
    }
}

/// Envoy's response-flag bits (`StreamInfo::LegacyResponseFlag`) that the gateway can set.
pub mod flags {
    /// UT: the upstream did not answer within its timeout.
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4;
    /// UF: the connection to the upstream could not be made.
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20;
    /// UC: the upstream connection ended before the response.
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
}

impl StreamInfo {
    /// How long the exchange has taken, once it is over (its final heads are set when the
    /// phases end, just before `on_done` and `on_log`): taken when asked rather than when it
    /// ends, which would cost every request a clock read for a value few filters ask for.
    fn exchange_duration(&self) -> Option<Duration> {
        self.final_heads.get()?;
        self.start?.elapsed().ok()
    }

    /// Envoy's backend latency (from the request's first byte sent upstream to the response's
    /// last byte received), once the exchange is over and the upstream answered: from when the
    /// request was handed to the upstream until now, taken when asked as
    /// [`StreamInfo::exchange_duration`] is (the phases end with the response's last byte).
    fn backend_latency(&self) -> Option<Duration> {
        self.final_heads.get()?;
        self.with_origin(|o| o.upstream.is_some())
            .filter(|&answered| answered)?;
        Some(self.dispatched.get()?.elapsed())
    }

    /// The virtual host the request matched (see [`Route::virtual_host`]).
    fn virtual_host(&self) -> Option<&str> {
        let host = self.host.as_ref().and_then(|h| h.to_str().ok());
        self.route
            .virtual_host(crate::router::host_without_port(host.unwrap_or_default()))
    }

    /// Records where the response came from (a later local response replaces it).
    pub fn set_origin(&self, origin: ResponseOrigin) {
        *self.origin.lock().unwrap_or_else(PoisonError::into_inner) = Some(origin);
    }

    /// `read` of where the response came from, once the response phase has it.
    fn with_origin<T>(&self, read: impl FnOnce(&ResponseOrigin) -> T) -> Option<T> {
        let origin = self.origin.lock().unwrap_or_else(PoisonError::into_inner);
        origin.as_ref().map(read)
    }
}

/// A request's body sizes, counted by the gateway as the bodies flow (through the request's
/// shared `Arc<StreamInfo>`).
#[derive(Debug, Default)]
pub struct BodySizes([AtomicU64; 2]);

impl BodySizes {
    /// Counts `bytes` more of the body going `direction`.
    pub fn add(&self, direction: Direction, bytes: usize) {
        self.0[direction as usize].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Request body bytes so far.
    pub fn request(&self) -> u64 {
        self.0[0].load(Ordering::Relaxed)
    }

    /// Response body bytes so far.
    pub fn response(&self) -> u64 {
        self.0[1].load(Ordering::Relaxed)
    }
}

/// `proxy_set_property` values of one request, by dotted name. Shared by every filter of the
/// request's chain (through its `Arc<StreamInfo>`), as Envoy's per-stream filter state is: what
/// an auth plugin stores (the consumer) the plugins after it can read. Hashed with Fx, not
/// SipHash: the names are the ones plugins choose (the built-ins' are constants), not a client's.
#[derive(Debug, Default)]
pub struct FilterState(Mutex<FilterValues>);

/// The most bytes of names and values one request's filter state (or a VM's root context's)
/// holds: a plugin setting properties in a loop must not make the host hold gigabytes.
pub const FILTER_STATE_LIMIT_BYTES: usize = 16 << 20;

/// Filter-state values by dotted name, and the bytes they hold.
#[derive(Debug, Default)]
pub struct FilterValues {
    values: FxHashMap<String, Vec<u8>>,
    bytes: usize,
}

impl FilterValues {
    /// The value named `key`.
    pub fn get(&self, key: &str) -> Option<&Vec<u8>> {
        self.values.get(key)
    }

    /// Sets `key` to `value`; `false`, with nothing changed, when the values would then hold
    /// more than [`FILTER_STATE_LIMIT_BYTES`].
    pub fn insert(&mut self, key: String, value: Vec<u8>) -> bool {
        let old = self.values.get(&key).map_or(0, |v| key.len() + v.len());
        let bytes = self.bytes - old + key.len() + value.len();
        if bytes > FILTER_STATE_LIMIT_BYTES {
            return false;
        }
        self.bytes = bytes;
        self.values.insert(key, value);
        true
    }
}

impl FilterState {
    /// The values. A request's filters run one at a time, so the lock is never contended; a
    /// panic elsewhere while it was held leaves a map that is still consistent.
    pub fn lock(&self) -> MutexGuard<'_, FilterValues> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The plugin the asking VM runs.
#[derive(Debug, Clone, Default)]
pub struct PluginIdentity {
    /// `plugin_name`.
    pub name: String,
    /// `plugin_root_id`.
    pub root_id: String,
    /// `plugin_vm_id`.
    pub vm_id: String,
}

/// Everything a lookup may read. Header maps are the live ones (None when not available).
#[derive(Debug, Clone, Copy)]
pub struct PropertyView<'a> {
    /// The plugin asking.
    pub plugin: &'a PluginIdentity,
    /// The stream asked about; None in a root context.
    pub stream: Option<&'a StreamInfo>,
    /// The request headers, pseudo-headers included.
    pub request_headers: Option<&'a Pairs>,
    /// The response headers, `:status` included.
    pub response_headers: Option<&'a Pairs>,
    /// The response trailers.
    pub response_trailers: Option<&'a Pairs>,
    /// `proxy_set_property` values of this stream (or of the root context), by dotted name.
    pub filter_state: &'a FilterValues,
}

/// A property path's text. Paths are ASCII names, checked by `from_utf8`'s fast path; bytes that
/// are not UTF-8 are replaced, so such a segment matches no attribute name.
pub fn path_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// A property path's segments, on the stack for the few segments a path has: one is split on
/// every property call.
pub type Segments<'a> = SmallVec<[&'a str; 4]>;

/// Splits a property path as the ABI sends it (segments joined by NUL, trailing NUL tolerated).
pub fn split_path(text: &str) -> Segments<'_> {
    let text = text.strip_suffix('\0').unwrap_or(text);
    if text.is_empty() {
        return Segments::new();
    }
    text.split('\0').collect()
}

/// The value of the property at `path` in Envoy's encoding, or the status to answer
/// (NotFound for an unknown path or a value not available now).
///
/// Only NUL-separated parts are segments. Some SDK helpers pass a dotted name as one segment
/// (`"request.headers.x-a"`); such a segment is split on its first two dots (the rest stays one
/// segment, as header names may hold dots) only when the path as given matches nothing, so a
/// filter-state entry stored under that dotted name wins.
pub fn get(view: &PropertyView<'_>, path: &[&str]) -> Result<Vec<u8>, Status> {
    match lookup(view, path) {
        Lookup::Found(value) => return Ok(value),
        Lookup::Unavailable => return Err(Status::NotFound),
        Lookup::Unknown => {}
    }
    if let [single] = path
        && single.contains('.')
    {
        let split: Segments<'_> = single.splitn(3, '.').collect();
        if let Lookup::Found(value) = lookup(view, &split) {
            return Ok(value);
        }
    }
    Err(Status::NotFound)
}

/// The key under which `proxy_set_property` stores a value: the segments of `path` (as
/// [`split_path`] reads it) joined by '.'.
pub fn filter_state_key(path: &str) -> String {
    path.strip_suffix('\0').unwrap_or(path).replace('\0', ".")
}

/// What one lookup stage made of a path.
enum Lookup {
    /// The stage owns the name and has this value.
    Found(Vec<u8>),
    /// The stage owns the name but has no value now (`response.code` before the response, any
    /// stream attribute in a root context). Later stages are not asked, as in Envoy, so a
    /// filter-state entry never shadows an attribute.
    Unavailable,
    /// Not a name this stage knows.
    Unknown,
}

/// `Found` for a value, `Unavailable` for none.
fn known(value: Option<Vec<u8>>) -> Lookup {
    match value {
        Some(value) => Lookup::Found(value),
        None => Lookup::Unavailable,
    }
}

/// Envoy's order (`context.cc findValue`): attributes, then Wasm tokens, then filter state.
fn lookup(view: &PropertyView<'_>, path: &[&str]) -> Lookup {
    match attribute(view, path) {
        Lookup::Unknown => {}
        answer => return answer,
    }
    match wasm_token(view, path) {
        Lookup::Unknown => {}
        answer => return answer,
    }
    match view.filter_state.get(&path.join(".")) {
        Some(value) => Lookup::Found(value.clone()),
        None => Lookup::Unknown,
    }
}

/// Envoy's attributes (§8.1, §8.2) and their legacy top-level names (§8.3).
fn attribute(view: &PropertyView<'_>, segments: &[&str]) -> Lookup {
    let stream = view.stream;
    match segments {
        ["request", rest @ ..] => request(view, rest),
        ["request_protocol"] => request(view, &["protocol"]),
        ["response", rest @ ..] => response(view, rest),
        ["source", rest @ ..] => peer(stream.and_then(|s| s.source), rest),
        ["destination", rest @ ..] => peer(stream.and_then(|s| s.destination), rest),
        ["connection", rest @ ..] => connection(stream, rest),
        ["upstream", rest @ ..] => upstream(stream, rest),
        // The request's dynamic metadata: nothing in the gateway sets any.
        ["metadata", rest @ ..] => empty_metadata(stream.is_some(), rest),
        // What `proxy_set_property` stored, under Envoy's filter-state key (`wasm.<path>`).
        ["filter_state", key] => {
            let value = key
                .strip_prefix("wasm.")
                .and_then(|key| view.filter_state.get(key));
            known(value.cloned())
        }
        ["xds", rest @ ..] => xds(stream, rest),
        // Upstream filters' state: the gateway has no upstream filters, so it holds nothing.
        ["upstream_filter_state", ..] => Lookup::Unavailable,
        // The legacy spellings of `xds.*`, which older filters and the Go SDK still read.
        ["node", ..]
        | ["cluster_name"]
        | ["cluster_metadata", ..]
        | ["route_name"]
        | ["route_metadata", ..]
        | ["listener_direction"]
        | ["listener_metadata", ..]
        | ["upstream_host_metadata", ..] => xds(stream, segments),
        _ => Lookup::Unknown,
    }
}

/// `xds.*`: what Envoy knows from its configuration. The gateway's answers: the node is this
/// machine ([`Node`]), the cluster the operation's upstream, the route its `operationId`; the
/// listener has no direction (0, `UNSPECIFIED`) and no filter-chain name; every metadata is
/// empty (the spec gives none).
fn xds(stream: Option<&StreamInfo>, rest: &[&str]) -> Lookup {
    let cluster = stream.and_then(|s| s.route.cluster.as_ref());
    let virtual_host = || stream.and_then(StreamInfo::virtual_host);
    let upstream_answered = || stream.and_then(|s| s.with_origin(|o| o.upstream.is_some()));
    match rest {
        ["node", path @ ..] => Node::get().lookup(path),
        ["cluster_name"] => known(cluster.map(|c| string(&c.name))),
        ["cluster_metadata", path @ ..] => empty_metadata(cluster.is_some(), path),
        ["route_name"] => known(stream.and_then(|s| non_empty(&s.route.name)).map(string)),
        ["route_metadata", path @ ..] => empty_metadata(stream.is_some(), path),
        ["virtual_host_name"] => known(virtual_host().map(string)),
        ["virtual_host_metadata", path @ ..] => empty_metadata(virtual_host().is_some(), path),
        ["listener_direction"] => Lookup::Found(int(0)),
        ["listener_metadata", path @ ..] => empty_metadata(stream.is_some(), path),
        ["filter_chain_name"] => known(stream.map(|_| Vec::new())),
        [
            "upstream_host_metadata" | "upstream_host_locality_metadata",
            path @ ..,
        ] => empty_metadata(upstream_answered() == Some(true), path),
        _ => Lookup::Unknown,
    }
}

/// `path` into an `envoy.config.core.v3.Metadata` with nothing in it, when the host has one
/// (`present`): empty as a whole, its maps empty, any key below them absent.
fn empty_metadata(present: bool, path: &[&str]) -> Lookup {
    match path {
        _ if !present => Lookup::Unavailable,
        [] => Lookup::Found(Vec::new()),
        ["filter_metadata" | "typed_filter_metadata"] => Lookup::Found(empty_map()),
        _ => Lookup::Unavailable,
    }
}

/// A map attribute with no entries (the pair format's count, 0).
fn empty_map() -> Vec<u8> {
    serialize(&Pairs::new())
}

/// The gateway as an Envoy node (`xds.node`, an `envoy.config.core.v3.Node`): its id is the
/// machine's host name, its user agent `barbacane` at this version; no cluster, no metadata.
struct Node {
    id: String,
    /// The whole message, as protobuf encodes it.
    encoded: Vec<u8>,
}

impl Node {
    const USER_AGENT_NAME: &str = "barbacane";
    const USER_AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

    /// The node, made once per process.
    fn get() -> &'static Node {
        static NODE: OnceLock<Node> = OnceLock::new();
        NODE.get_or_init(|| {
            let id = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| String::from("barbacane"));
            Node::new(id)
        })
    }

    fn new(id: String) -> Node {
        let mut encoded = Vec::new();
        // Node { id = 1, user_agent_name = 6, user_agent_version = 7 } (strings: wire type 2).
        for (field, value) in [
            (1, id.as_str()),
            (6, Node::USER_AGENT_NAME),
            (7, Node::USER_AGENT_VERSION),
        ] {
            encoded.push(field << 3 | 2);
            let mut len = value.len();
            while len >= 0x80 {
                encoded.push((len as u8) | 0x80);
                len >>= 7;
            }
            encoded.push(len as u8);
            encoded.extend_from_slice(value.as_bytes());
        }
        Node { id, encoded }
    }

    /// A path into the node, as Envoy walks a message: a field by name; `metadata` (a
    /// `Struct`, read as a map) is empty.
    fn lookup(&self, path: &[&str]) -> Lookup {
        match path {
            [] => Lookup::Found(self.encoded.clone()),
            ["id"] => Lookup::Found(string(&self.id)),
            ["cluster"] => Lookup::Found(Vec::new()),
            ["user_agent_name"] => Lookup::Found(string(Node::USER_AGENT_NAME)),
            ["user_agent_version"] => Lookup::Found(string(Node::USER_AGENT_VERSION)),
            ["metadata"] => Lookup::Found(empty_map()),
            _ => Lookup::Unavailable,
        }
    }
}

/// `request.*`. Method, path, authority and scheme come from the live request headers when
/// there are any, as Envoy reads them from its header map (a filter that rewrote `:path` sees
/// the new path); otherwise from what the stream received.
fn request(view: &PropertyView<'_>, rest: &[&str]) -> Lookup {
    let stream = view.stream;
    let headers = view.request_headers;
    let path = || {
        let received = stream.and_then(|s| s.path.as_ref());
        live_or(
            headers,
            ":path",
            received.map(http::uri::PathAndQuery::as_str),
        )
    };
    match rest {
        ["path"] => known(path().map(string)),
        ["url_path"] => known(path().map(|p| string(url_path(p)))),
        ["query"] => known(path().map(|p| string(query(p)))),
        ["host"] => {
            let received = stream.and_then(|s| s.host.as_ref()?.to_str().ok());
            known(live_or(headers, ":authority", received).map(string))
        }
        ["scheme"] => known(live_or(headers, ":scheme", stream.map(|s| s.scheme)).map(string)),
        ["method"] => {
            let received = stream
                .and_then(|s| s.method.as_ref())
                .map(http::Method::as_str);
            known(live_or(headers, ":method", received).map(string))
        }
        ["headers"] => known(headers.map(serialize)),
        ["headers", name] => known(headers.and_then(|h| joined_values(h, name))),
        ["referer"] => known(headers.and_then(|h| joined_values(h, "referer"))),
        ["useragent"] => known(headers.and_then(|h| joined_values(h, "user-agent"))),
        ["id"] => {
            let id = stream.and_then(|s| s.request_id.as_ref()?.to_str().ok());
            known(id.and_then(non_empty).map(string))
        }
        ["protocol"] => known(stream.and_then(|s| non_empty(s.protocol)).map(string)),
        ["time"] => known(stream.and_then(|s| s.start).map(timestamp)),
        ["duration"] => known(stream.and_then(StreamInfo::exchange_duration).map(duration)),
        // The declared length when there is one (Envoy's choice: known from the headers on),
        // else the bytes received so far.
        ["size"] => match headers.and_then(|h| first_value(h, "content-length")) {
            Some(length) => known(parsed(length).map(int)),
            None => known(stream.map(|s| int_from_u64(s.body_sizes.request()))),
        },
        ["headers_bytes"] => known(stream.map(|_| int_from_u64(headers.map_or(0, headers_bytes)))),
        ["total_size"] => {
            known(stream.zip(headers).map(|(s, h)| {
                int_from_u64(s.body_sizes.request().saturating_add(headers_bytes(h)))
            }))
        }
        _ => Lookup::Unknown,
    }
}

/// `response.*`.
fn response(view: &PropertyView<'_>, rest: &[&str]) -> Lookup {
    let stream = view.stream;
    let headers = view.response_headers;
    let trailers = view.response_trailers;
    match rest {
        ["code"] => {
            // The response's `:status` (in `on_log`, the status as sent).
            known(status_code(headers).map(|c| int(i64::from(c))))
        }
        ["headers"] => known(headers.map(serialize)),
        ["headers", name] => known(headers.and_then(|h| joined_values(h, name))),
        ["headers_bytes"] => known(stream.map(|_| int_from_u64(headers.map_or(0, headers_bytes)))),
        ["trailers"] => known(trailers.map(serialize)),
        ["trailers", name] => known(trailers.and_then(|t| joined_values(t, name))),
        ["size"] => known(stream.map(|s| int_from_u64(s.body_sizes.response()))),
        ["total_size"] => known(stream.zip(headers).map(|(s, h)| {
            let heads = headers_bytes(h) + trailers.map_or(0, headers_bytes);
            int_from_u64(s.body_sizes.response().saturating_add(heads))
        })),
        ["flags"] => known(stream.map(|s| {
            let flags = s.with_origin(|o| o.flags).unwrap_or(0);
            int(i64::try_from(flags).unwrap_or(i64::MAX))
        })),
        ["code_details"] => known(stream.and_then(|s| s.with_origin(|o| string(&o.details)))),
        ["grpc_status"] => known(grpc_status(headers, trailers).map(|code| int(i64::from(code)))),
        ["backend_latency"] => known(stream.and_then(StreamInfo::backend_latency).map(duration)),
        _ => Lookup::Unknown,
    }
}

/// Envoy's `response.grpc_status`: the `grpc-status` of the trailers, else of the headers (a
/// trailers-only response), else what gRPC maps the HTTP status to; -1 for a status that is not
/// a known code.
fn grpc_status(headers: Option<&Pairs>, trailers: Option<&Pairs>) -> Option<i32> {
    let declared = [trailers, headers]
        .into_iter()
        .flatten()
        .find_map(|map| first_value(map, "grpc-status"));
    if let Some(status) = declared {
        let code = parsed::<u8>(status).filter(|&c| c <= 16);
        return Some(code.map_or(-1, i32::from));
    }
    i32::try_from(crate::upstream::grpc_status_of_http(status_code(headers)?)).ok()
}

/// The response's `:status`, when the headers are there and it is a number.
fn status_code(headers: Option<&Pairs>) -> Option<u16> {
    parsed(first_value(headers?, ":status")?)
}

/// A header value read as a number (or anything else `FromStr` reads).
fn parsed<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// `source.*` and `destination.*`: Envoy gives the address as `ip:port`.
fn peer(address: Option<SocketAddr>, rest: &[&str]) -> Lookup {
    match rest {
        ["address"] => known(address.map(address_text)),
        ["port"] => known(address.map(|a| int(i64::from(a.port())))),
        _ => Lookup::Unknown,
    }
}

/// `address` as its `Display` writes it (`ip:port`, `[ip]:port` for IPv6). IPv4 is written with
/// `itoa`: rate limiters and IP filters read `source.address` on every request, and the
/// formatting machinery took ten times as long.
fn address_text(address: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(v4) = address else {
        return address.to_string().into_bytes();
    };
    let mut out = Vec::with_capacity("255.255.255.255:65535".len());
    let mut decimal = itoa::Buffer::new();
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(decimal.format(octet).as_bytes());
    }
    out.push(b':');
    out.extend_from_slice(decimal.format(v4.port()).as_bytes());
    out
}

/// `connection.*`.
fn connection(stream: Option<&StreamInfo>, rest: &[&str]) -> Lookup {
    let tls = stream.and_then(|s| s.tls.as_ref());
    match rest {
        ["id"] => known(stream.map(|s| uint(s.connection_id))),
        // The gateway does not ask clients for certificates.
        ["mtls"] => known(stream.map(|_| boolean(false))),
        ["requested_server_name"] => known(stream.map(|_| {
            let name = tls.and_then(|t| t.server_name.as_deref());
            name.map(string).unwrap_or_default()
        })),
        ["tls_version"] => known(tls.map(|t| string(t.version))),
        ["subject_local_certificate"] => known(tls.map(|t| string(&t.local_certificate.subject))),
        ["dns_san_local_certificate"] => known(
            tls.and_then(|t| t.local_certificate.dns_san.as_deref())
                .map(string),
        ),
        ["uri_san_local_certificate"] => known(
            tls.and_then(|t| t.local_certificate.uri_san.as_deref())
                .map(string),
        ),
        // No client certificate: an empty subject, and none of the rest.
        ["subject_peer_certificate"] => known(tls.map(|_| Vec::new())),
        [
            "dns_san_peer_certificate"
            | "uri_san_peer_certificate"
            | "sha256_peer_certificate_digest"
            | "peer_certificate",
        ] => Lookup::Unavailable,
        ["termination_details" | "transport_failure_reason"] => Lookup::Unavailable,
        _ => Lookup::Unknown,
    }
}

/// `upstream.*`: the connection that brought the response, once it has, and the upstream the
/// route dispatches to.
fn upstream(stream: Option<&StreamInfo>, rest: &[&str]) -> Lookup {
    let addresses = stream.and_then(|s| s.with_origin(|o| o.upstream).flatten());
    match rest {
        ["num_endpoints"] => {
            let cluster = stream.and_then(|s| s.route.cluster.as_ref());
            known(cluster.map(|c| uint(c.endpoints)))
        }
        // The host's `envoy.config.core.v3.Locality`: the spec gives endpoints none, so it is
        // the empty message, and its fields (`region`, `zone`, `sub_zone`) empty strings.
        ["locality", field @ ..] => match field {
            [] | ["region" | "zone" | "sub_zone"] => known(addresses.map(|_| Vec::new())),
            _ => Lookup::Unavailable,
        },
        // hyper-util's connection pool does not say when a connection became ready for the
        // request; Envoy answers nothing when it has no such time either.
        ["cx_pool_ready_duration"] => Lookup::Unavailable,
        [
            field @ ("tls_version"
            | "subject_peer_certificate"
            | "dns_san_peer_certificate"
            | "uri_san_peer_certificate"
            | "sha256_peer_certificate_digest"
            | "peer_certificate"
            | "subject_local_certificate"
            | "dns_san_local_certificate"
            | "uri_san_local_certificate"),
        ] => {
            let tls = stream.and_then(|s| s.with_origin(|o| o.upstream_tls.clone()).flatten());
            upstream_tls(tls.as_deref(), field)
        }
        ["address"] => known(addresses.map(|(peer, _)| address_text(peer))),
        ["port"] => known(addresses.map(|(peer, _)| int(i64::from(peer.port())))),
        ["local_address"] => known(addresses.map(|(_, local)| address_text(local))),
        ["transport_failure_reason"] => known(addresses.map(|_| Vec::new())),
        ["request_attempt_count"] => {
            known(stream.map(|s| uint(u64::from(s.with_origin(|o| o.attempted) == Some(true)))))
        }
        _ => Lookup::Unknown,
    }
}

/// `upstream.tls_version` and `upstream.*_certificate` over a TLS connection (`tls`): the
/// upstream's certificate is the peer's; the gateway presents none (an empty local subject).
fn upstream_tls(tls: Option<&UpstreamTls>, field: &str) -> Lookup {
    let Some(tls) = tls else {
        return Lookup::Unavailable;
    };
    let answer = match field {
        "tls_version" => Some(string(tls.version)),
        "subject_peer_certificate" => Some(string(&tls.peer.subject)),
        "dns_san_peer_certificate" => tls.peer.dns_san.as_deref().map(string),
        "uri_san_peer_certificate" => tls.peer.uri_san.as_deref().map(string),
        "sha256_peer_certificate_digest" => non_empty(&tls.peer_digest).map(string),
        "subject_local_certificate" => Some(Vec::new()),
        // `peer_certificate` (the PEM, URL-encoded) is not kept; the local names need a
        // client certificate.
        _ => None,
    };
    known(answer)
}

/// Envoy's Wasm tokens: the plugin's identity and `connection_id`.
fn wasm_token(view: &PropertyView<'_>, segments: &[&str]) -> Lookup {
    match segments {
        ["plugin_name"] => Lookup::Found(string(&view.plugin.name)),
        ["plugin_root_id"] => Lookup::Found(string(&view.plugin.root_id)),
        ["plugin_vm_id"] => Lookup::Found(string(&view.plugin.vm_id)),
        ["connection_id"] => known(view.stream.map(|s| uint(s.connection_id))),
        _ => Lookup::Unknown,
    }
}

/// The value of pseudo-header `name` in the live map, else `fallback`.
fn live_or<'a>(
    headers: Option<&'a Pairs>,
    name: &str,
    fallback: Option<&'a str>,
) -> Option<&'a str> {
    headers
        .and_then(|h| first_value(h, name))
        .and_then(|v| std::str::from_utf8(v).ok())
        .or(fallback)
}

/// The first value of header `name` (case-insensitive).
fn first_value<'a>(headers: &'a Pairs, name: &str) -> Option<&'a [u8]> {
    headers.get(name.as_bytes())
}

/// Every value of header `name` (case-insensitive) joined with `,`, as Envoy answers
/// `request.headers.<name>`; None when the header is absent.
fn joined_values(headers: &Pairs, name: &str) -> Option<Vec<u8>> {
    let mut values = headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, value)| value);
    let mut joined = values.next()?.to_vec();
    for value in values {
        joined.push(b',');
        joined.extend_from_slice(value);
    }
    Some(joined)
}

/// Envoy's `HeaderMap::byteSize()`: the bytes of every key and value.
fn headers_bytes(headers: &Pairs) -> u64 {
    headers.byte_size() as u64
}

/// The path without its query string.
fn url_path(path: &str) -> &str {
    path.split_once('?').map_or(path, |(before, _)| before)
}

/// The query string without its `?`; empty when there is none.
fn query(path: &str) -> &str {
    path.split_once('?').map_or("", |(_, after)| after)
}

/// None for an empty string: the host has no such value.
fn non_empty(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

/// A string attribute: its bytes, no terminator.
fn string(value: &str) -> Vec<u8> {
    value.as_bytes().to_vec()
}

/// An int attribute: i64, little-endian.
fn int(value: i64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// An int attribute from a byte count (saturating; no count comes near i64::MAX).
fn int_from_u64(value: u64) -> Vec<u8> {
    int(i64::try_from(value).unwrap_or(i64::MAX))
}

/// A uint attribute: u64, little-endian.
fn uint(value: u64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// A bool attribute: one byte, 0 or 1.
fn boolean(value: bool) -> Vec<u8> {
    vec![u8::from(value)]
}

/// A duration attribute: i64 nanoseconds, little-endian (saturating).
fn duration(value: Duration) -> Vec<u8> {
    int(i64::try_from(value.as_nanos()).unwrap_or(i64::MAX))
}

/// A timestamp attribute: i64 nanoseconds since the Unix epoch, little-endian (saturating).
fn timestamp(time: SystemTime) -> Vec<u8> {
    let nanos = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    };
    int(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn plugin() -> PluginIdentity {
        PluginIdentity {
            name: String::from("rate-limit"),
            root_id: String::from("root"),
            vm_id: String::from("rate-limit@sha256:ab"),
        }
    }

    fn stream() -> StreamInfo {
        StreamInfo {
            method: Some(http::Method::GET),
            path: Some(http::uri::PathAndQuery::from_static("/pets/1?a=1&b=2")),
            scheme: "https",
            host: Some(http::HeaderValue::from_static("api.example.com")),
            protocol: "HTTP/1.1",
            request_id: Some(http::HeaderValue::from_static("req-7")),
            start: Some(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789)),
            source: Some("10.0.0.5:54321".parse().unwrap()),
            destination: Some("[::1]:8443".parse().unwrap()),
            tls: Some(TlsSession {
                version: "TLSv1.3",
                server_name: Some(Arc::from("api.example.com")),
                local_certificate: Arc::new(CertificateNames {
                    subject: String::from("CN=api.example.com,O=Example"),
                    dns_san: Some(String::from("api.example.com")),
                    uri_san: None,
                }),
            }),
            connection_id: 42,
            route: Arc::new(Route {
                name: String::from("getPet"),
                cluster: Some(Cluster {
                    name: String::from("pets-backend"),
                    endpoints: 3,
                }),
                hosts: vec![Some(String::from("*.example.com")), None],
            }),
            dispatched: OnceLock::new(),
            body_sizes: BodySizes::default(),
            filter_state: FilterState::default(),
            final_heads: OnceLock::new(),
            origin: Mutex::new(None),
        }
    }

    fn request_headers() -> Pairs {
        Pairs::from([
            (":method", "GET"),
            (":path", "/pets/1?a=1&b=2"),
            (":authority", "api.example.com"),
            (":scheme", "https"),
            ("x-a", "1"),
            ("x-a", "2"),
            ("referer", "https://ref.example/"),
            ("user-agent", "curl/8"),
        ])
    }

    /// A view over the given parts; `stream` None is a root context.
    fn view<'a>(
        plugin: &'a PluginIdentity,
        stream: Option<&'a StreamInfo>,
        request_headers: Option<&'a Pairs>,
        filter_state: &'a FilterValues,
    ) -> PropertyView<'a> {
        PropertyView {
            plugin,
            stream,
            request_headers,
            response_headers: None,
            response_trailers: None,
            filter_state,
        }
    }

    fn as_i64(bytes: Vec<u8>) -> i64 {
        i64::from_le_bytes(bytes.try_into().unwrap())
    }

    fn as_u64(bytes: Vec<u8>) -> u64 {
        u64::from_le_bytes(bytes.try_into().unwrap())
    }

    #[test]
    fn split_path_splits_on_nul_and_tolerates_a_trailing_one() {
        let split = |text| split_path(text).to_vec();
        assert_eq!(
            split("request\0headers\0x-id"),
            ["request", "headers", "x-id"]
        );
        assert_eq!(
            split("request\0headers\0x-id\0"),
            ["request", "headers", "x-id"]
        );
        assert_eq!(split("a\0b\0c\0d\0e\0f"), ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(split("plugin_name"), ["plugin_name"]);
        assert!(split("").is_empty());
        assert!(split("\0").is_empty());
        assert_eq!(path_text(b"source\0address"), "source\0address");
        assert_eq!(path_text(b"bad\xff"), "bad\u{fffd}");
    }

    #[test]
    fn filter_state_key_joins_the_segments_with_dots() {
        for path in [
            "my\0key",
            "my\0key\0",
            "single",
            "",
            "\0",
            "a\0\0b",
            "a.b\0c",
        ] {
            assert_eq!(
                filter_state_key(path),
                split_path(path).join("."),
                "{path:?}"
            );
        }
        assert_eq!(filter_state_key("my\0key"), "my.key");
    }

    #[test]
    fn request_attributes_are_strings() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let v = view(&plugin, Some(&stream), None, &state);
        let get_str = |p: &[&str]| String::from_utf8(get(&v, p).unwrap()).unwrap();
        assert_eq!(get_str(&["request", "path"]), "/pets/1?a=1&b=2");
        assert_eq!(get_str(&["request", "url_path"]), "/pets/1");
        assert_eq!(get_str(&["request", "query"]), "a=1&b=2");
        assert_eq!(get_str(&["request", "host"]), "api.example.com");
        assert_eq!(get_str(&["request", "scheme"]), "https");
        assert_eq!(get_str(&["request", "method"]), "GET");
        assert_eq!(get_str(&["request", "id"]), "req-7");
        assert_eq!(get_str(&["request", "protocol"]), "HTTP/1.1");
    }

    #[test]
    fn request_query_is_empty_without_a_query_string() {
        let (plugin, state) = (plugin(), FilterValues::default());
        let stream = StreamInfo {
            path: Some(http::uri::PathAndQuery::from_static("/pets")),
            ..stream()
        };
        let v = view(&plugin, Some(&stream), None, &state);
        assert_eq!(get(&v, &["request", "query"]), Ok(Vec::new()));
        assert_eq!(get(&v, &["request", "url_path"]), Ok(b"/pets".to_vec()));
    }

    #[test]
    fn request_pseudo_attributes_follow_the_live_headers() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let mut headers = request_headers();
        headers.set_value(1, b"/v2/pets/1?c=3");
        let v = view(&plugin, Some(&stream), Some(&headers), &state);
        assert_eq!(
            get(&v, &["request", "path"]),
            Ok(b"/v2/pets/1?c=3".to_vec())
        );
        assert_eq!(
            get(&v, &["request", "url_path"]),
            Ok(b"/v2/pets/1".to_vec())
        );
        assert_eq!(get(&v, &["request", "query"]), Ok(b"c=3".to_vec()));
    }

    #[test]
    fn request_time_and_size_are_encoded_as_int64() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        stream.body_sizes.add(Direction::Request, 5);
        stream.body_sizes.add(Direction::Request, 7);
        let headers = request_headers();
        let v = view(&plugin, Some(&stream), Some(&headers), &state);
        let time = as_i64(get(&v, &["request", "time"]).unwrap());
        assert_eq!(time, 1_700_000_000_123_456_789);
        assert_eq!(as_i64(get(&v, &["request", "size"]).unwrap()), 12);
        let total = as_i64(get(&v, &["request", "total_size"]).unwrap());
        assert_eq!(total, 12 + headers_bytes(&headers) as i64);
    }

    #[test]
    fn request_size_is_the_declared_length_and_duration_comes_at_the_end() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        stream.body_sizes.add(Direction::Request, 3);
        let mut headers = request_headers();
        let v = view(&plugin, Some(&stream), Some(&headers), &state);
        let bytes = as_i64(get(&v, &["request", "headers_bytes"]).unwrap());
        assert_eq!(bytes, headers_bytes(&headers) as i64);
        assert_eq!(get(&v, &["request", "duration"]), Err(Status::NotFound));

        headers.push(b"content-length", b"40");
        let v = view(&plugin, Some(&stream), Some(&headers), &state);
        assert_eq!(as_i64(get(&v, &["request", "size"]).unwrap()), 40);
        headers.replace(b"content-length", b"forty");
        let v = view(&plugin, Some(&stream), Some(&headers), &state);
        assert_eq!(get(&v, &["request", "size"]), Err(Status::NotFound));

        let ended = StreamInfo {
            start: Some(SystemTime::now() - Duration::from_secs(2)),
            final_heads: OnceLock::from([Pairs::new(), Pairs::new()]),
            ..self::stream()
        };
        let v = view(&plugin, Some(&ended), None, &state);
        let duration = as_i64(get(&v, &["request", "duration"]).unwrap());
        assert!(
            (2_000_000_000..60_000_000_000).contains(&duration),
            "{duration}"
        );
        assert_eq!(as_i64(get(&v, &["request", "headers_bytes"]).unwrap()), 0);
    }

    #[test]
    fn request_headers_map_and_joined_values() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let headers = request_headers();
        let v = view(&plugin, Some(&stream), Some(&headers), &state);
        assert_eq!(get(&v, &["request", "headers"]), Ok(serialize(&headers)));
        assert_eq!(get(&v, &["request", "headers", "x-a"]), Ok(b"1,2".to_vec()));
        assert_eq!(get(&v, &["request", "headers", "X-A"]), Ok(b"1,2".to_vec()));
        assert_eq!(
            get(&v, &["request", "headers", ":method"]),
            Ok(b"GET".to_vec())
        );
        assert_eq!(
            get(&v, &["request", "headers", "x-missing"]),
            Err(Status::NotFound)
        );
        assert_eq!(
            get(&v, &["request", "referer"]),
            Ok(b"https://ref.example/".to_vec())
        );
        assert_eq!(get(&v, &["request", "useragent"]), Ok(b"curl/8".to_vec()));
    }

    #[test]
    fn request_headers_are_not_found_when_not_available() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let v = view(&plugin, Some(&stream), None, &state);
        assert_eq!(get(&v, &["request", "headers"]), Err(Status::NotFound));
        assert_eq!(
            get(&v, &["request", "headers", "x-a"]),
            Err(Status::NotFound)
        );
        assert_eq!(get(&v, &["request", "useragent"]), Err(Status::NotFound));
    }

    #[test]
    fn response_attributes() {
        let (plugin, state) = (plugin(), FilterValues::default());
        let stream = stream();
        stream.body_sizes.add(Direction::Response, 99);
        let headers: Pairs = Pairs::from([
            (":status", "201"),
            ("set-cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ]);
        let trailers: Pairs = Pairs::from([("grpc-status", "0")]);
        let v = PropertyView {
            response_headers: Some(&headers),
            response_trailers: Some(&trailers),
            ..view(&plugin, Some(&stream), None, &state)
        };
        assert_eq!(as_i64(get(&v, &["response", "code"]).unwrap()), 201);
        assert_eq!(as_i64(get(&v, &["response", "size"]).unwrap()), 99);
        assert_eq!(get(&v, &["response", "headers"]), Ok(serialize(&headers)));
        assert_eq!(
            get(&v, &["response", "headers", "set-cookie"]),
            Ok(b"a=1,b=2".to_vec())
        );
        assert_eq!(get(&v, &["response", "trailers"]), Ok(serialize(&trailers)));
        assert_eq!(
            get(&v, &["response", "trailers", "grpc-status"]),
            Ok(b"0".to_vec())
        );
    }

    #[test]
    fn response_origin_flags_and_grpc_status() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let status = |code: &str, grpc: Option<(&str, bool)>| {
            let mut headers = Pairs::from([(":status", code)]);
            let mut trailers = Pairs::new();
            match grpc {
                Some((value, true)) => trailers.push(b"grpc-status", value.as_bytes()),
                Some((value, false)) => headers.push(b"grpc-status", value.as_bytes()),
                None => {}
            }
            let v = PropertyView {
                response_headers: Some(&headers),
                response_trailers: Some(&trailers),
                ..view(&plugin, Some(&stream), None, &state)
            };
            as_i64(get(&v, &["response", "grpc_status"]).unwrap())
        };
        assert_eq!(status("200", Some(("5", true))), 5, "the trailers' first");
        assert_eq!(
            status("200", Some(("7", false))),
            7,
            "a trailers-only answer"
        );
        assert_eq!(status("200", Some(("17", true))), -1, "not a known code");
        assert_eq!(status("200", Some(("x", false))), -1);
        for (code, grpc) in [
            ("200", 2),
            ("401", 16),
            ("404", 12),
            ("503", 14),
            ("400", 13),
        ] {
            assert_eq!(status(code, None), grpc, "HTTP {code}");
        }

        let headers: Pairs = Pairs::from([(":status", "504")]);
        let trailers: Pairs = Pairs::from([("x-t", "1")]);
        let v = PropertyView {
            response_headers: Some(&headers),
            response_trailers: Some(&trailers),
            ..view(&plugin, Some(&stream), None, &state)
        };
        assert_eq!(
            get(&v, &["response", "code_details"]),
            Err(Status::NotFound)
        );
        assert_eq!(as_i64(get(&v, &["response", "flags"]).unwrap()), 0);
        assert_eq!(
            as_u64(get(&v, &["upstream", "request_attempt_count"]).unwrap()),
            0
        );
        let total = as_i64(get(&v, &["response", "total_size"]).unwrap());
        assert_eq!(
            total,
            (headers_bytes(&headers) + headers_bytes(&trailers)) as i64
        );
        assert_eq!(
            as_i64(get(&v, &["response", "headers_bytes"]).unwrap()),
            headers_bytes(&headers) as i64
        );

        stream.set_origin(ResponseOrigin::upstream_failed(
            "upstream_response_timeout",
            flags::UPSTREAM_REQUEST_TIMEOUT,
        ));
        assert_eq!(
            get(&v, &["response", "code_details"]),
            Ok(b"upstream_response_timeout".to_vec())
        );
        assert_eq!(as_i64(get(&v, &["response", "flags"]).unwrap()), 0x4);
        assert_eq!(
            as_u64(get(&v, &["upstream", "request_attempt_count"]).unwrap()),
            1
        );
        assert_eq!(get(&v, &["upstream", "address"]), Err(Status::NotFound));
        // A local response replaces it.
        stream.set_origin(ResponseOrigin::local(String::from("denied_by_policy")));
        assert_eq!(
            get(&v, &["response", "code_details"]),
            Ok(b"denied_by_policy".to_vec())
        );
        assert_eq!(as_i64(get(&v, &["response", "flags"]).unwrap()), 0);
    }

    #[test]
    fn upstream_attributes_come_with_an_upstream_response() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let peer: SocketAddr = "10.1.2.3:8080".parse().unwrap();
        let local: SocketAddr = "10.1.0.1:40404".parse().unwrap();
        stream.set_origin(ResponseOrigin::via_upstream(Some((peer, local))));
        let v = view(&plugin, Some(&stream), None, &state);
        assert_eq!(
            get(&v, &["upstream", "address"]),
            Ok(b"10.1.2.3:8080".to_vec())
        );
        assert_eq!(as_i64(get(&v, &["upstream", "port"]).unwrap()), 8080);
        assert_eq!(
            get(&v, &["upstream", "local_address"]),
            Ok(b"10.1.0.1:40404".to_vec())
        );
        assert_eq!(
            as_u64(get(&v, &["upstream", "request_attempt_count"]).unwrap()),
            1
        );
        assert_eq!(
            get(&v, &["response", "code_details"]),
            Ok(b"via_upstream".to_vec())
        );
        assert_eq!(get(&v, &["xds", "upstream_host_metadata"]), Ok(Vec::new()));
        assert_eq!(
            get(&v, &["xds", "upstream_host_locality_metadata"]),
            Ok(Vec::new())
        );
        // The endpoint's locality: the empty message, its fields empty.
        assert_eq!(get(&v, &["upstream", "locality"]), Ok(Vec::new()));
        assert_eq!(get(&v, &["upstream", "locality", "zone"]), Ok(Vec::new()));
        assert_eq!(
            get(&v, &["upstream", "locality", "nope"]),
            Err(Status::NotFound)
        );
        assert_eq!(
            get(&v, &["upstream", "cx_pool_ready_duration"]),
            Err(Status::NotFound)
        );
    }

    #[test]
    fn upstream_tls_attributes_come_with_a_tls_upstream() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let addresses = (
            "10.1.2.3:8443".parse().unwrap(),
            "10.1.0.1:1".parse().unwrap(),
        );
        stream.set_origin(ResponseOrigin::via_upstream(Some(addresses)));
        let v = view(&plugin, Some(&stream), None, &state);
        // Plain HTTP: none of them.
        for field in [
            "tls_version",
            "subject_peer_certificate",
            "subject_local_certificate",
        ] {
            assert_eq!(
                get(&v, &["upstream", field]),
                Err(Status::NotFound),
                "{field}"
            );
        }
        stream.set_origin(ResponseOrigin {
            upstream_tls: Some(Arc::new(UpstreamTls {
                version: "TLSv1.2",
                peer: CertificateNames {
                    subject: String::from("CN=backend"),
                    dns_san: None,
                    uri_san: Some(String::from("spiffe://cluster/backend")),
                },
                peer_digest: String::from("ab01"),
            })),
            ..ResponseOrigin::via_upstream(Some(addresses))
        });
        let v = view(&plugin, Some(&stream), None, &state);
        for (field, value) in [
            ("tls_version", &b"TLSv1.2"[..]),
            ("subject_peer_certificate", b"CN=backend"),
            ("uri_san_peer_certificate", b"spiffe://cluster/backend"),
            ("sha256_peer_certificate_digest", b"ab01"),
            ("subject_local_certificate", b""),
        ] {
            assert_eq!(get(&v, &["upstream", field]), Ok(value.to_vec()), "{field}");
        }
        for field in [
            "dns_san_peer_certificate",
            "peer_certificate",
            "dns_san_local_certificate",
        ] {
            assert_eq!(
                get(&v, &["upstream", field]),
                Err(Status::NotFound),
                "{field}"
            );
        }
    }

    #[test]
    fn certificate_names_are_its_subject_and_first_alternative_names() {
        let mut params =
            rcgen::CertificateParams::new(vec![String::from("a.test"), String::from("b.test")])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "a.test");
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://example/gw").unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let names = CertificateNames::of(certificate.der());
        // RFC 2253: the last RDN first (rcgen writes the common name first), a comma in a
        // value escaped.
        assert_eq!(names.subject, "O=Example\\, Inc,CN=a.test");
        assert_eq!(names.dns_san.as_deref(), Some("a.test"));
        assert_eq!(names.uri_san.as_deref(), Some("spiffe://example/gw"));
        let unreadable = CertificateNames::of(b"not a certificate");
        assert_eq!(unreadable.subject, "");
        assert_eq!(unreadable.dns_san, None);
    }

    #[test]
    fn the_upstream_endpoints_and_locality_need_a_cluster_and_an_upstream_response() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let v = view(&plugin, Some(&stream), None, &state);
        // The cluster is known from the route on; the endpoint only once it answered.
        assert_eq!(as_u64(get(&v, &["upstream", "num_endpoints"]).unwrap()), 3);
        assert_eq!(get(&v, &["upstream", "locality"]), Err(Status::NotFound));
        assert_eq!(
            get(&v, &["xds", "upstream_host_locality_metadata"]),
            Err(Status::NotFound)
        );
        let mock = StreamInfo {
            route: Arc::default(),
            ..self::stream()
        };
        let v = view(&plugin, Some(&mock), None, &state);
        assert_eq!(
            get(&v, &["upstream", "num_endpoints"]),
            Err(Status::NotFound)
        );
    }

    #[test]
    fn backend_latency_is_known_once_an_upstream_exchange_is_over() {
        let (plugin, state) = (plugin(), FilterValues::default());
        let upstream = ResponseOrigin::via_upstream(Some((
            "10.1.2.3:8080".parse().unwrap(),
            "10.1.0.1:40404".parse().unwrap(),
        )));
        let latency = |stream: &StreamInfo| {
            let v = view(&plugin, Some(stream), None, &state);
            get(&v, &["response", "backend_latency"]).map(as_i64)
        };
        let sent = Instant::now() - Duration::from_millis(1500);
        let exchange = StreamInfo {
            dispatched: OnceLock::from(sent),
            ..self::stream()
        };
        exchange.set_origin(upstream.clone());
        // Still in the phases: the response's last byte has not come.
        assert_eq!(latency(&exchange), Err(Status::NotFound));
        let over = StreamInfo {
            dispatched: OnceLock::from(sent),
            final_heads: OnceLock::from([Pairs::new(), Pairs::new()]),
            ..self::stream()
        };
        // Over, but the gateway answered (a mock, a failed upstream): no backend.
        over.set_origin(ResponseOrigin::local("direct_response"));
        assert_eq!(latency(&over), Err(Status::NotFound));
        over.set_origin(upstream);
        let nanos = latency(&over).unwrap();
        assert!((1_500_000_000..60_000_000_000).contains(&nanos), "{nanos}");
    }

    #[test]
    fn the_virtual_host_is_the_servers_host_pattern_the_request_matched() {
        let (plugin, state) = (plugin(), FilterValues::default());
        let name = |host: Option<&'static str>, hosts: Vec<Option<String>>| {
            let stream = StreamInfo {
                host: host.map(http::HeaderValue::from_static),
                route: Arc::new(Route {
                    hosts,
                    ..Route::default()
                }),
                ..self::stream()
            };
            let v = view(&plugin, Some(&stream), None, &state);
            get(&v, &["xds", "virtual_host_name"]).map(|name| String::from_utf8(name).unwrap())
        };
        let pattern = |p: &str| Some(String::from(p));
        let both = || vec![pattern("*.example.com"), None];
        assert_eq!(
            name(Some("API.example.com:8443"), both()).unwrap(),
            "*.example.com"
        );
        assert_eq!(name(Some("other.test"), both()).unwrap(), "*");
        assert_eq!(name(None, both()).unwrap(), "*");
        let only = vec![pattern("a.test"), pattern("b.test")];
        assert_eq!(name(Some("b.test"), only.clone()).unwrap(), "b.test");
        assert_eq!(name(Some("c.test"), only), Err(Status::NotFound));
        let (stream, state) = (stream(), FilterValues::default());
        let v = view(&plugin, Some(&stream), None, &state);
        assert_eq!(get(&v, &["xds", "virtual_host_metadata"]), Ok(Vec::new()));
        let v = view(&plugin, None, None, &state);
        assert_eq!(
            get(&v, &["xds", "virtual_host_name"]),
            Err(Status::NotFound)
        );
    }

    #[test]
    fn node_metadata_listener_and_filter_state_as_envoy_gives_them() {
        let (plugin, stream) = (plugin(), stream());
        let mut state = FilterValues::default();
        assert!(state.insert(String::from("my.key"), b"v".to_vec()));
        let v = view(&plugin, Some(&stream), None, &state);
        let node = Node::new(String::from("gw-1"));
        // Node { id: "gw-1", user_agent_name: "barbacane", user_agent_version } on the wire.
        let version = Node::USER_AGENT_VERSION;
        let mut expected = vec![0x0a, 4];
        expected.extend_from_slice(b"gw-1");
        expected.extend_from_slice(&[0x32, 9]);
        expected.extend_from_slice(b"barbacane");
        expected.extend_from_slice(&[0x3a, version.len() as u8]);
        expected.extend_from_slice(version.as_bytes());
        assert!(matches!(node.lookup(&[]), Lookup::Found(bytes) if bytes == expected));
        let id = Node::get().id.as_bytes().to_vec();
        for path in [&["xds", "node", "id"][..], &["node", "id"]] {
            assert_eq!(get(&v, path), Ok(id.clone()), "{path:?}");
        }
        assert_eq!(get(&v, &["node", "cluster"]), Ok(Vec::new()));
        assert_eq!(
            get(&v, &["node", "user_agent_name"]),
            Ok(b"barbacane".to_vec())
        );
        let empty_map = serialize(&Pairs::new());
        assert_eq!(get(&v, &["node", "metadata"]), Ok(empty_map.clone()));
        assert_eq!(
            get(&v, &["node", "metadata", "ISTIO_VERSION"]),
            Err(Status::NotFound)
        );
        for path in [
            &["metadata"][..],
            &["xds", "route_metadata"],
            &["route_metadata"],
            &["cluster_metadata"],
            &["xds", "listener_metadata"],
        ] {
            assert_eq!(get(&v, path), Ok(Vec::new()), "{path:?}");
        }
        assert_eq!(get(&v, &["metadata", "filter_metadata"]), Ok(empty_map));
        for path in [&["listener_direction"][..], &["xds", "listener_direction"]] {
            assert_eq!(as_i64(get(&v, path).unwrap()), 0, "{path:?}");
        }
        assert_eq!(get(&v, &["xds", "filter_chain_name"]), Ok(Vec::new()));
        assert_eq!(
            get(&v, &["xds", "upstream_host_metadata"]),
            Err(Status::NotFound)
        );
        assert_eq!(get(&v, &["filter_state", "wasm.my.key"]), Ok(b"v".to_vec()));
        // Not the (downstream) filter state: upstream filters' own, which nothing writes.
        assert_eq!(
            get(&v, &["upstream_filter_state", "wasm.my.key"]),
            Err(Status::NotFound)
        );
    }

    #[test]
    fn response_code_is_not_found_before_the_response() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let v = view(&plugin, Some(&stream), None, &state);
        assert_eq!(get(&v, &["response", "code"]), Err(Status::NotFound));
        assert_eq!(get(&v, &["response", "headers"]), Err(Status::NotFound));
        assert_eq!(get(&v, &["response", "trailers"]), Err(Status::NotFound));
    }

    #[test]
    fn response_code_is_the_live_status() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let headers: Pairs = Pairs::from([(":status", "404")]);
        let v = PropertyView {
            response_headers: Some(&headers),
            ..view(&plugin, Some(&stream), None, &state)
        };
        assert_eq!(as_i64(get(&v, &["response", "code"]).unwrap()), 404);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0:0",
            "1.2.3.4:5",
            "10.0.100.9:80",
            "127.0.0.1:54321",
            "255.255.255.255:65535",
            "[::1]:8443",
            "[2001:db8::1]:443",
        ] {
            let address: SocketAddr = text.parse().unwrap();
            assert_eq!(address_text(address), text.as_bytes(), "{text}");
        }
    }

    #[test]
    fn source_and_destination() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let v = view(&plugin, Some(&stream), None, &state);
        assert_eq!(
            get(&v, &["source", "address"]),
            Ok(b"10.0.0.5:54321".to_vec())
        );
        assert_eq!(as_i64(get(&v, &["source", "port"]).unwrap()), 54321);
        assert_eq!(
            get(&v, &["destination", "address"]),
            Ok(b"[::1]:8443".to_vec())
        );
        assert_eq!(as_i64(get(&v, &["destination", "port"]).unwrap()), 8443);

        let unknown_peer = StreamInfo {
            source: None,
            ..self::stream()
        };
        let v = view(&plugin, Some(&unknown_peer), None, &state);
        assert_eq!(get(&v, &["source", "address"]), Err(Status::NotFound));
        assert_eq!(get(&v, &["source", "port"]), Err(Status::NotFound));
    }

    #[test]
    fn connection_attributes() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let v = view(&plugin, Some(&stream), None, &state);
        assert_eq!(as_u64(get(&v, &["connection", "id"]).unwrap()), 42);
        assert_eq!(as_u64(get(&v, &["connection_id"]).unwrap()), 42);
        assert_eq!(get(&v, &["connection", "mtls"]), Ok(vec![0]));
        assert_eq!(
            get(&v, &["connection", "tls_version"]),
            Ok(b"TLSv1.3".to_vec())
        );

        assert_eq!(
            get(&v, &["connection", "requested_server_name"]),
            Ok(b"api.example.com".to_vec())
        );
        assert_eq!(
            get(&v, &["connection", "subject_peer_certificate"]),
            Ok(Vec::new())
        );
        assert_eq!(
            get(&v, &["connection", "subject_local_certificate"]),
            Ok(b"CN=api.example.com,O=Example".to_vec())
        );
        assert_eq!(
            get(&v, &["connection", "dns_san_local_certificate"]),
            Ok(b"api.example.com".to_vec())
        );
        for absent in [
            "uri_san_local_certificate",
            "dns_san_peer_certificate",
            "uri_san_peer_certificate",
            "sha256_peer_certificate_digest",
            "peer_certificate",
            "termination_details",
        ] {
            assert_eq!(get(&v, &["connection", absent]), Err(Status::NotFound));
        }

        let older = StreamInfo {
            tls: Some(TlsSession {
                version: "TLSv1.2",
                server_name: None,
                local_certificate: Arc::default(),
            }),
            ..self::stream()
        };
        let v = view(&plugin, Some(&older), None, &state);
        assert_eq!(
            get(&v, &["connection", "tls_version"]),
            Ok(b"TLSv1.2".to_vec())
        );
        assert_eq!(
            get(&v, &["connection", "requested_server_name"]),
            Ok(Vec::new())
        );

        let plain = StreamInfo {
            tls: None,
            ..self::stream()
        };
        let v = view(&plugin, Some(&plain), None, &state);
        assert_eq!(
            get(&v, &["connection", "tls_version"]),
            Err(Status::NotFound)
        );
        for absent in ["subject_peer_certificate", "subject_local_certificate"] {
            assert_eq!(get(&v, &["connection", absent]), Err(Status::NotFound));
        }
        assert_eq!(
            get(&v, &["connection", "requested_server_name"]),
            Ok(Vec::new()),
            "Envoy answers an empty name without TLS too"
        );
    }

    #[test]
    fn plugin_tokens_answer_without_a_stream() {
        let (plugin, state) = (plugin(), FilterValues::default());
        let v = view(&plugin, None, None, &state);
        assert_eq!(get(&v, &["plugin_name"]), Ok(b"rate-limit".to_vec()));
        assert_eq!(get(&v, &["plugin_root_id"]), Ok(b"root".to_vec()));
        assert_eq!(
            get(&v, &["plugin_vm_id"]),
            Ok(b"rate-limit@sha256:ab".to_vec())
        );
    }

    #[test]
    fn stream_properties_are_not_found_without_a_stream() {
        let (plugin, state) = (plugin(), FilterValues::default());
        let v = view(&plugin, None, None, &state);
        for p in [
            &["request", "path"][..],
            &["request", "size"],
            &["response", "size"],
            &["source", "address"],
            &["connection", "id"],
            &["connection_id"],
            &["xds", "route_name"],
            &["cluster_name"],
        ] {
            assert_eq!(get(&v, p), Err(Status::NotFound), "{p:?}");
        }
    }

    #[test]
    fn xds_names_and_legacy_aliases() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let v = view(&plugin, Some(&stream), None, &state);
        assert_eq!(
            get(&v, &["xds", "cluster_name"]),
            Ok(b"pets-backend".to_vec())
        );
        assert_eq!(get(&v, &["cluster_name"]), Ok(b"pets-backend".to_vec()));
        assert_eq!(get(&v, &["xds", "route_name"]), Ok(b"getPet".to_vec()));
        assert_eq!(get(&v, &["route_name"]), Ok(b"getPet".to_vec()));
        assert_eq!(get(&v, &["request_protocol"]), Ok(b"HTTP/1.1".to_vec()));

        let undispatched = StreamInfo {
            route: Arc::default(),
            ..self::stream()
        };
        let v = view(&plugin, Some(&undispatched), None, &state);
        assert_eq!(get(&v, &["xds", "cluster_name"]), Err(Status::NotFound));
        assert_eq!(get(&v, &["route_name"]), Err(Status::NotFound));
    }

    #[test]
    fn unknown_paths_are_not_found() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let v = view(&plugin, Some(&stream), None, &state);
        for p in [
            &[][..],
            &["nope"],
            &["request"],
            &["request", "nope"],
            &["request", "path", "extra"],
            &["xds", "nope"],
            &["node", "nope"],
            &["metadata", "filter_metadata", "envoy.lb"],
            &["filter_state", "my.key"],
            &["upstream", "address"],
        ] {
            assert_eq!(get(&v, p), Err(Status::NotFound), "{p:?}");
        }
    }

    #[test]
    fn filter_state_holds_at_most_its_limit() {
        let mut state = FilterValues::default();
        let half = vec![0u8; FILTER_STATE_LIMIT_BYTES / 2];
        assert!(state.insert(String::from("a"), half.clone()));
        assert!(
            !state.insert(String::from("b"), half.clone()),
            "with the names, over it"
        );
        assert!(state.get("b").is_none());
        assert!(
            state.insert(String::from("a"), b"small".to_vec()),
            "the old value is gone"
        );
        assert!(state.insert(String::from("b"), half));
    }

    #[test]
    fn filter_state_is_found_after_the_attributes() {
        let (plugin, stream) = (plugin(), stream());
        let mut state = FilterValues::default();
        state.insert(String::from("my.key"), b"v1".to_vec());
        state.insert(String::from("single"), b"v2".to_vec());
        // A stored value under an attribute's name does not shadow the attribute.
        state.insert(String::from("request.method"), b"SHADOW".to_vec());
        state.insert(String::from("plugin_name"), b"SHADOW".to_vec());
        let v = view(&plugin, Some(&stream), None, &state);
        assert_eq!(get(&v, &["my", "key"]), Ok(b"v1".to_vec()));
        assert_eq!(get(&v, &["my.key"]), Ok(b"v1".to_vec()));
        assert_eq!(get(&v, &["single"]), Ok(b"v2".to_vec()));
        assert_eq!(get(&v, &["request", "method"]), Ok(b"GET".to_vec()));
        assert_eq!(get(&v, &["plugin_name"]), Ok(b"rate-limit".to_vec()));
        assert_eq!(get(&v, &["other"]), Err(Status::NotFound));
    }

    #[test]
    fn filter_state_answers_in_a_root_context() {
        let plugin = plugin();
        let mut state = FilterValues::default();
        state.insert(String::from("counter"), b"3".to_vec());
        let v = view(&plugin, None, None, &state);
        assert_eq!(get(&v, &["counter"]), Ok(b"3".to_vec()));
    }

    #[test]
    fn a_dotted_single_segment_is_split_when_it_matches_nothing_as_is() {
        let (plugin, stream, state) = (plugin(), stream(), FilterValues::default());
        let headers: Pairs = Pairs::from([("x.dotted.name", "d")]);
        let v = view(&plugin, Some(&stream), Some(&headers), &state);
        assert_eq!(get(&v, &["xds.route_name"]), Ok(b"getPet".to_vec()));
        assert_eq!(as_i64(get(&v, &["source.port"]).unwrap()), 54321);
        assert_eq!(
            get(&v, &["request.headers.x.dotted.name"]),
            Ok(b"d".to_vec())
        );
        assert_eq!(get(&v, &["request.nope"]), Err(Status::NotFound));

        let mut state = FilterValues::default();
        state.insert(String::from("xds.route_name"), b"stored".to_vec());
        let v = view(&plugin, Some(&stream), None, &state);
        assert_eq!(get(&v, &["xds.route_name"]), Ok(b"stored".to_vec()));
    }

    #[test]
    fn timestamps_before_the_epoch_are_negative() {
        let before = UNIX_EPOCH - Duration::from_nanos(5);
        assert_eq!(as_i64(timestamp(before)), -5);
    }
}

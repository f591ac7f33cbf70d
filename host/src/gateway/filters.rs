//! An operation's Proxy-Wasm chain, run as Envoy runs its HTTP filters: request headers through
//! the filters in order, then the request body chunk by chunk (streaming on to the dispatcher
//! once its first chunk has passed), then the response headers and body through the filters in
//! reverse order; each stream ends with `on_done`, `on_log`, `on_delete` once both bodies are
//! over (or the client went away).
//!
//! A callback's result and the signals the plugin left during it decide what happens next: a
//! local response wins, then a reset, then continue (a 0 result, or a resume the plugin asked
//! for), else the stream pauses until a later callback (callout response, tick, queue) resumes,
//! answers or resets it, which is acted on at once, also while the body waits for its next
//! chunk. While paused, the plugin keeps the map (or body buffer) it paused on.
//! A body callback that pauses buffers: the next one sees the cumulative body; a buffer over
//! the body limit answers 413 (request) or 500 (response). A pause on headers holds the body
//! too (Envoy's default), unless the entry allows stop-iteration: the filter then gets the body
//! while the headers wait. This module runs the headers; `bodies` runs the bodies.
//!
//! Each distinct (plugin, configuration) is an *instance*; every worker has one replica per
//! instance (`replica`). A failing replica is replaced, and the plugin's failure policy decides
//! the request: `closed` → 500 problem, `open` → skip the plugin. A plugin suspended after a
//! deadline overrun (`suspension`) gets the same for new requests, without its VM being entered.

use super::replica::{Blueprint, Replica};
use super::suspension::Suspension;
use crate::model::{Api, Dispatch, FailurePolicy, Operation};
use crate::problem::{Kind, Problem};
use crate::proxywasm::http::{
    Pairs, apply_request_pairs, apply_response_pairs, request_pairs, response_pairs,
};
use crate::proxywasm::properties::{Cluster, ResponseOrigin, Route, StreamInfo, UpstreamTls};
use crate::proxywasm::{
    self, Direction, LocalResponse, MapType, PluginConfig, PluginModule, Signal, Vm, VmError, Wants,
};
use crate::server::Body;
use crate::upstream::Upstreams;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpInfo;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

mod bodies;

use bodies::{Counted, EndsStreams, FramesBody};

/// How long a stream may stay paused before the gateway gives up on the plugin (504).
const PAUSE_LIMIT: Duration = Duration::from_secs(30);

/// The plugins of a loaded API: one blueprint per distinct instance, each operation's chain.
pub(super) struct FilterSet {
    blueprints: Vec<Arc<Blueprint>>,
    /// Per instance: the stream callbacks it has.
    wants: Vec<Wants>,
    /// Operation index → instance indices, in chain order.
    chains: Vec<Vec<usize>>,
    /// Operation index → its route as properties report it (`xds.route_name`,
    /// `xds.cluster_name`, …); shared, not copied, by each request.
    routes: Vec<Arc<Route>>,
    /// The most a plugin may buffer of a body.
    body_limit: usize,
}

/// A worker's VM replicas, one per instance.
pub(super) struct Replicas(Vec<Arc<Replica>>);

impl Replicas {
    /// Shuts every VM down (root `on_done`, then `on_delete`), all at once, each waiting at most
    /// `grace` for a plugin that finishes work first.
    pub(super) async fn shutdown(&self, grace: std::time::Duration) {
        futures_util::future::join_all(self.0.iter().map(|r| r.shutdown(grace))).await;
    }
}

/// A stream a request has open on one filter of its chain.
struct OpenStream {
    replica: Arc<Replica>,
    /// The replica's generation when the stream was opened: once the VM is replaced (after a
    /// trap) the stream is gone and calls for it do nothing.
    generation: u64,
    context: u32,
    wants: Wants,
    /// The entry's `allow_on_headers_stop_iteration`.
    allows_stop_iteration: bool,
}

impl OpenStream {
    fn wants_headers(&self, direction: Direction) -> bool {
        match direction {
            Direction::Request => self.wants.headers.0,
            Direction::Response => self.wants.headers.1,
        }
    }

    fn wants_body(&self, direction: Direction) -> bool {
        match direction {
            Direction::Request => self.wants.bodies.0,
            Direction::Response => self.wants.bodies.1,
        }
    }

    fn plugin(&self) -> &str {
        self.replica.blueprint.plugin()
    }

    /// Whether a pause on `direction`'s headers waits for the body rather than for a resume
    /// (Envoy's `allow_on_headers_stop_iteration`): the entry allows it and the plugin has the
    /// body callback.
    fn holds_headers_for_body(&self, direction: Direction) -> bool {
        self.allows_stop_iteration && self.wants_body(direction)
    }

    /// After a pause on `map`, the map the plugin kept (and may have changed) replaces `pairs`;
    /// `pairs` stays as it was when the VM was lost meanwhile.
    fn take_map_back(&self, map: MapType, pairs: &mut Pairs) {
        if let Some(Some(changed)) = self
            .replica
            .with_generation(self.generation, |vm| vm.take_map(self.context, map))
        {
            *pairs = changed;
        }
    }

    /// What the plugin's failure policy makes of its failure: skip it, or fail the request.
    #[cold]
    fn on_failure(&self) -> Result<(), Stop> {
        match self.replica.failure_policy() {
            FailurePolicy::Open => Ok(()),
            FailurePolicy::Closed => Err(Stop::fail(plugin_failed(self.plugin()))),
        }
    }

    /// The stream's VM was replaced (another stream made it fail): a request can no longer be
    /// vouched for by the plugin, so its failure policy applies; a response goes on without it.
    #[cold]
    fn lost(&self, direction: Direction) -> Result<(), Stop> {
        match direction {
            Direction::Request => self.on_failure(),
            Direction::Response => Ok(()),
        }
    }

    #[cold]
    fn failed(&self, error: &VmError) -> Result<(), Stop> {
        self.replica.failed(error);
        self.on_failure()
    }
}

/// The streams one request has open in its chain, in chain order. Dropping it ends them (also
/// when the client goes away mid-request); while a request body streams on, the response and
/// the body's pump share it, and the last of them to let it go ends them.
pub(super) struct Passage {
    streams: Vec<OpenStream>,
    body_limit: usize,
    /// The request's record, where the bodies are counted (`request.size`, `response.size`).
    info: Arc<StreamInfo>,
    /// The request headers as forwarded, for `on_log`.
    request_head: Pairs,
    /// The response headers as sent, for `on_log` (set once the response phase has run; a
    /// local response from the body filters replaces them).
    response_head: Mutex<Pairs>,
}

impl Passage {
    /// Records `head` as the response headers sent, for `on_log`.
    fn sent_head(&self, head: Pairs) {
        *self
            .response_head
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = head;
    }
}

impl Drop for Passage {
    fn drop(&mut self) {
        // The one place they are set: it cannot fail.
        let heads = [
            std::mem::take(&mut self.request_head),
            std::mem::take(
                self.response_head
                    .get_mut()
                    .unwrap_or_else(PoisonError::into_inner),
            ),
        ];
        let _ = self.info.final_heads.set(heads);
        for stream in self.streams.drain(..) {
            let ended = stream
                .replica
                .with_generation(stream.generation, |vm| vm.end_stream(stream.context));
            if let Some(Err(error)) = ended {
                stream.replica.failed(&error);
            }
        }
    }
}

/// A request the request phase let through to the dispatcher.
pub(super) struct Admitted {
    passage: Arc<Passage>,
    /// While the request body streams on through the filters: where a stop from them comes.
    body_stop: Option<oneshot::Receiver<Stop>>,
}

impl Admitted {
    /// A request whose body, if any, has passed the filters already.
    fn at_once(passage: Passage) -> Admitted {
        Admitted {
            passage: Arc::new(passage),
            body_stop: None,
        }
    }
}

/// Why a request leaves the chain before reaching the dispatcher.
pub(super) enum Early {
    /// Answer with this (a plugin's local response after the response phase, or a problem).
    Respond(Response<Body>),
    /// A plugin reset the stream.
    Reset,
}

/// A plugin reset the stream (`proxy_close_stream`): the connection (HTTP/1) or the stream
/// (HTTP/2) is aborted without a response.
#[derive(Debug)]
pub struct StreamReset;

impl std::fmt::Display for StreamReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a plugin reset the stream")
    }
}

impl std::error::Error for StreamReset {}

/// What a callback decided.
enum Verdict {
    Continue,
    Pause,
    Respond(Box<LocalResponse>),
    Close,
}

/// Why a phase stops.
enum Stop {
    Respond(Box<LocalResponse>),
    Close,
    /// Boxed, like a local response: a phase's result is moved on every callback, and it is
    /// rarely a stop.
    Fail(Box<Problem>),
}

impl Stop {
    fn fail(problem: Problem) -> Stop {
        Stop::Fail(Box::new(problem))
    }
}

/// Reads a callback's result and the signals it left, in Envoy's order of precedence.
fn decide(result: i32, signals: Vec<Signal>, direction: Direction) -> Verdict {
    let mut resumed = false;
    for signal in signals {
        match signal {
            Signal::Respond(local) => return Verdict::Respond(local),
            Signal::Close(_) => return Verdict::Close,
            Signal::Resume(d) => resumed |= d == direction,
        }
    }
    if result == 0 || resumed {
        Verdict::Continue
    } else {
        Verdict::Pause
    }
}

impl FilterSet {
    /// Compiles the modules and starts every instance once, so a broken plugin fails the load.
    pub(super) fn new(
        api: &Api,
        plugins: &BTreeMap<String, Vec<u8>>,
        body_limit: usize,
    ) -> Result<FilterSet, String> {
        let engine = if plugins.is_empty() {
            None
        } else {
            Some(proxywasm::engine().map_err(|e| e.to_string())?)
        };
        let mut modules = HashMap::new();
        if let Some(engine) = &engine {
            for (name, bytes) in plugins {
                let module = PluginModule::compile(engine, bytes)
                    .map_err(|e| format!("plugin '{name}': {e}"))?;
                modules.insert(name.clone(), module);
            }
        }
        let upstreams: Arc<[String]> = api.upstreams.keys().cloned().collect();
        let mut instances = Vec::new();
        let mut blueprints = Vec::new();
        let mut wants = Vec::new();
        let mut chains = Vec::with_capacity(api.operations.len());
        for op in &api.operations {
            let mut chain = Vec::with_capacity(op.middlewares.len());
            for middleware in &op.middlewares {
                if let Some(i) = instances.iter().position(|m| m == middleware) {
                    chain.push(i);
                    continue;
                }
                let (Some(module), Some(engine)) = (modules.get(&middleware.plugin), &engine)
                else {
                    return Err(format!(
                        "plugin '{}': the artifact does not carry this plugin",
                        middleware.plugin
                    ));
                };
                let blueprint = Blueprint {
                    engine: engine.clone(),
                    module: module.clone(),
                    config: PluginConfig::for_middleware(middleware, upstreams.clone()),
                    failure: middleware.failure,
                    failures: Default::default(),
                    suspension: Suspension::new(middleware.backoff),
                    allow_on_headers_stop_iteration: middleware.allow_on_headers_stop_iteration,
                };
                let vm = blueprint.start().map_err(|e| e.to_string())?;
                wants.push(vm.wants());
                blueprints.push(Arc::new(blueprint));
                instances.push(middleware.clone());
                chain.push(instances.len() - 1);
            }
            chains.push(chain);
        }
        let routes = api
            .operations
            .iter()
            .map(|op| Arc::new(route(api, op)))
            .collect();
        Ok(FilterSet {
            blueprints,
            wants,
            chains,
            routes,
            body_limit,
        })
    }

    /// One replica of every instance, for the worker whose runtime is current.
    pub(super) fn replicas(&self, upstreams: &Upstreams) -> Result<Replicas, String> {
        self.blueprints
            .iter()
            .map(|b| Replica::start(b.clone(), upstreams.clone()).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()
            .map(Replicas)
    }

    /// The route of operation `op`, for its requests' [`StreamInfo`].
    pub(super) fn route(&self, op: usize) -> Arc<Route> {
        self.routes.get(op).cloned().unwrap_or_default()
    }

    /// Whether operation `op` has filters at all.
    pub(super) fn is_empty(&self, op: usize) -> bool {
        self.chains.get(op).is_none_or(Vec::is_empty)
    }

    /// Failures per plugin (all its instances), for `/__barbacane/metrics`.
    pub(super) fn failures(&self) -> BTreeMap<&str, u64> {
        let mut failures = BTreeMap::new();
        for blueprint in &self.blueprints {
            *failures.entry(blueprint.plugin()).or_default() +=
                blueprint.failures.load(Ordering::Relaxed);
        }
        failures
    }

    /// The suspension metrics per plugin (all its instances), for `/__barbacane/metrics`:
    /// suspensions started, whether one runs, requests that met one.
    pub(super) fn render_suspensions(&self, text: &mut String) {
        let mut per_plugin: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
        for blueprint in &self.blueprints {
            let s = &blueprint.suspension;
            let counts = per_plugin.entry(blueprint.plugin()).or_default();
            counts[0] += s.started.load(Ordering::Relaxed);
            counts[1] = counts[1].max(u64::from(s.is_active()));
            counts[2] += s.requests.load(Ordering::Relaxed);
        }
        let families = [
            (
                "barbacane_plugin_suspensions_total",
                "counter",
                "Suspensions of a plugin whose callback ran past its deadline.",
            ),
            (
                "barbacane_plugin_suspended",
                "gauge",
                "1 while the plugin (one of its instances) is suspended.",
            ),
            (
                "barbacane_plugin_suspended_requests_total",
                "counter",
                "Requests that got the plugin's failure policy because it was suspended.",
            ),
        ];
        for (i, (name, kind, help)) in families.into_iter().enumerate() {
            text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (plugin, counts) in &per_plugin {
                text.push_str(&format!("{name}{{plugin=\"{plugin}\"}} {}\n", counts[i]));
            }
        }
    }

    /// The request phase: headers through the chain of operation `op`, then, when a filter
    /// wants the body, its first chunk (the rest streams through the filters as it is
    /// forwarded). Returns the open streams (for [`FilterSet::after_dispatch`]) and the body to
    /// forward.
    pub(super) async fn request(
        &self,
        replicas: &Replicas,
        op: usize,
        parts: &mut http::request::Parts,
        body: Body,
        info: Arc<StreamInfo>,
    ) -> Result<(Admitted, Body), Early> {
        let chain = self.chains.get(op).map_or(&[][..], Vec::as_slice);
        let mut passage = Passage {
            streams: Vec::with_capacity(chain.len()),
            body_limit: self.body_limit,
            info: info.clone(),
            request_head: Pairs::default(),
            response_head: Mutex::default(),
        };
        let end_of_stream = http_body::Body::is_end_stream(&body);
        // No data will pass a body that has already ended (most requests): nothing to count.
        let mut body = if end_of_stream {
            body
        } else {
            Counted::boxed(body, &passage.info, Direction::Request)
        };
        let authority = info.host.as_ref().map_or(&b""[..], HeaderValue::as_bytes);
        let mut pairs = request_pairs(parts, info.scheme, authority);
        let headers = MapType::RequestHeaders;
        // The last filter that held the headers for the body, and what passed it (see
        // `hold_for_body`).
        let mut held = None;
        for &index in chain {
            let replica = &replicas.0[index];
            if replica.blueprint.suspension.is_active() {
                match suspended(replica) {
                    None => continue,
                    Some(early) => return Err(early),
                }
            }
            let wants = self.wants[index];
            // The stream is opened and (when the plugin has the callback) its request headers
            // run in one call into the replica. (Errors boxed, as in `map_callback`.)
            let opened = replica.with(|vm| -> Result<_, Box<VmError>> {
                let context = vm.create_stream(info.clone())?;
                let verdict = wants
                    .headers
                    .0
                    .then(|| map_callback(vm, context, headers, &mut pairs, end_of_stream));
                Ok((context, vm.generation(), verdict))
            });
            let (stream, verdict) = match opened {
                Ok((context, generation, verdict)) => {
                    let stream = OpenStream {
                        allows_stop_iteration: replica.blueprint.allow_on_headers_stop_iteration,
                        replica: replica.clone(),
                        generation,
                        context,
                        wants,
                    };
                    (stream, verdict)
                }
                Err(error) => match not_opened(replica, &error) {
                    None => continue,
                    Some(early) => return Err(early),
                },
            };
            // Envoy's `allow_on_headers_stop_iteration`: a pause on the headers of a request
            // with a body waits for the body rather than for a resume.
            let holds = matches!(verdict, Some(Ok(Verdict::Pause)))
                && !end_of_stream
                && stream.holds_headers_for_body(Direction::Request);
            // A plugin without the callback continues, as it would with the SDK's default one.
            let flow = match verdict {
                None | Some(Ok(Verdict::Continue)) => Ok(()),
                Some(_) if holds => Ok(()),
                Some(verdict) => Box::pin(settle_map(&stream, headers, &mut pairs, verdict)).await,
            };
            passage.streams.push(stream);
            if holds {
                let holder = passage.streams.len() - 1;
                let hold = passage.hold_for_body(
                    Direction::Request,
                    holder,
                    &mut pairs,
                    &mut body,
                    &mut held,
                );
                if let Err(stop) = Box::pin(hold).await {
                    return Err(self.stop_request(passage, stop).await);
                }
            }
            // The rarer paths' futures (a callback that did not continue, a stop here, a request
            // body) are boxed: inline, they would make this one, boxed and moved on every
            // request, three times larger.
            if let Err(stop) = flow {
                return Err(self.stop_request(passage, stop).await);
            }
        }
        apply_request_pairs(parts, &pairs);
        passage.request_head = pairs;
        if end_of_stream || !passage.wants_body(Direction::Request) {
            return Ok((Admitted::at_once(passage), body));
        }
        let mut passed = VecDeque::new();
        match Box::pin(passage.start_request_body(body, held, &mut passed)).await {
            Ok(None) => Ok((
                Admitted::at_once(passage),
                FramesBody(passed).boxed_unsync(),
            )),
            Ok(Some((rest, keepers))) => Ok(passage.stream_request_body(rest, keepers, passed)),
            Err(stop) => Err(self.stop_request(passage, stop).await),
        }
    }

    /// A request phase that stopped: a local response still passes back through the filters
    /// that saw the request (as Envoy's local replies do). Boxed: a rare path, kept out of the
    /// futures every request holds.
    fn stop_request(
        &self,
        passage: impl Into<Arc<Passage>>,
        stop: Stop,
    ) -> Pin<Box<dyn Future<Output = Early> + Send + '_>> {
        let passage = passage.into();
        Box::pin(async move {
            match stop {
                Stop::Respond(local) => {
                    tracing::debug!(status = local.status, details = %local.details, "local response");
                    match self.response(passage, local_response(*local)).await {
                        Ok(response) => Early::Respond(response),
                        Err(StreamReset) => Early::Reset,
                    }
                }
                Stop::Close => Early::Reset,
                Stop::Fail(problem) => Early::Respond(problem.into_response()),
            }
        })
    }

    /// Awaits the dispatcher's response to an admitted request, then runs the response phase.
    /// While the request body still streams through the filters, a stop from them (a local
    /// response, a reset, a failure) answers instead, as in Envoy: before the dispatcher has
    /// answered (the dispatch is dropped, and with it the upstream request), or while the
    /// response is still in the filters. Once it has gone on to the client, the stop fails the
    /// forwarded body, which ends the exchange with the upstream: the client's stream is reset.
    /// (`dispatch` is pinned where it is made: moving it in costs every request.)
    pub(super) async fn after_dispatch(
        &self,
        admitted: Admitted,
        dispatch: Pin<&mut (dyn Future<Output = Response<Body>> + Send + '_)>,
    ) -> Result<Response<Body>, StreamReset> {
        let Admitted { passage, body_stop } = admitted;
        if passage.info.route.cluster.is_some() {
            let _ = passage.info.dispatched.set(std::time::Instant::now());
        }
        let Some(body_stop) = body_stop else {
            return self.response(passage, dispatch.await).await;
        };
        let respond = async {
            let response = dispatch.await;
            self.response(passage.clone(), response).await
        };
        tokio::select! {
            biased;
            Ok(stop) = body_stop => match self.stop_request(passage, stop).await {
                Early::Respond(response) => Ok(response),
                Early::Reset => Err(StreamReset),
            },
            response = respond => response,
        }
    }

    /// The response phase: headers back through the chain in reverse order, then the body
    /// (through a task when a filter wants it). A filter may replace the response with a local
    /// one; the streams end when the body has been sent.
    async fn response(
        &self,
        passage: Arc<Passage>,
        response: Response<Body>,
    ) -> Result<Response<Body>, StreamReset> {
        // The body is counted (`response.size`) where its frames are read for the body filters
        // (below, or in the pump), else by a `Counted` wrapper as it streams to the client.
        let (mut parts, mut body) = response.into_parts();
        note_origin(&passage.info, &parts);
        let mut pairs = response_pairs(&parts);
        // The last filter that held the headers for the body, and what passed it (boxed: this
        // future is held by every response, and rarely holds one).
        let mut held = None;
        for index in (0..passage.streams.len()).rev() {
            let stream = &passage.streams[index];
            if !stream.wants_headers(Direction::Response) {
                continue;
            }
            let end_of_stream = held.is_none() && http_body::Body::is_end_stream(&body);
            let flow = if !end_of_stream && stream.holds_headers_for_body(Direction::Response) {
                let hold =
                    passage.response_headers_or_hold(index, &mut pairs, &mut body, &mut held);
                Box::pin(hold).await
            } else {
                map_phase(stream, MapType::ResponseHeaders, &mut pairs, end_of_stream).await
            };
            match flow {
                Ok(()) => {}
                Err(Stop::Respond(local)) => {
                    tracing::debug!(plugin = stream.plugin(), status = local.status, details = %local.details, "local response");
                    (parts, body) = local_response(*local).into_parts();
                    note_origin(&passage.info, &parts);
                    pairs = response_pairs(&parts);
                    held = None;
                }
                Err(Stop::Close) => return Err(StreamReset),
                Err(Stop::Fail(problem)) => return Ok(problem.into_response()),
            }
        }
        apply_response_pairs(&mut parts, &pairs);
        passage.sent_head(pairs);
        if let Some(held) = held {
            return Box::pin(passage.after_held_response(parts, held, body)).await;
        }
        if http_body::Body::is_end_stream(&body) || !passage.wants_body(Direction::Response) {
            let body = EndsStreams {
                body: Counted::boxed(body, &passage.info, Direction::Response),
                passage: Some(passage),
            };
            return Ok(Response::from_parts(parts, body.boxed_unsync()));
        }
        // The head waits for the first chunk either way (see `response_body`). A body that is
        // complete after it (a mock's, most small upstream answers) passes the filters here,
        // with no pump task, and keeps a known length.
        let data = match body.frame().await {
            None => Bytes::new(),
            Some(Ok(frame)) if frame.is_data() && http_body::Body::is_end_stream(&body) => {
                frame.into_data().unwrap_or_default()
            }
            first => {
                let pump = passage.pump_response(parts, None, Some(first), body, Vec::new());
                return Box::pin(pump).await;
            }
        };
        let length = data.len();
        passage.info.body_sizes.add(Direction::Response, length);
        match passage
            .body_chunk(Direction::Response, data, true, &mut Vec::new())
            .await
        {
            Ok(data) => {
                // The filters may have changed the body's length; hyper then sends the new one.
                // Held inline, not boxed on its own: most responses take this path.
                let data = data.unwrap_or_default();
                if data.len() != length {
                    parts.headers.remove(http::header::CONTENT_LENGTH);
                }
                let body = EndsStreams {
                    body: Full::new(data).map_err(|e| match e {}),
                    passage: Some(passage),
                };
                Ok(Response::from_parts(parts, body.boxed_unsync()))
            }
            Err(stop) => stopped(&passage, stop),
        }
    }
}

/// What a response whose body filters stopped it (before its head was sent) becomes. A local
/// response is then the exchange's: its details and head are what `on_log` reads.
#[cold]
#[inline(never)]
fn stopped(passage: &Passage, stop: Stop) -> Result<Response<Body>, StreamReset> {
    match stop {
        Stop::Respond(local) => {
            let (parts, body) = local_response(*local).into_parts();
            note_origin(&passage.info, &parts);
            passage.sent_head(response_pairs(&parts));
            Ok(Response::from_parts(parts, body))
        }
        Stop::Close => Err(StreamReset),
        Stop::Fail(problem) => Ok(problem.into_response()),
    }
}

/// Runs the headers (or trailers) callback of `map` for `stream`: installs `pairs`, calls the
/// plugin, and takes the (possibly changed) map back once the plugin lets it go, waiting while
/// the plugin holds the stream.
async fn map_phase(
    stream: &OpenStream,
    map: MapType,
    pairs: &mut Pairs,
    end_of_stream: bool,
) -> Result<(), Stop> {
    let context = stream.context;
    let step = stream.replica.with_generation(stream.generation, |vm| {
        map_callback(vm, context, map, pairs, end_of_stream)
    });
    match step {
        Some(Ok(Verdict::Continue)) => Ok(()),
        Some(verdict) => Box::pin(settle_map(stream, map, pairs, verdict)).await,
        None => stream.lost(map.direction()),
    }
}

/// The part of [`map_phase`] that runs on the locked VM: the callback, and what it decided.
/// While paused the plugin keeps the map; `pairs` keeps a copy, which survives a VM lost
/// meanwhile. The error is boxed: this result is moved on every callback, and rarely an error.
fn map_callback(
    vm: &mut Vm,
    context: u32,
    map: MapType,
    pairs: &mut Pairs,
    end_of_stream: bool,
) -> Result<Verdict, Box<VmError>> {
    let (result, signals) = vm
        .map_callback(context, map, pairs, end_of_stream)
        .map_err(Box::new)?;
    let verdict = decide(result, signals, map.direction());
    if let Verdict::Pause = verdict {
        vm.set_map(context, map, pairs.clone());
    }
    Ok(verdict)
}

/// The part of [`map_phase`] after a callback that did not simply continue (boxed by callers:
/// their futures, held by every request, stay small): stop, or wait for the plugin to resume
/// the stream and take its map back.
async fn settle_map(
    stream: &OpenStream,
    map: MapType,
    pairs: &mut Pairs,
    verdict: Result<Verdict, Box<VmError>>,
) -> Result<(), Stop> {
    match verdict {
        Ok(Verdict::Continue) => Ok(()),
        Ok(Verdict::Respond(local)) => Err(Stop::Respond(local)),
        Ok(Verdict::Close) => Err(Stop::Close),
        Ok(Verdict::Pause) => {
            wait(stream, map.direction()).await?;
            stream.take_map_back(map, pairs);
            Ok(())
        }
        Err(error) => stream.failed(&error),
    }
}

/// A stream that could not be opened on `replica` (its VM failed): skip the plugin (`None`), or
/// answer with a problem, as its failure policy says.
#[cold]
#[inline(never)]
fn not_opened(replica: &Replica, error: &VmError) -> Option<Early> {
    replica.failed(error);
    by_failure_policy(replica)
}

/// A request reaching a suspended plugin (see [`Suspension`]): as [`not_opened`], without
/// entering its VM.
#[cold]
#[inline(never)]
fn suspended(replica: &Replica) -> Option<Early> {
    let suspension = &replica.blueprint.suspension;
    suspension.requests.fetch_add(1, Ordering::Relaxed);
    by_failure_policy(replica)
}

/// A request the plugin of `replica` cannot serve: skipped (`None`) or answered with a problem.
fn by_failure_policy(replica: &Replica) -> Option<Early> {
    match replica.failure_policy() {
        FailurePolicy::Open => None,
        FailurePolicy::Closed => {
            let problem = plugin_failed(replica.blueprint.plugin());
            Some(Early::Respond(problem.into_response()))
        }
    }
}

/// The problem a request gets when a plugin whose failure policy is `closed` failed.
fn plugin_failed(plugin: &str) -> Problem {
    Problem::new(Kind::PluginFailed, format!("plugin '{plugin}' failed"))
}

/// Waits until the plugin resumes `direction` of a paused stream; a local response, a reset, a
/// lost VM or [`PAUSE_LIMIT`] end the wait otherwise.
async fn wait(stream: &OpenStream, direction: Direction) -> Result<(), Stop> {
    let deadline = tokio::time::Instant::now() + PAUSE_LIMIT;
    while let Some(notify) = listen(stream, direction)? {
        if tokio::time::timeout_at(deadline, notify.notified())
            .await
            .is_err()
        {
            return Err(Stop::fail(Problem::new(
                Kind::GatewayTimeout,
                format!(
                    "plugin '{}' did not resume the stream within {PAUSE_LIMIT:?}",
                    stream.plugin()
                ),
            )));
        }
    }
    Ok(())
}

/// What the plugin of a paused stream asked for since it paused: `None` to go on (it resumed
/// `direction`, or its VM was lost and its failure policy skips it), a stop (a local response,
/// a reset), or nothing yet: what to wait on before asking again.
fn listen(stream: &OpenStream, direction: Direction) -> Result<Option<Arc<Notify>>, Stop> {
    let heard = stream.replica.with_generation(stream.generation, |vm| {
        for signal in vm.heard(stream.context, direction) {
            match signal {
                Signal::Respond(local) => return Err(Some(Stop::Respond(local))),
                Signal::Close(_) => return Err(Some(Stop::Close)),
                Signal::Resume(d) if d == direction => return Err(None),
                Signal::Resume(_) => {}
            }
        }
        vm.waker(stream.context, direction).ok_or(Some(Stop::Close))
    });
    match heard {
        None => stream.lost(direction).map(|()| None),
        Some(Err(None)) => Ok(None),
        Some(Err(Some(stop))) => Err(stop),
        Some(Ok(notify)) => Ok(Some(notify)),
    }
}

/// Operation `op` as properties report its route.
fn route(api: &Api, op: &Operation) -> Route {
    let cluster = match &op.dispatch {
        Dispatch::HttpUpstream(d) => Some(Cluster {
            name: d.upstream.clone(),
            endpoints: api
                .upstreams
                .get(&d.upstream)
                .map_or(0, |u| u.endpoints.len() as u64),
        }),
        Dispatch::Mock(_) => None,
    };
    Route {
        name: op.id.clone(),
        cluster,
        hosts: op.servers.iter().map(|s| s.host.clone()).collect(),
    }
}

/// Records in the request's record where the response in `parts` came from
/// (`response.code_details`, `response.flags`, `upstream.*`): what the gateway noted on a
/// response it made, else the connection hyper-util notes on every upstream response, else (no
/// note at all) a mock's.
fn note_origin(info: &StreamInfo, parts: &http::response::Parts) {
    let origin = if let Some(origin) = parts.extensions.get::<ResponseOrigin>() {
        origin.clone()
    } else if let Some(connection) = parts.extensions.get::<HttpInfo>() {
        let addresses = (connection.remote_addr(), connection.local_addr());
        ResponseOrigin {
            upstream_tls: parts.extensions.get::<Arc<UpstreamTls>>().cloned(),
            ..ResponseOrigin::via_upstream(Some(addresses))
        }
    } else {
        ResponseOrigin::local("direct_response")
    };
    info.set_origin(origin);
}

/// The response a plugin asked for with `proxy_send_local_response`, verbatim, noting the
/// details it gave (`response.code_details`).
#[cold]
#[inline(never)]
fn local_response(local: LocalResponse) -> Response<Body> {
    let mut response = Response::new(crate::server::full(local.body));
    response
        .extensions_mut()
        .insert(ResponseOrigin::local(local.details));
    *response.status_mut() =
        StatusCode::from_u16(local.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &local.headers {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}

//! An operation's Proxy-Wasm chain: the request headers pass through its filters in order, the
//! response headers in reverse order, then each stream ends (`on_done`, `on_log`, `on_delete`).
//!
//! Each distinct (plugin, configuration) is an *instance*; every worker has one VM replica per
//! instance, behind an uncontended mutex (a worker is one thread; the mutex only makes the
//! replica shareable between that thread's tasks). A replica that traps is replaced, and the
//! plugin's failure policy decides the request: `closed` → 500 problem, `open` → skip it.

use crate::model::{Api, FailurePolicy, Middleware};
use crate::problem::{Kind, Problem};
use crate::proxywasm::http::{
    apply_request_pairs, apply_response_pairs, request_pairs, response_pairs,
};
use crate::proxywasm::{self, Action, LocalResponse, PluginConfig, PluginModule, Vm, VmError};
use crate::server::Body;
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

/// The plugins of a loaded API: compiled modules, distinct instances, each operation's chain.
pub(super) struct FilterSet {
    /// Only made when the API has plugins (it runs an epoch thread).
    engine: Option<wasmtime::Engine>,
    modules: HashMap<String, PluginModule>,
    instances: Vec<Middleware>,
    /// Operation index → instance indices, in chain order.
    chains: Vec<Vec<usize>>,
}

/// A worker's VM replicas, one per instance.
pub(super) struct Replicas(Vec<Mutex<Vm>>);

/// A stream one request has open in the chain.
struct OpenStream {
    instance: usize,
    /// The replica's generation when the stream was opened.
    generation: u64,
    context: u32,
}

/// The streams one request has open in the chain.
pub(super) struct Passage(Vec<OpenStream>);

/// Where the request goes after the request phase.
pub(super) enum Outcome {
    /// On to the dispatcher; the response comes back through these streams.
    Forward(Passage),
    /// A plugin answered (its response has already been through the response phase).
    Respond(Box<Response<Body>>),
}

impl FilterSet {
    /// Compiles the modules and starts every instance once, so a broken plugin fails the load.
    pub(super) fn new(api: &Api, plugins: &BTreeMap<String, Vec<u8>>) -> Result<FilterSet, String> {
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
        let mut instances: Vec<Middleware> = Vec::new();
        let mut chains = Vec::with_capacity(api.operations.len());
        for op in &api.operations {
            let mut chain = Vec::with_capacity(op.middlewares.len());
            for middleware in &op.middlewares {
                let index = match instances.iter().position(|m| m == middleware) {
                    Some(i) => i,
                    None => {
                        instances.push(middleware.clone());
                        instances.len() - 1
                    }
                };
                chain.push(index);
            }
            chains.push(chain);
        }
        let set = FilterSet {
            engine,
            modules,
            instances,
            chains,
        };
        for index in 0..set.instances.len() {
            set.start(index).map_err(|e| e.to_string())?;
        }
        Ok(set)
    }

    /// One replica of every instance, for a worker.
    pub(super) fn replicas(&self) -> Result<Replicas, String> {
        (0..self.instances.len())
            .map(|i| self.start(i).map(Mutex::new).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()
            .map(Replicas)
    }

    fn start(&self, index: usize) -> Result<Vm, VmError> {
        let middleware = &self.instances[index];
        let (Some(module), Some(engine)) = (self.modules.get(&middleware.plugin), &self.engine)
        else {
            return Err(VmError::Instantiate {
                plugin: middleware.plugin.clone(),
                message: String::from("the artifact does not carry this plugin"),
            });
        };
        let config = PluginConfig {
            name: middleware.plugin.clone(),
            vm_config: middleware.vm_config.clone().into_bytes(),
            config: middleware.config.clone().into_bytes(),
        };
        Vm::start(engine, module, config)
    }

    /// Whether operation `op` has filters at all.
    pub(super) fn is_empty(&self, op: usize) -> bool {
        self.chains.get(op).is_none_or(Vec::is_empty)
    }

    /// Passes the request head through the chain of operation `op`. A filter that answers with a
    /// local response ends the chain (its response still passes back through the filters that saw
    /// the request); one that pauses, or fails closed, ends the request with the returned problem.
    pub(super) fn request_headers(
        &self,
        replicas: &Replicas,
        op: usize,
        parts: &mut http::request::Parts,
        scheme: &str,
        end_of_stream: bool,
    ) -> Result<Outcome, Problem> {
        let mut passage = Passage(Vec::new());
        let mut pairs = request_pairs(parts, scheme);
        for &index in self.chains.get(op).map_or(&[][..], Vec::as_slice) {
            let mut vm = replicas.lock(index);
            let generation = vm.generation();
            let outcome = vm.create_stream().and_then(|context| {
                passage.0.push(OpenStream {
                    instance: index,
                    generation,
                    context,
                });
                vm.on_request_headers(context, &mut pairs, end_of_stream)
            });
            drop(vm);
            match outcome {
                Ok(Action::Continue) => {}
                Ok(Action::Respond(local)) => {
                    let plugin = &self.instances[index].plugin;
                    tracing::debug!(plugin = %plugin, status = local.status, details = %local.details, "local response");
                    let response = local_response(local);
                    return Ok(Outcome::Respond(Box::new(
                        self.response_headers(replicas, passage, response),
                    )));
                }
                Ok(Action::Pause) => {
                    self.end(replicas, passage);
                    let plugin = &self.instances[index].plugin;
                    return Err(Problem::new(
                        Kind::PluginFailed,
                        format!(
                            "plugin '{plugin}' paused the request; resuming a stream is not supported yet"
                        ),
                    ));
                }
                Err(error) => {
                    passage.0.retain(|stream| stream.instance != index);
                    if let Some(problem) = self.failed(replicas, index, &error) {
                        self.end(replicas, passage);
                        return Err(problem);
                    }
                }
            }
        }
        apply_request_pairs(parts, &pairs);
        Ok(Outcome::Forward(passage))
    }

    /// Passes the response head back through the chain in reverse order, then ends the streams.
    /// A filter may replace the response with a local one here too.
    pub(super) fn response_headers(
        &self,
        replicas: &Replicas,
        passage: Passage,
        response: Response<Body>,
    ) -> Response<Body> {
        let (mut parts, mut body) = response.into_parts();
        let mut pairs = response_pairs(&parts);
        let mut failure = None;
        for stream in passage.0.iter().rev() {
            let end_of_stream = http_body::Body::is_end_stream(&body);
            let outcome = replicas
                .current(stream)
                .map(|mut vm| vm.on_response_headers(stream.context, &mut pairs, end_of_stream));
            let plugin = &self.instances[stream.instance].plugin;
            match outcome {
                None | Some(Ok(Action::Continue)) => {}
                Some(Ok(Action::Respond(local))) => {
                    tracing::debug!(plugin = %plugin, status = local.status, details = %local.details, "local response");
                    (parts, body) = local_response(local).into_parts();
                    pairs = response_pairs(&parts);
                }
                Some(Ok(Action::Pause)) => {
                    failure = Some(Problem::new(
                        Kind::PluginFailed,
                        format!(
                            "plugin '{plugin}' paused the response; resuming a stream is not supported yet"
                        ),
                    ));
                    break;
                }
                Some(Err(error)) => {
                    if let Some(problem) = self.failed(replicas, stream.instance, &error) {
                        failure = Some(problem);
                        break;
                    }
                }
            }
        }
        self.end(replicas, passage);
        if let Some(problem) = failure {
            return problem.into_response();
        }
        apply_response_pairs(&mut parts, &pairs);
        Response::from_parts(parts, body)
    }

    fn end(&self, replicas: &Replicas, passage: Passage) {
        for stream in passage.0 {
            let result = replicas
                .current(&stream)
                .map(|mut vm| vm.end_stream(stream.context));
            if let Some(Err(error)) = result {
                self.failed(replicas, stream.instance, &error);
            }
        }
    }

    /// Handles a failed callback: logs it, replaces the replica, and returns the problem the
    /// failure policy asks for (`None` to skip the plugin).
    fn failed(&self, replicas: &Replicas, index: usize, error: &VmError) -> Option<Problem> {
        let middleware = &self.instances[index];
        tracing::error!(plugin = %middleware.plugin, %error, "plugin failed; replacing its VM");
        match self.start(index) {
            Ok(vm) => *replicas.lock(index) = vm,
            Err(e) => {
                tracing::error!(plugin = %middleware.plugin, error = %e, "cannot restart the plugin")
            }
        }
        match middleware.failure {
            FailurePolicy::Open => None,
            FailurePolicy::Closed => Some(Problem::new(
                Kind::PluginFailed,
                format!("plugin '{}' failed", middleware.plugin),
            )),
        }
    }
}

/// The response a plugin asked for with `proxy_send_local_response`.
fn local_response(local: LocalResponse) -> Response<Body> {
    let mut response = Response::new(crate::server::full(local.body));
    *response.status_mut() =
        StatusCode::from_u16(local.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &local.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

impl Replicas {
    fn lock(&self, index: usize) -> MutexGuard<'_, Vm> {
        // A poisoned lock only means another task panicked mid-call; the VM is replaced on
        // failure anyway, so keep using it.
        self.0[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The replica `stream` was opened on, unless it has been replaced since.
    fn current(&self, stream: &OpenStream) -> Option<MutexGuard<'_, Vm>> {
        let vm = self.lock(stream.instance);
        (vm.generation() == stream.generation).then_some(vm)
    }
}

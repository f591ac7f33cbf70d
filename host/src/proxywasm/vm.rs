//! One VM replica of a plugin: a wasmtime store and instance with every ABI import linked, started
//! the way Envoy starts it (entry point, root context, `proxy_on_vm_start`,
//! `proxy_validate_configuration`, `proxy_on_configure`).
//! A plugin that rejects its VM or plugin configuration is refused with its own log lines quoted,
//! so `compile` and `serve` can say why.

use super::abi::LogLevel;
use super::capability::Capabilities;
use super::grpc::{GrpcCall, GrpcEvent, GrpcHandle};
use super::http::Pairs;
use super::module::{EntryPoint, PluginModule, StreamCallback, StreamCallbacks};
use super::properties::{FilterValues, PluginIdentity, StreamInfo};
use super::shared::QueueListener;
use super::{hostcalls, wasi};
use crate::model::Middleware;
use rustc_hash::FxHashMap;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::Notify;
use wasmtime::{Engine, Instance, InstancePre, Linker, Store, TypedFunc, WasmParams, WasmResults};

/// How many of a plugin's latest log lines are kept to explain a failure.
const RECENT_LOG_LINES: usize = 16;

/// The most linear memory one VM may have (a filter's working set is usually a few MiB).
pub const MEMORY_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// Which way of an HTTP stream a signal is about (`proxy_stream_type_t` 0 and 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The request (`HTTP_REQUEST`).
    Request,
    /// The response (`HTTP_RESPONSE`).
    Response,
}

/// Something a plugin asked of a stream during a callback. Like Envoy, the host acts on it only
/// after the callback has returned (Proxy-Wasm deferred actions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// `proxy_continue_stream`: let a paused direction go on.
    Resume(Direction),
    /// `proxy_close_stream`: reset the stream.
    Close(Direction),
    /// `proxy_send_local_response`: answer with this response instead. Boxed: a signal (and
    /// the verdicts made from it) is moved on every callback, and most are not this one.
    Respond(Box<LocalResponse>),
}

impl Signal {
    /// Whether `self` and `other` ask the same thing, so that the host, acting on the first,
    /// never looks at the second: resuming the same direction, closing, responding.
    pub(super) fn same_ask(&self, other: &Signal) -> bool {
        match (self, other) {
            (Signal::Resume(a), Signal::Resume(b)) => a == b,
            (Signal::Close(_), Signal::Close(_)) | (Signal::Respond(_), Signal::Respond(_)) => true,
            _ => false,
        }
    }
}

/// A response a plugin made with `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// The status code.
    pub status: u16,
    /// The headers the plugin gave.
    pub headers: Pairs,
    /// The body.
    pub body: Vec<u8>,
    /// The plugin's reason, for logs.
    pub details: String,
}

/// The header maps of a stream, by `proxy_map_type_t` (0–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    /// `HTTP_REQUEST_HEADERS`.
    RequestHeaders = 0,
    /// `HTTP_REQUEST_TRAILERS`.
    RequestTrailers = 1,
    /// `HTTP_RESPONSE_HEADERS`.
    ResponseHeaders = 2,
    /// `HTTP_RESPONSE_TRAILERS`.
    ResponseTrailers = 3,
}

impl MapType {
    /// Which way the headers or trailers of the map flow.
    pub fn direction(self) -> Direction {
        match self {
            MapType::RequestHeaders | MapType::RequestTrailers => Direction::Request,
            MapType::ResponseHeaders | MapType::ResponseTrailers => Direction::Response,
        }
    }
}

/// The HTTP callout result delivered by `proxy_on_http_call_response` (maps 6 and 7, buffer 4).
#[derive(Debug, Clone, Default)]
pub struct CallResponse {
    /// Response headers with `:status`.
    pub headers: Pairs,
    /// The response body.
    pub body: Vec<u8>,
    /// The response trailers.
    pub trailers: Pairs,
}

/// An HTTP callout a plugin asked for (`proxy_http_call`), for the host to send once the
/// callback has returned.
#[derive(Debug, Clone)]
pub struct Callout {
    /// The token the plugin got back.
    pub token: u32,
    /// The named upstream.
    pub upstream: String,
    /// Headers with `:method`, `:path`, `:authority` (and maybe `:scheme`).
    pub headers: Pairs,
    /// The request body.
    pub body: Vec<u8>,
    /// The request trailers.
    pub trailers: Pairs,
    /// `None` for no timeout.
    pub timeout: Option<std::time::Duration>,
}

/// Work a plugin started during a VM call that the host carries out after it returns.
#[derive(Debug, Default)]
pub struct Outbox {
    /// HTTP callouts to send.
    pub callouts: Vec<Callout>,
    /// gRPC calls and streams to start.
    pub grpc_calls: Vec<GrpcCall>,
    /// The new tick period, when the plugin changed it (`Some(None)` stops ticks).
    pub tick_period: Option<Option<std::time::Duration>>,
    /// Streams whose `on_done` returned false and that then called `proxy_done`: finish them
    /// with `on_log` and `on_delete`.
    pub finished: Vec<u32>,
    /// The root context's `on_done` returned false (at shutdown) and it has now called
    /// `proxy_done`: delete it.
    pub root_finished: bool,
}

/// A body buffer as a stream holds it: the chunk the gateway lent, copied only once a plugin
/// changes it or buffers more (most filters that have a body callback let the body pass as it
/// is, and a chunk read from a connection is a view of its read buffer).
pub(super) struct BodyBuffer {
    lent: bytes::Bytes,
    /// The buffer once it has been changed.
    owned: Option<Vec<u8>>,
}

impl BodyBuffer {
    fn lent(chunk: bytes::Bytes) -> BodyBuffer {
        BodyBuffer {
            lent: chunk,
            owned: None,
        }
    }

    /// The bytes as they are now.
    pub(super) fn as_slice(&self) -> &[u8] {
        self.owned.as_deref().unwrap_or(&self.lent)
    }

    /// The bytes, to change: copied out of the lent chunk the first time.
    pub(super) fn to_mut(&mut self) -> &mut Vec<u8> {
        let lent = &mut self.lent;
        self.owned
            .get_or_insert_with(|| Vec::from(std::mem::take(lent)))
    }

    fn into_bytes(self) -> bytes::Bytes {
        self.owned.map_or(self.lent, bytes::Bytes::from)
    }
}

/// One HTTP stream as the VM holds it: its maps and body buffers while a callback (or a pause)
/// has them, the signals the plugin left for it, and what properties report about it.
pub(super) struct StreamState {
    pub(super) maps: [Option<Pairs>; 4],
    /// Request and response body buffers (buffers 0 and 1).
    pub(super) bodies: [Option<BodyBuffer>; 2],
    pub(super) signals: Vec<Signal>,
    /// Per direction: woken when a signal for it arrives from a callback of another context
    /// (callout, tick, queue). Made when a task first waits on that direction: most streams
    /// never pause, and a signal left before is in `signals`, which the task reads (under the
    /// VM's lock) before it waits. Both directions may wait at once (a request body still
    /// streams while the response comes).
    pub(super) wake: [Option<Arc<Notify>>; 2],
    /// Per direction: whether a task waits on it (from `Vm::waker` until it hears what the
    /// plugin asked, `Vm::heard`).
    waiting: [bool; 2],
    pub(super) info: Arc<StreamInfo>,
    /// `on_done` returned false: `on_log`/`on_delete` wait for `proxy_done`.
    pub(super) done_pending: bool,
}

/// What the host needs to start a plugin.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The plugin's name (from the spec), used in logs and errors.
    pub name: String,
    /// `root_id`, `vm_id` and the name again, for properties.
    pub identity: PluginIdentity,
    /// `vm_config`, delivered as buffer 6 to `proxy_on_vm_start`.
    pub vm_config: Vec<u8>,
    /// `config`, delivered as buffer 7 to `proxy_on_configure`.
    pub config: Vec<u8>,
    /// The upstreams `proxy_http_call` may name.
    pub upstreams: Arc<[String]>,
    /// The most time one callback may run.
    pub deadline: std::time::Duration,
}

impl PluginConfig {
    /// The configuration of a chain entry; `upstreams` are the names callouts may use.
    pub fn for_middleware(middleware: &Middleware, upstreams: Arc<[String]>) -> PluginConfig {
        PluginConfig {
            name: middleware.plugin.clone(),
            identity: PluginIdentity {
                name: middleware.plugin.clone(),
                root_id: middleware.root_id.clone(),
                vm_id: middleware.plugin.clone(),
            },
            vm_config: middleware.vm_config.clone().into_bytes(),
            config: middleware.config.clone().into_bytes(),
            upstreams,
            deadline: std::time::Duration::from_millis(middleware.deadline_ms),
        }
    }
}

/// Why a plugin could not be started.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Its imports could not be linked or it could not be instantiated.
    #[error("plugin '{plugin}' cannot be instantiated: {message}")]
    Instantiate {
        /// The plugin.
        plugin: String,
        /// Why.
        message: String,
    },
    /// It trapped.
    #[error("plugin '{plugin}' trapped in {during}: {message}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The callback that trapped.
        during: &'static str,
        /// The trap, and the plugin's last log lines.
        message: String,
    },
    /// A callback ran past its deadline (stopped by the engine's epoch interruption).
    #[error("plugin '{plugin}' ran past its {deadline:?} deadline in {during}{log}")]
    Deadline {
        /// The plugin.
        plugin: String,
        /// Its deadline.
        deadline: std::time::Duration,
        /// The callback that overran.
        during: &'static str,
        /// Its last log lines, if any.
        log: String,
    },
    /// `proxy_on_vm_start` returned false.
    #[error("plugin '{plugin}' rejected its vm_config{log}")]
    VmStartRejected {
        /// The plugin.
        plugin: String,
        /// Its last log lines, if any.
        log: String,
    },
    /// `proxy_validate_configuration` or `proxy_on_configure` returned false.
    #[error("plugin '{plugin}' rejected its configuration{log}")]
    ConfigureRejected {
        /// The plugin.
        plugin: String,
        /// Its last log lines, if any.
        log: String,
    },
}

/// Links every import of `module` once: the ABI's `env` functions, WASI, and traps for vendor
/// imports (Higress, MOSN, …), which then fail only if called.
pub(super) fn instance_pre(
    engine: &Engine,
    module: &wasmtime::Module,
) -> Result<InstancePre<HostState>, String> {
    let mut linker = Linker::new(engine);
    hostcalls::link(&mut linker).map_err(|e| format!("{e:#}"))?;
    wasi::link(&mut linker).map_err(|e| format!("{e:#}"))?;
    linker
        .define_unknown_imports_as_traps(module)
        .map_err(|e| format!("{e:#}"))?;
    linker.instantiate_pre(module).map_err(|e| format!("{e:#}"))
}

/// The per-store state host calls work on.
pub(super) struct HostState {
    /// The plugin's name, for logs.
    pub(super) plugin: String,
    /// The most time one callback may run, and the same in epoch ticks.
    deadline: std::time::Duration,
    deadline_ticks: u64,
    /// What the plugin was seen doing beyond its streams.
    pub(super) used: Capabilities,
    pub(super) identity: PluginIdentity,
    /// The export that allocates guest memory (`proxy_on_memory_allocate` or `malloc`), looked
    /// up once: host calls that return bytes call it, and a lookup by name per call showed in
    /// profiles. `None` until the instance exists, or when its type is not `(i32) -> i32`.
    pub(super) allocate: Option<TypedFunc<i32, i32>>,
    /// The ABI the module declares (0.1.0 answers a missing header differently).
    pub(super) abi: super::module::AbiVersion,
    pub(super) vm_config: Vec<u8>,
    pub(super) plugin_config: Vec<u8>,
    /// `proxy_on_vm_start` is running (0.1.0's `proxy_get_configuration` then means the VM
    /// configuration).
    pub(super) in_vm_start: bool,
    pub(super) root_context: u32,
    /// The context whose callback is running, and the one host calls act on (changed by
    /// `proxy_set_effective_context`, reset after each callback).
    pub(super) current: u32,
    pub(super) effective: u32,
    /// Live HTTP streams by context id.
    /// (Fx-hashed: looked up on nearly every host call. Boxed: a stream is a few hundred bytes,
    /// which the map would otherwise copy in and out once per stream.)
    pub(super) streams: FxHashMap<u32, Box<StreamState>>,
    /// The callout result, during `proxy_on_http_call_response`.
    pub(super) call_response: Option<CallResponse>,
    /// `proxy_get_status`: the outcome of the last failed callout.
    pub(super) last_status: (u32, String),
    /// `proxy_set_property` values set from the root context.
    pub(super) root_filter_state: FilterValues,
    pub(super) upstreams: Arc<[String]>,
    /// The root context's `on_done` returned false: the VM is shutting down and waits for its
    /// `proxy_done`.
    pub(super) root_done_pending: bool,
    /// Callout tokens handed out and not yet answered, with the bytes each holds (its body,
    /// headers and trailers).
    pub(super) pending_calls: HashMap<u32, usize>,
    /// Open gRPC calls and streams by token (tokens are shared with HTTP callouts).
    pub(super) grpc: HashMap<u32, GrpcHandle>,
    /// During a gRPC callback: the message it delivers (buffer 5).
    pub(super) grpc_message: Option<Vec<u8>>,
    /// During a gRPC metadata callback: map 4 (initial) or 5 (trailing) and its pairs.
    pub(super) grpc_metadata: Option<(i32, Pairs)>,
    next_token: u32,
    pub(super) outbox: Outbox,
    /// Where `on_queue_ready` notifications for queues this VM registers go.
    pub(super) queue_listener: Arc<dyn QueueListener>,
    /// The plugin's latest log lines.
    pub(super) recent_logs: VecDeque<(LogLevel, String)>,
    /// The next context id to hand out (ids are never reused).
    next_context: u32,
    /// The memory cap.
    limits: wasmtime::StoreLimits,
    /// The guest's exported `memory`, found once after instantiation.
    pub(super) memory: Option<wasmtime::Memory>,
}

/// Queue notifications for a VM that is not serving (compile-time check): dropped.
struct NoListener;

impl QueueListener for NoListener {
    fn notify(&self, _queue_id: u32) {}
}

impl StreamState {
    /// The signals the plugin left, for a task (or callback) about `direction`: a local
    /// response, a reset, a resume. A resume of the other direction stays for it while a task
    /// waits on that one; otherwise it is taken too (and not acted on: as Envoy ignores a
    /// continue for a direction that is not stopped). Inlined: after most callbacks there are
    /// none.
    #[inline]
    pub(super) fn take_signals(&mut self, direction: Direction) -> Vec<Signal> {
        if self.signals.is_empty() {
            return Vec::new();
        }
        self.take_some_signals(direction)
    }

    /// [`StreamState::take_signals`] when there are some.
    #[cold]
    #[inline(never)]
    fn take_some_signals(&mut self, direction: Direction) -> Vec<Signal> {
        let other = match direction {
            Direction::Request => Direction::Response,
            Direction::Response => Direction::Request,
        };
        let mut signals = std::mem::take(&mut self.signals);
        let theirs = Signal::Resume(other);
        // (At most one: `signal_stream` keeps one signal of each kind.)
        if self.waiting[other as usize] && signals.contains(&theirs) {
            signals.retain(|signal| *signal != theirs);
            self.signals.push(theirs);
        }
        signals
    }

    /// Map `map` (0–3) for reading: the live one, else (request and response headers) the
    /// final one once the phases are over.
    pub(super) fn map(&self, map: usize) -> Option<&Pairs> {
        self.maps.get(map)?.as_ref().or_else(|| {
            let heads = self.info.final_heads.get()?;
            match map {
                0 => Some(&heads[0]),
                2 => Some(&heads[1]),
                _ => None,
            }
        })
    }
}

impl HostState {
    /// The stream host calls act on now, if the effective context is a stream.
    pub(super) fn stream(&mut self) -> Option<&mut StreamState> {
        self.streams.get_mut(&self.effective).map(Box::as_mut)
    }

    /// A fresh callout token: never 0, unique among pending HTTP and gRPC calls.
    pub(super) fn next_token(&mut self) -> u32 {
        loop {
            self.next_token = self.next_token.wrapping_add(1).max(1);
            if !self.pending_calls.contains_key(&self.next_token)
                && !self.grpc.contains_key(&self.next_token)
            {
                return self.next_token;
            }
        }
    }

    /// Records a log line from the plugin and forwards it to the gateway's log, as one line
    /// (see [`one_line`]).
    pub(super) fn log(&mut self, level: LogLevel, message: String) {
        let message = one_line(message);
        let plugin = self.plugin.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error | LogLevel::Critical => tracing::error!(plugin, "{message}"),
        }
        if self.recent_logs.len() == RECENT_LOG_LINES {
            self.recent_logs.pop_front();
        }
        self.recent_logs.push_back((level, message));
    }

    /// The latest warning-or-worse log lines, formatted for an error message.
    fn explain(&self) -> String {
        let lines: Vec<&str> = self
            .recent_logs
            .iter()
            .filter(|(level, _)| *level >= LogLevel::Warn)
            .map(|(_, line)| line.as_str())
            .collect();
        if lines.is_empty() {
            String::new()
        } else {
            format!(": {}", lines.join("; "))
        }
    }
}

/// The epoch ticks a callback with `deadline` gets: one more than the deadline spans, since the
/// first tick may come right after the callback starts (so it runs at least `deadline`, at most
/// one tick more).
fn deadline_ticks(deadline: std::time::Duration) -> u64 {
    let tick = super::EPOCH_TICK.as_millis();
    u64::try_from(deadline.as_millis().div_ceil(tick)).unwrap_or(u64::MAX / 2) + 1
}

/// A started plugin VM with its root context.
pub struct Vm {
    store: Store<HostState>,
    instance: Instance,
    exports: Exports,
    generation: u64,
}

impl Vm {
    /// Instantiates `module` and runs its start-up: entry point, root context, VM start and
    /// configuration.
    pub fn start(
        engine: &Engine,
        module: &PluginModule,
        plugin: PluginConfig,
    ) -> Result<Vm, VmError> {
        Vm::start_serving(engine, module, plugin, Arc::new(NoListener))
    }

    /// [`Vm::start`] for a VM that serves: `on_queue_ready` notifications for the queues it
    /// registers (already while it starts) go to `queue_listener`.
    pub fn start_serving(
        engine: &Engine,
        module: &PluginModule,
        plugin: PluginConfig,
        queue_listener: Arc<dyn QueueListener>,
    ) -> Result<Vm, VmError> {
        let name = plugin.name.clone();
        let instantiate_error = |message: String| VmError::Instantiate {
            plugin: name.clone(),
            message,
        };
        let root_context = 1;
        let state = HostState {
            plugin: plugin.name,
            deadline: plugin.deadline,
            deadline_ticks: deadline_ticks(plugin.deadline),
            identity: plugin.identity,
            allocate: None,
            abi: module.info.abi,
            vm_config: plugin.vm_config,
            plugin_config: plugin.config,
            in_vm_start: false,
            root_context,
            current: root_context,
            effective: root_context,
            streams: FxHashMap::default(),
            call_response: None,
            last_status: (0, String::new()),
            root_filter_state: FilterValues::default(),
            used: Capabilities::default(),
            upstreams: plugin.upstreams,
            root_done_pending: false,
            pending_calls: HashMap::new(),
            grpc: HashMap::new(),
            grpc_message: None,
            grpc_metadata: None,
            next_token: 0,
            outbox: Outbox::default(),
            queue_listener,
            recent_logs: VecDeque::new(),
            next_context: root_context + 1,
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(MEMORY_LIMIT_BYTES)
                .instances(1)
                .build(),
            memory: None,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        // Instantiation runs the start function (if any) under the same deadline as callbacks.
        store.set_epoch_deadline(store.data().deadline_ticks);
        let instance = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| instantiate_error(format!("{e:#}")))?;
        store.data_mut().memory = instance.get_memory(&mut store, "memory");
        store.data_mut().allocate = instance
            .get_typed_func(&mut store, module.info.allocator.export_name())
            .ok();
        let mut exports = Exports::lookup(&mut store, &instance)?;
        exports.keep_declared(module.info.callbacks);
        static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut vm = Vm {
            store,
            instance,
            exports,
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        match module.info.entry {
            EntryPoint::Initialize { with_main } => {
                vm.call::<(), ()>("_initialize", ())?;
                if with_main {
                    vm.call::<(i32, i32), i32>("main", (0, 0))?;
                }
            }
            EntryPoint::Start => {
                vm.call::<(), ()>("_start", ())?;
            }
            EntryPoint::None => {}
        }
        let root = root_context as i32;
        vm.call::<(i32, i32), ()>("proxy_on_context_create", (root, 0))?;
        let vm_config_len = vm.store.data().vm_config.len() as i32;
        vm.store.data_mut().in_vm_start = true;
        let started = vm.call::<(i32, i32), i32>("proxy_on_vm_start", (root, vm_config_len));
        vm.store.data_mut().in_vm_start = false;
        if started? == Some(0) {
            return Err(VmError::VmStartRejected {
                log: vm.store.data().explain(),
                plugin: vm.store.data().plugin.clone(),
            });
        }
        let config_len = vm.store.data().plugin_config.len() as i32;
        // As Envoy's host: a module that exports it (the C++ SDK's do) validates the
        // configuration before it is configured with it.
        let validated =
            vm.call::<(i32, i32), i32>("proxy_validate_configuration", (root, config_len));
        if validated? == Some(0)
            || vm.call::<(i32, i32), i32>("proxy_on_configure", (root, config_len))? == Some(0)
        {
            return Err(VmError::ConfigureRejected {
                log: vm.store.data().explain(),
                plugin: vm.store.data().plugin.clone(),
            });
        }
        Ok(vm)
    }

    /// Unique to this VM in the process: a stream opened on a replica that has since been
    /// replaced (after a trap) must not be continued on its successor, which never saw it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        &self.store.data().plugin
    }

    /// What the plugin has done so far beyond its streams (calls out, shared state, ...).
    pub fn capabilities_used(&self) -> Capabilities {
        self.store.data().used
    }

    /// The stream callbacks the plugin has: the host skips the phases it has none for (and
    /// streams bodies past it).
    pub fn wants(&self) -> Wants {
        let e = &self.exports;
        let has = |headers: &HeadersCallback| !matches!(headers, HeadersCallback::Absent);
        Wants {
            headers: (has(&e.request_headers), has(&e.response_headers)),
            bodies: (
                e.request_body.is_some() || e.request_trailers.is_some(),
                e.response_body.is_some() || e.response_trailers.is_some(),
            ),
        }
    }

    /// Creates an HTTP stream context under the root context and returns its id.
    pub fn create_stream(&mut self, info: Arc<StreamInfo>) -> Result<u32, VmError> {
        let state = self.store.data_mut();
        let id = state.next_context;
        state.next_context += 1;
        state.streams.insert(
            id,
            Box::new(StreamState {
                maps: Default::default(),
                bodies: Default::default(),
                signals: Vec::new(),
                wake: [None, None],
                waiting: [false, false],
                info,
                done_pending: false,
            }),
        );
        let root = state.root_context as i32;
        invoke(
            &mut self.store,
            id,
            self.exports.context_create.as_ref(),
            (id as i32, root),
            "proxy_on_context_create",
        )?;
        Ok(id)
    }

    /// Whether stream `context` is still open on this VM.
    pub fn has_stream(&self, context: u32) -> bool {
        self.store.data().streams.contains_key(&context)
    }

    /// Installs map `map` of stream `context` (the plugin may read and change it until taken):
    /// a paused stream's plugin keeps its map.
    pub fn set_map(&mut self, context: u32, map: MapType, pairs: Pairs) {
        if let Some(stream) = self.store.data_mut().streams.get_mut(&context) {
            stream.maps[map as usize] = Some(pairs);
        }
    }

    /// Takes map `map` of stream `context` back.
    pub fn take_map(&mut self, context: u32, map: MapType) -> Option<Pairs> {
        let stream = self.store.data_mut().streams.get_mut(&context)?;
        stream.maps[map as usize].take()
    }

    /// Runs the callback of map `map` of stream `context` (`proxy_on_request_headers`,
    /// `proxy_on_response_trailers`, …) with `pairs` installed as that map for the call, then
    /// takes the map, as the plugin left it, back into `pairs` (also when the callback failed).
    /// Returns the raw result (0 = continue, anything else holds the stream) and the signals
    /// the plugin left.
    pub fn map_callback(
        &mut self,
        context: u32,
        map: MapType,
        pairs: &mut Pairs,
        end_of_stream: bool,
    ) -> Result<(i32, Vec<Signal>), VmError> {
        let count = pairs.len() as i32;
        self.set_map(context, map, std::mem::take(pairs));
        let result = self.call_map_callback(context, map, count, end_of_stream);
        let mut signals = Vec::new();
        if let Some(stream) = self.store.data_mut().streams.get_mut(&context) {
            if let Some(changed) = stream.maps[map as usize].take() {
                *pairs = changed;
            }
            signals = stream.take_signals(map.direction());
        }
        Ok((result?.unwrap_or(0), signals))
    }

    /// Appends `chunk` to the body buffer of `direction` and returns its length. With no buffer
    /// yet (the plugin is not buffering), `chunk` becomes the buffer, lent rather than copied:
    /// a chunk passes a chain that leaves it as it is without a copy.
    pub fn append_body(
        &mut self,
        context: u32,
        direction: Direction,
        chunk: bytes::Bytes,
    ) -> usize {
        let Some(stream) = self.store.data_mut().streams.get_mut(&context) else {
            return 0;
        };
        let buffer = &mut stream.bodies[direction as usize];
        match buffer {
            Some(buffer) => {
                let buffer = buffer.to_mut();
                buffer.extend_from_slice(&chunk);
                buffer.len()
            }
            None => buffer.insert(BodyBuffer::lent(chunk)).as_slice().len(),
        }
    }

    /// Takes the body buffer of `direction` back.
    pub fn take_body(&mut self, context: u32, direction: Direction) -> bytes::Bytes {
        self.store
            .data_mut()
            .streams
            .get_mut(&context)
            .and_then(|s| s.bodies[direction as usize].take())
            .map(BodyBuffer::into_bytes)
            .unwrap_or_default()
    }

    /// The signals the plugin left for `direction` of stream `context` (after a callback about
    /// it), oldest first (see [`StreamState::take_signals`]).
    pub fn take_signals(&mut self, context: u32, direction: Direction) -> Vec<Signal> {
        self.store
            .data_mut()
            .streams
            .get_mut(&context)
            .map(|s| s.take_signals(direction))
            .unwrap_or_default()
    }

    /// The same for a task that waited on `direction`: it no longer counts as waiting, until
    /// it asks for the [`Vm::waker`] again.
    pub fn heard(&mut self, context: u32, direction: Direction) -> Vec<Signal> {
        let Some(stream) = self.store.data_mut().streams.get_mut(&context) else {
            return Vec::new();
        };
        stream.waiting[direction as usize] = false;
        stream.take_signals(direction)
    }

    /// What a task waiting on `direction` of stream `context` waits for; the stream then counts
    /// as waiting on it until the task has [`Vm::heard`] what the plugin asked.
    pub fn waker(&mut self, context: u32, direction: Direction) -> Option<Arc<Notify>> {
        let stream = self.store.data_mut().streams.get_mut(&context)?;
        stream.waiting[direction as usize] = true;
        let wake = &mut stream.wake[direction as usize];
        Some(wake.get_or_insert_with(Default::default).clone())
    }

    /// Wakes every stream waiting on this VM (it is being replaced: they will not be resumed).
    pub fn wake_all(&self) {
        for wake in self
            .store
            .data()
            .streams
            .values()
            .flat_map(|s| s.wake.iter().flatten())
        {
            wake.notify_one();
        }
    }

    /// Whether the plugin started work during the last calls (most calls start none).
    #[inline]
    pub fn has_outbox(&self) -> bool {
        let outbox = &self.store.data().outbox;
        !(outbox.callouts.is_empty()
            && outbox.grpc_calls.is_empty()
            && outbox.tick_period.is_none()
            && outbox.finished.is_empty()
            && !outbox.root_finished)
    }

    /// Work the plugin started during the last calls.
    pub fn take_outbox(&mut self) -> Outbox {
        std::mem::take(&mut self.store.data_mut().outbox)
    }

    /// `proxy_on_request_body` / `proxy_on_response_body` over the body buffer (`size` is its
    /// whole length: cumulative while the plugin buffers).
    pub fn on_body(
        &mut self,
        context: u32,
        direction: Direction,
        size: usize,
        end_of_stream: bool,
    ) -> Result<i32, VmError> {
        let (callback, during) = match direction {
            Direction::Request => (&self.exports.request_body, "proxy_on_request_body"),
            Direction::Response => (&self.exports.response_body, "proxy_on_response_body"),
        };
        let params = (context as i32, size as i32, i32::from(end_of_stream));
        Ok(invoke(&mut self.store, context, callback.as_ref(), params, during)?.unwrap_or(0))
    }

    /// Ends a stream as Envoy does: `proxy_on_done`, then `proxy_on_log` and `proxy_on_delete`
    /// unless `on_done` returned false (then they wait for the plugin's `proxy_done`).
    pub fn end_stream(&mut self, context: u32) -> Result<(), VmError> {
        if !self.has_stream(context) {
            return Ok(());
        }
        let done = self.exports.stream_done.as_ref();
        let finished = invoke(
            &mut self.store,
            context,
            done,
            context as i32,
            "proxy_on_done",
        )?;
        if finished == Some(0) {
            if let Some(stream) = self.store.data_mut().streams.get_mut(&context) {
                stream.done_pending = true;
            }
            return Ok(());
        }
        self.log_and_delete(context)
    }

    /// `proxy_on_log` and `proxy_on_delete` for a stream whose `on_done` returned false and
    /// that has since called `proxy_done`, then forgets the stream.
    pub fn finish_stream(&mut self, context: u32) -> Result<(), VmError> {
        if !self.has_stream(context) {
            return Ok(());
        }
        self.log_and_delete(context)
    }

    /// `proxy_on_log` and `proxy_on_delete` for open stream `context`, then forgets it.
    fn log_and_delete(&mut self, context: u32) -> Result<(), VmError> {
        let (log, delete) = (self.exports.log.as_ref(), self.exports.delete.as_ref());
        let id = context as i32;
        let store = &mut self.store;
        let result = invoke(store, context, log, id, "proxy_on_log")
            .and_then(|_| invoke(store, context, delete, id, "proxy_on_delete"));
        self.store.data_mut().streams.remove(&context);
        result.map(|_| ())
    }

    /// Starts shutting the VM down as Envoy does when a plugin is removed or the server stops:
    /// `proxy_on_done` on the root context, then `proxy_on_delete`. `Ok(false)` when `on_done`
    /// returned false: the plugin has work to finish (a flush by callout) and calls `proxy_done`
    /// when it is over (see [`Outbox::root_finished`]); call [`Vm::delete_root`] then.
    pub fn begin_shutdown(&mut self) -> Result<bool, VmError> {
        let root = self.store.data().root_context;
        let done = self.exports.done.as_ref();
        if invoke(&mut self.store, root, done, root as i32, "proxy_on_done")? == Some(0) {
            self.store.data_mut().root_done_pending = true;
            return Ok(false);
        }
        self.delete_root().map(|()| true)
    }

    /// `proxy_on_delete` on the root context: the last callback of a VM.
    pub fn delete_root(&mut self) -> Result<(), VmError> {
        let root = self.store.data().root_context;
        self.store.data_mut().root_done_pending = false;
        let delete = self.exports.delete.as_ref();
        invoke(
            &mut self.store,
            root,
            delete,
            root as i32,
            "proxy_on_delete",
        )
        .map(|_| ())
    }

    /// `proxy_on_tick` on the root context.
    pub fn on_tick(&mut self) -> Result<(), VmError> {
        let root = self.store.data().root_context;
        let tick = self.exports.tick.as_ref();
        invoke(&mut self.store, root, tick, root as i32, "proxy_on_tick").map(|_| ())
    }

    /// `proxy_on_queue_ready` on the root context.
    pub fn on_queue_ready(&mut self, queue_id: u32) -> Result<(), VmError> {
        let root = self.store.data().root_context;
        invoke(
            &mut self.store,
            root,
            self.exports.queue_ready.as_ref(),
            (root as i32, queue_id as i32),
            "proxy_on_queue_ready",
        )
        .map(|_| ())
    }

    /// Delivers the outcome of callout `token` to the root context: a response, or `Err` with
    /// the status `proxy_get_status` reports (the callback then sees no headers, as in Envoy).
    pub fn on_http_call_response(
        &mut self,
        token: u32,
        outcome: Result<CallResponse, (u32, String)>,
    ) -> Result<(), VmError> {
        if self.store.data_mut().pending_calls.remove(&token).is_none() {
            return Ok(());
        }
        let root = self.store.data().root_context;
        let params = match outcome {
            Ok(response) => {
                let params = (
                    root as i32,
                    token as i32,
                    response.headers.len() as i32,
                    response.body.len() as i32,
                    response.trailers.len() as i32,
                );
                self.store.data_mut().call_response = Some(response);
                params
            }
            Err(status) => {
                self.store.data_mut().last_status = status;
                (root as i32, token as i32, 0, 0, 0)
            }
        };
        let result = invoke(
            &mut self.store,
            root,
            self.exports.http_call_response.as_ref(),
            params,
            "proxy_on_http_call_response",
        );
        self.store.data_mut().call_response = None;
        result.map(|_| ())
    }

    /// Delivers an event of gRPC call or stream `token` to the root context, as Envoy does: a
    /// unary call gets its one message (`proxy_on_grpc_receive`) or, failing, its close with the
    /// status (`proxy_on_grpc_close`, `proxy_get_status` then gives the message) and never its
    /// metadata; a stream gets every event. Events of a call the plugin cancelled are dropped.
    pub fn on_grpc_event(&mut self, token: u32, event: GrpcEvent) -> Result<(), VmError> {
        let state = self.store.data_mut();
        let Some(handle) = state.grpc.get(&token) else {
            return Ok(());
        };
        let unary = handle.unary;
        let root = state.root_context;
        let (callback, during, argument) = match event {
            GrpcEvent::InitialMetadata(_) | GrpcEvent::TrailingMetadata(_) if unary => {
                return Ok(());
            }
            GrpcEvent::InitialMetadata(pairs) => {
                let count = pairs.len() as i32;
                state.grpc_metadata = Some((4, pairs));
                let callback = self.exports.grpc_initial_metadata.as_ref();
                (callback, "proxy_on_grpc_receive_initial_metadata", count)
            }
            GrpcEvent::TrailingMetadata(pairs) => {
                let count = pairs.len() as i32;
                state.grpc_metadata = Some((5, pairs));
                let callback = self.exports.grpc_trailing_metadata.as_ref();
                (callback, "proxy_on_grpc_receive_trailing_metadata", count)
            }
            GrpcEvent::Message(message) => {
                if unary {
                    state.grpc.remove(&token);
                }
                let size = message.len() as i32;
                state.grpc_message = Some(message);
                (
                    self.exports.grpc_receive.as_ref(),
                    "proxy_on_grpc_receive",
                    size,
                )
            }
            GrpcEvent::Close(code, message) => {
                state.grpc.remove(&token);
                // A unary call that ended well without its message did not succeed.
                let (code, message) = if unary && code == super::grpc::status::OK {
                    let why = "the upstream sent no response message";
                    (super::grpc::status::INTERNAL, why.to_string())
                } else {
                    (code, message)
                };
                state.last_status = (code, message);
                (
                    self.exports.grpc_close.as_ref(),
                    "proxy_on_grpc_close",
                    code as i32,
                )
            }
        };
        let result = invoke(
            &mut self.store,
            root,
            callback,
            (root as i32, token as i32, argument),
            during,
        );
        let state = self.store.data_mut();
        state.grpc_message = None;
        state.grpc_metadata = None;
        result.map(|_| ())
    }

    /// The plugin's latest log lines (newest last).
    pub fn recent_logs(&self) -> impl Iterator<Item = &(LogLevel, String)> {
        self.store.data().recent_logs.iter()
    }

    /// The callback of `map` over a map of `count` entries.
    fn call_map_callback(
        &mut self,
        context: u32,
        map: MapType,
        count: i32,
        end_of_stream: bool,
    ) -> Result<Option<i32>, VmError> {
        let store = &mut self.store;
        let exports = &self.exports;
        let (headers, during) = match map {
            MapType::RequestHeaders => (&exports.request_headers, "proxy_on_request_headers"),
            MapType::ResponseHeaders => (&exports.response_headers, "proxy_on_response_headers"),
            MapType::RequestTrailers | MapType::ResponseTrailers => {
                let (trailers, during) = if map == MapType::RequestTrailers {
                    (&exports.request_trailers, "proxy_on_request_trailers")
                } else {
                    (&exports.response_trailers, "proxy_on_response_trailers")
                };
                let params = (context as i32, count);
                return invoke(store, context, trailers.as_ref(), params, during);
            }
        };
        match headers {
            HeadersCallback::Absent => Ok(None),
            HeadersCallback::WithEndOfStream(f) => {
                let params = (context as i32, count, i32::from(end_of_stream));
                invoke(store, context, Some(f), params, during)
            }
            HeadersCallback::WithoutEndOfStream(f) => {
                invoke(store, context, Some(f), (context as i32, count), during)
            }
        }
    }

    /// Calls export `name` if the module has it (every callback is optional); `Ok(None)` when
    /// it does not. Used at start-up, on the root context.
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &'static str,
        params: P,
    ) -> Result<Option<R>, VmError> {
        let func = lookup::<P, R>(&mut self.store, &self.instance, name)?;
        let root = self.store.data().root_context;
        invoke(&mut self.store, root, func.as_ref(), params, name)
    }
}

/// Calls `func` (if the module has it) for `context` under the callback deadline; host calls act
/// on `context` unless the plugin switches the effective context. A free function over the store
/// so callers can pass an export borrowed from `Vm::exports` (cloning a `TypedFunc` per call
/// showed up as a sixth of the CPU in the filter benchmark).
fn invoke<P: WasmParams, R: WasmResults>(
    store: &mut Store<HostState>,
    context: u32,
    func: Option<&TypedFunc<P, R>>,
    params: P,
    during: &'static str,
) -> Result<Option<R>, VmError> {
    let Some(func) = func else {
        return Ok(None);
    };
    let state = store.data_mut();
    state.current = context;
    state.effective = context;
    let ticks = state.deadline_ticks;
    store.set_epoch_deadline(ticks);
    let result = func.call(&mut *store, params);
    let state = store.data_mut();
    state.effective = state.root_context;
    state.current = state.root_context;
    result.map(Some).map_err(|e| trapped(store, during, e))
}

/// The most bytes of one plugin message that are logged (a message may be as large as the
/// plugin's memory, and the latest are kept for error messages).
pub(super) const MAX_LOG_BYTES: usize = 64 * 1024;

/// A plugin's message of `len` bytes, of which `kept` holds the first ones: at most
/// [`MAX_LOG_BYTES`] of them, and a note of the length when there were more.
pub(super) fn plugin_text(kept: &[u8], len: usize) -> String {
    let mut text = String::from_utf8_lossy(&kept[..kept.len().min(MAX_LOG_BYTES)]).into_owned();
    if len > MAX_LOG_BYTES {
        text.push_str(&format!(" [{len} bytes, the first {MAX_LOG_BYTES} logged]"));
    }
    text
}

/// `message` with its control characters escaped (a newline as `\n`, an escape as `\u{1b}`):
/// a plugin's message stays one line of the gateway's text log, so that it cannot forge lines
/// of the gateway's own nor drive the terminal that shows them. Nothing is dropped.
fn one_line(message: String) -> String {
    if !message.chars().any(char::is_control) {
        return message;
    }
    let mut line = String::with_capacity(message.len() + 8);
    for c in message.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

/// The error of a callback that trapped (kept out of [`invoke`], which runs for every callback).
#[cold]
#[inline(never)]
fn trapped(store: &Store<HostState>, during: &'static str, error: wasmtime::Error) -> VmError {
    if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return VmError::Deadline {
            plugin: store.data().plugin.clone(),
            deadline: store.data().deadline,
            during,
            log: one_line(store.data().explain()),
        };
    }
    VmError::Trap {
        plugin: store.data().plugin.clone(),
        during,
        // One line, as a plugin's messages are: the backtrace names the module's functions,
        // and those names are the module's to choose.
        message: one_line(format!("{error:#}{}", store.data().explain())),
    }
}

/// Export `name` as a typed function, `None` when the module does not export it.
fn lookup<P: WasmParams, R: WasmResults>(
    store: &mut Store<HostState>,
    instance: &Instance,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>, VmError> {
    let Some(func) = instance.get_func(&mut *store, name) else {
        return Ok(None);
    };
    func.typed(&*store)
        .map(Some)
        .map_err(|e| VmError::Instantiate {
            plugin: store.data().plugin.clone(),
            message: format!("export {name} has an unexpected type: {e}"),
        })
}

/// The stream callbacks a plugin has, per direction (request, response): those its module
/// exports, less those it declares it does not implement.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wants {
    /// Request / response headers.
    pub headers: (bool, bool),
    /// Request / response body or trailers.
    pub bodies: (bool, bool),
}

/// A headers callback in the shape the module exports it.
enum HeadersCallback {
    /// Not exported: continue.
    Absent,
    /// `(context, headers, end_of_stream)`, ABI 0.2.x.
    WithEndOfStream(TypedFunc<(i32, i32, i32), i32>),
    /// `(context, headers)`: the 0.1.0 text's shape, still found in old modules.
    WithoutEndOfStream(TypedFunc<(i32, i32), i32>),
}

impl HeadersCallback {
    /// The export's own type decides the shape, not the ABI marker (old TinyGo and Emscripten
    /// modules marked 0.1.0 export the three-parameter form).
    fn lookup(
        store: &mut Store<HostState>,
        instance: &Instance,
        name: &str,
    ) -> Result<HeadersCallback, VmError> {
        let Some(func) = instance.get_func(&mut *store, name) else {
            return Ok(HeadersCallback::Absent);
        };
        if func.ty(&*store).params().len() == 3 {
            lookup(store, instance, name)
                .map(|f| f.map_or(HeadersCallback::Absent, HeadersCallback::WithEndOfStream))
        } else {
            lookup(store, instance, name)
                .map(|f| f.map_or(HeadersCallback::Absent, HeadersCallback::WithoutEndOfStream))
        }
    }
}

/// `proxy_on_http_call_response(root, token, headers, body_size, trailers)`.
type HttpCallResponseCallback = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The gRPC callbacks: `(root, token, elements or size or status)`.
type GrpcCallback = TypedFunc<(i32, i32, i32), ()>;

/// The callbacks the host calls after start-up, looked up once per VM: finding an export by
/// name and checking its type on every call showed up as a tenth of the CPU in the filter
/// benchmark. (`TypedFunc` is a cheap handle; callers clone it to call it with `&mut self`.)
struct Exports {
    context_create: Option<TypedFunc<(i32, i32), ()>>,
    request_headers: HeadersCallback,
    request_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    request_trailers: Option<TypedFunc<(i32, i32), i32>>,
    response_headers: HeadersCallback,
    response_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    response_trailers: Option<TypedFunc<(i32, i32), i32>>,
    /// `proxy_on_done` for the root context (at shutdown), always called when exported.
    done: Option<TypedFunc<i32, i32>>,
    /// `proxy_on_done` for streams: absent when the module declares it does not implement it.
    stream_done: Option<TypedFunc<i32, i32>>,
    log: Option<TypedFunc<i32, ()>>,
    delete: Option<TypedFunc<i32, ()>>,
    tick: Option<TypedFunc<i32, ()>>,
    queue_ready: Option<TypedFunc<(i32, i32), ()>>,
    http_call_response: Option<HttpCallResponseCallback>,
    grpc_initial_metadata: Option<GrpcCallback>,
    grpc_receive: Option<GrpcCallback>,
    grpc_trailing_metadata: Option<GrpcCallback>,
    grpc_close: Option<GrpcCallback>,
}

impl Exports {
    fn lookup(store: &mut Store<HostState>, instance: &Instance) -> Result<Exports, VmError> {
        let done = lookup(store, instance, "proxy_on_done")?;
        Ok(Exports {
            context_create: lookup(store, instance, "proxy_on_context_create")?,
            request_headers: HeadersCallback::lookup(store, instance, "proxy_on_request_headers")?,
            request_body: lookup(store, instance, "proxy_on_request_body")?,
            request_trailers: lookup(store, instance, "proxy_on_request_trailers")?,
            response_headers: HeadersCallback::lookup(
                store,
                instance,
                "proxy_on_response_headers",
            )?,
            response_body: lookup(store, instance, "proxy_on_response_body")?,
            response_trailers: lookup(store, instance, "proxy_on_response_trailers")?,
            stream_done: done.clone(),
            done,
            log: lookup(store, instance, "proxy_on_log")?,
            delete: lookup(store, instance, "proxy_on_delete")?,
            tick: lookup(store, instance, "proxy_on_tick")?,
            queue_ready: lookup(store, instance, "proxy_on_queue_ready")?,
            http_call_response: lookup(store, instance, "proxy_on_http_call_response")?,
            grpc_initial_metadata: lookup(
                store,
                instance,
                "proxy_on_grpc_receive_initial_metadata",
            )?,
            grpc_receive: lookup(store, instance, "proxy_on_grpc_receive")?,
            grpc_trailing_metadata: lookup(
                store,
                instance,
                "proxy_on_grpc_receive_trailing_metadata",
            )?,
            grpc_close: lookup(store, instance, "proxy_on_grpc_close")?,
        })
    }

    /// Forgets the stream callbacks the module declared it does not implement: the host never
    /// calls them.
    fn keep_declared(&mut self, callbacks: StreamCallbacks) {
        use StreamCallback as C;
        let undeclared = |callback| !callbacks.contains(callback);
        if undeclared(C::RequestHeaders) {
            self.request_headers = HeadersCallback::Absent;
        }
        if undeclared(C::RequestBody) {
            self.request_body = None;
        }
        if undeclared(C::RequestTrailers) {
            self.request_trailers = None;
        }
        if undeclared(C::ResponseHeaders) {
            self.response_headers = HeadersCallback::Absent;
        }
        if undeclared(C::ResponseBody) {
            self.response_body = None;
        }
        if undeclared(C::ResponseTrailers) {
            self.response_trailers = None;
        }
        if undeclared(C::Done) {
            self.stream_done = None;
        }
        if undeclared(C::Log) {
            self.log = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_LOG_BYTES, one_line, plugin_text};

    #[test]
    fn a_plugin_message_over_the_limit_is_cut_with_a_note_of_its_length() {
        assert_eq!(plugin_text(b"short", 5), "short");
        let long = vec![b'a'; MAX_LOG_BYTES + 1];
        let text = plugin_text(&long, 1 << 30);
        assert!(text.starts_with(&"a".repeat(MAX_LOG_BYTES)));
        assert_eq!(
            &text[MAX_LOG_BYTES..],
            " [1073741824 bytes, the first 65536 logged]"
        );
    }

    #[test]
    fn a_plugin_message_is_one_line_with_its_control_characters_escaped() {
        assert_eq!(one_line(String::from("plain é ✓")), "plain é ✓");
        assert_eq!(
            one_line(String::from(
                "a\nthread 'main' panicked at x\r\t\u{1b}[31m\0"
            )),
            "a\\nthread 'main' panicked at x\\r\\t\\u{1b}[31m\\u{0}"
        );
    }
}

//! One VM replica of a plugin: a wasmtime store and instance with every ABI import linked, started
//! the way Envoy starts it (entry point, root context, `proxy_on_vm_start`, `proxy_on_configure`).
//! A plugin that rejects its VM or plugin configuration is refused with its own log lines quoted,
//! so `compile` and `serve` can say why.

use super::abi::LogLevel;
use super::http::Pairs;
use super::module::{EntryPoint, PluginModule};
use super::{hostcalls, wasi};
use std::collections::VecDeque;
use wasmtime::{Engine, Instance, Linker, Store, TypedFunc, WasmParams, WasmResults};

/// How many of a plugin's latest log lines are kept to explain a failure.
const RECENT_LOG_LINES: usize = 16;

/// The most time one callback may run (Envoy sets none; a filter that needs more than this per
/// callback is broken, and a loop must not hold a worker thread).
pub const CALLBACK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// The most linear memory one VM may have (a filter's working set is usually a few MiB).
pub const MEMORY_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// What a stream callback asks the host to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Go on to the next filter.
    Continue,
    /// Stop here until the plugin resumes the stream (any non-zero result, as in Envoy).
    Pause,
    /// Answer with this response instead (`proxy_send_local_response` during the callback).
    Respond(LocalResponse),
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

/// What the host needs to start a plugin.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The plugin's name (from the spec), used in logs and errors.
    pub name: String,
    /// `vm_config`, delivered as buffer 6 to `proxy_on_vm_start`.
    pub vm_config: Vec<u8>,
    /// `config`, delivered as buffer 7 to `proxy_on_configure`.
    pub config: Vec<u8>,
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
    /// `proxy_on_vm_start` returned false.
    #[error("plugin '{plugin}' rejected its vm_config{log}")]
    VmStartRejected {
        /// The plugin.
        plugin: String,
        /// Its last log lines, if any.
        log: String,
    },
    /// `proxy_on_configure` returned false.
    #[error("plugin '{plugin}' rejected its configuration{log}")]
    ConfigureRejected {
        /// The plugin.
        plugin: String,
        /// Its last log lines, if any.
        log: String,
    },
}

/// The per-store state host calls work on.
pub(super) struct HostState {
    /// The plugin's name, for logs.
    pub(super) plugin: String,
    /// The export used to allocate guest memory.
    pub(super) allocator: &'static str,
    pub(super) vm_config: Vec<u8>,
    pub(super) plugin_config: Vec<u8>,
    /// `proxy_on_vm_start` is running (0.1.0's `proxy_get_configuration` then means the VM
    /// configuration).
    pub(super) in_vm_start: bool,
    /// Context ids the guest knows (root and streams).
    pub(super) contexts: Vec<u32>,
    /// The plugin's latest log lines.
    pub(super) recent_logs: VecDeque<(LogLevel, String)>,
    /// The header maps of the stream callback in progress, by map type (request headers,
    /// request trailers, response headers, response trailers); `None` outside that window.
    pub(super) maps: [Option<Pairs>; 4],
    /// The next context id to hand out (ids are never reused).
    next_context: u32,
    /// The memory cap.
    limits: wasmtime::StoreLimits,
    /// The guest's exported `memory`, found once after instantiation.
    pub(super) memory: Option<wasmtime::Memory>,
    /// A local response the plugin asked for in the callback in progress.
    pub(super) local_response: Option<LocalResponse>,
}

impl HostState {
    /// Records a log line from the plugin and forwards it to the gateway's log.
    pub(super) fn log(&mut self, level: LogLevel, message: String) {
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

fn deadline_ticks() -> u64 {
    (CALLBACK_DEADLINE.as_millis() / super::EPOCH_TICK.as_millis()).max(1) as u64
}

/// A started plugin VM with its root context.
pub struct Vm {
    store: Store<HostState>,
    instance: Instance,
    root_context: u32,
    streams: StreamExports,
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
        let name = plugin.name.clone();
        let instantiate_error = |message: String| VmError::Instantiate {
            plugin: name.clone(),
            message,
        };
        let mut linker = Linker::new(engine);
        hostcalls::link(&mut linker).map_err(|e| instantiate_error(format!("{e:#}")))?;
        wasi::link(&mut linker).map_err(|e| instantiate_error(format!("{e:#}")))?;
        // Vendor host calls (Higress, MOSN, …) trap if called instead of failing to load.
        linker
            .define_unknown_imports_as_traps(&module.module)
            .map_err(|e| instantiate_error(format!("{e:#}")))?;
        let state = HostState {
            plugin: plugin.name,
            allocator: module.info.allocator.export_name(),
            vm_config: plugin.vm_config,
            plugin_config: plugin.config,
            in_vm_start: false,
            contexts: Vec::new(),
            recent_logs: VecDeque::new(),
            maps: Default::default(),
            next_context: 2,
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(MEMORY_LIMIT_BYTES)
                .instances(1)
                .build(),
            memory: None,
            local_response: None,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        // Instantiation runs the start function (if any) under the same deadline as callbacks.
        store.set_epoch_deadline(deadline_ticks());
        let instance = linker
            .instantiate(&mut store, &module.module)
            .map_err(|e| instantiate_error(format!("{e:#}")))?;
        store.data_mut().memory = instance.get_memory(&mut store, "memory");
        let streams = StreamExports::lookup(&mut store, &instance)?;
        static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut vm = Vm {
            store,
            instance,
            root_context: 1,
            streams,
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
        let root = vm.root_context as i32;
        vm.store.data_mut().contexts.push(vm.root_context);
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
        if vm.call::<(i32, i32), i32>("proxy_on_configure", (root, config_len))? == Some(0) {
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

    /// Creates an HTTP stream context under the root context and returns its id.
    pub fn create_stream(&mut self) -> Result<u32, VmError> {
        let state = self.store.data_mut();
        let id = state.next_context;
        state.next_context += 1;
        state.contexts.push(id);
        let root = self.root_context as i32;
        let create = self.streams.context_create.as_ref();
        invoke(
            &mut self.store,
            create,
            (id as i32, root),
            "proxy_on_context_create",
        )?;
        Ok(id)
    }

    /// Runs `proxy_on_request_headers` with `headers` as the request header map, which the
    /// plugin may change.
    pub fn on_request_headers(
        &mut self,
        context: u32,
        headers: &mut Pairs,
        end_of_stream: bool,
    ) -> Result<Action, VmError> {
        let callback = &self.streams.request_headers;
        headers_callback(
            &mut self.store,
            callback,
            "proxy_on_request_headers",
            0,
            context,
            headers,
            end_of_stream,
        )
    }

    /// Runs `proxy_on_response_headers` with `headers` as the response header map.
    pub fn on_response_headers(
        &mut self,
        context: u32,
        headers: &mut Pairs,
        end_of_stream: bool,
    ) -> Result<Action, VmError> {
        let callback = &self.streams.response_headers;
        headers_callback(
            &mut self.store,
            callback,
            "proxy_on_response_headers",
            2,
            context,
            headers,
            end_of_stream,
        )
    }

    /// Ends a stream as Envoy does: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub fn end_stream(&mut self, context: u32) -> Result<(), VmError> {
        let id = context as i32;
        let streams = &self.streams;
        let store = &mut self.store;
        let result = invoke(store, streams.done.as_ref(), id, "proxy_on_done")
            .and_then(|_| invoke(store, streams.log.as_ref(), id, "proxy_on_log"))
            .and_then(|_| invoke(store, streams.delete.as_ref(), id, "proxy_on_delete"));
        store.data_mut().contexts.retain(|c| *c != context);
        result.map(|_| ())
    }

    /// The plugin's latest log lines (newest last).
    pub fn recent_logs(&self) -> impl Iterator<Item = &(LogLevel, String)> {
        self.store.data().recent_logs.iter()
    }

    /// Calls export `name` if the module has it (every callback is optional); `Ok(None)` when
    /// it does not.
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &'static str,
        params: P,
    ) -> Result<Option<R>, VmError> {
        let func = lookup::<P, R>(&mut self.store, &self.instance, name)?;
        invoke(&mut self.store, func.as_ref(), params, name)
    }
}

/// Runs a headers callback with `headers` installed as map `map` for its duration.
fn headers_callback(
    store: &mut Store<HostState>,
    callback: &HeadersCallback,
    during: &'static str,
    map: usize,
    context: u32,
    headers: &mut Pairs,
    end_of_stream: bool,
) -> Result<Action, VmError> {
    let count = headers.len() as i32;
    store.data_mut().maps[map] = Some(std::mem::take(headers));
    let result = match callback {
        HeadersCallback::Absent => Ok(None),
        HeadersCallback::WithEndOfStream(f) => invoke(
            store,
            Some(f),
            (context as i32, count, i32::from(end_of_stream)),
            during,
        ),
        HeadersCallback::WithoutEndOfStream(f) => {
            invoke(store, Some(f), (context as i32, count), during)
        }
    };
    *headers = store.data_mut().maps[map].take().unwrap_or_default();
    let local_response = store.data_mut().local_response.take();
    Ok(match (result?, local_response) {
        (_, Some(response)) => Action::Respond(response),
        (Some(0) | None, None) => Action::Continue,
        (Some(_), None) => Action::Pause,
    })
}

/// Calls `func` (if the module has it) under the callback deadline.
fn invoke<P: WasmParams, R: WasmResults>(
    store: &mut Store<HostState>,
    func: Option<&TypedFunc<P, R>>,
    params: P,
    during: &'static str,
) -> Result<Option<R>, VmError> {
    let Some(func) = func else {
        return Ok(None);
    };
    store.set_epoch_deadline(deadline_ticks());
    func.call(&mut *store, params)
        .map(Some)
        .map_err(|e| VmError::Trap {
            plugin: store.data().plugin.clone(),
            during,
            message: format!("{e:#}{}", store.data().explain()),
        })
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

/// The per-stream exports, looked up once per VM: finding an export by name and checking its
/// type on every call showed up as a tenth of the CPU in the filter benchmark.
struct StreamExports {
    context_create: Option<TypedFunc<(i32, i32), ()>>,
    request_headers: HeadersCallback,
    response_headers: HeadersCallback,
    done: Option<TypedFunc<i32, i32>>,
    log: Option<TypedFunc<i32, ()>>,
    delete: Option<TypedFunc<i32, ()>>,
}

impl StreamExports {
    fn lookup(store: &mut Store<HostState>, instance: &Instance) -> Result<StreamExports, VmError> {
        Ok(StreamExports {
            context_create: lookup(store, instance, "proxy_on_context_create")?,
            request_headers: HeadersCallback::lookup(store, instance, "proxy_on_request_headers")?,
            response_headers: HeadersCallback::lookup(
                store,
                instance,
                "proxy_on_response_headers",
            )?,
            done: lookup(store, instance, "proxy_on_done")?,
            log: lookup(store, instance, "proxy_on_log")?,
            delete: lookup(store, instance, "proxy_on_delete")?,
        })
    }
}

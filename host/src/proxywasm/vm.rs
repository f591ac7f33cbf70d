//! One VM replica of a plugin: a wasmtime store and instance with every ABI import linked, started
//! the way Envoy starts it (entry point, root context, `proxy_on_vm_start`, `proxy_on_configure`).
//! A plugin that rejects its VM or plugin configuration is refused with its own log lines quoted,
//! so `compile` and `serve` can say why.

use super::abi::LogLevel;
use super::module::{EntryPoint, PluginModule};
use super::{hostcalls, wasi};
use std::collections::VecDeque;
use wasmtime::{Engine, Instance, Linker, Store, TypedFunc, WasmParams, WasmResults};

/// How many of a plugin's latest log lines are kept to explain a failure.
const RECENT_LOG_LINES: usize = 16;

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
    /// Context ids the guest knows (root and streams).
    pub(super) contexts: Vec<u32>,
    /// The tick period the root asked for, in milliseconds (0 = none).
    pub(super) tick_period_ms: u32,
    /// The plugin's latest log lines.
    pub(super) recent_logs: VecDeque<(LogLevel, String)>,
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

/// A started plugin VM with its root context.
pub struct Vm {
    store: Store<HostState>,
    instance: Instance,
    root_context: u32,
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
            contexts: Vec::new(),
            tick_period_ms: 0,
            recent_logs: VecDeque::new(),
        };
        let mut store = Store::new(engine, state);
        // Per-callback deadlines come with containment; until then no epoch ever expires.
        store.set_epoch_deadline(u64::MAX);
        let instance = linker
            .instantiate(&mut store, &module.module)
            .map_err(|e| instantiate_error(format!("{e:#}")))?;
        let mut vm = Vm {
            store,
            instance,
            root_context: 1,
        };
        match module.info.entry {
            EntryPoint::Initialize { with_main } => {
                vm.call::<(), ()>("_initialize", (), "_initialize")?;
                if with_main {
                    vm.call::<(i32, i32), i32>("main", (0, 0), "main")?;
                }
            }
            EntryPoint::Start => {
                vm.call::<(), ()>("_start", (), "_start")?;
            }
            EntryPoint::None => {}
        }
        let root = vm.root_context as i32;
        vm.store.data_mut().contexts.push(vm.root_context);
        vm.call::<(i32, i32), ()>(
            "proxy_on_context_create",
            (root, 0),
            "proxy_on_context_create",
        )?;
        let vm_config_len = vm.store.data().vm_config.len() as i32;
        if vm.call::<(i32, i32), i32>(
            "proxy_on_vm_start",
            (root, vm_config_len),
            "proxy_on_vm_start",
        )? == Some(0)
        {
            return Err(VmError::VmStartRejected {
                log: vm.store.data().explain(),
                plugin: vm.store.data().plugin.clone(),
            });
        }
        let config_len = vm.store.data().plugin_config.len() as i32;
        if vm.call::<(i32, i32), i32>(
            "proxy_on_configure",
            (root, config_len),
            "proxy_on_configure",
        )? == Some(0)
        {
            return Err(VmError::ConfigureRejected {
                log: vm.store.data().explain(),
                plugin: vm.store.data().plugin.clone(),
            });
        }
        Ok(vm)
    }

    /// The plugin's latest log lines (newest last).
    pub fn recent_logs(&self) -> impl Iterator<Item = &(LogLevel, String)> {
        self.store.data().recent_logs.iter()
    }

    /// The tick period the plugin asked for, in milliseconds (0 = none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    /// Calls export `name` if the module has it (every callback is optional); `Ok(None)` when
    /// it does not.
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
        params: P,
        during: &'static str,
    ) -> Result<Option<R>, VmError> {
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Ok(None);
        };
        let plugin = || self.store.data().plugin.clone();
        let typed: TypedFunc<P, R> = func.typed(&self.store).map_err(|e| VmError::Instantiate {
            plugin: plugin(),
            message: format!("export {name} has an unexpected type: {e}"),
        })?;
        typed
            .call(&mut self.store, params)
            .map(Some)
            .map_err(|e| VmError::Trap {
                plugin: self.store.data().plugin.clone(),
                during,
                message: format!("{e:#}{}", self.store.data().explain()),
            })
    }
}

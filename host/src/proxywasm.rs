//! The Proxy-Wasm host: runs filters built for Envoy (Rust, Go, C++ SDKs) unchanged, in wasmtime.
//!
//! `module` reads a module's ABI marker, entry point and allocator; `vm` starts a replica the way
//! Envoy does and runs its callbacks; `hostcalls` (by family) and `wasi` are the imports it links;
//! `http` converts heads to header maps; `properties` answers `proxy_get_property`; `shared` is
//! the process-wide state (shared data, queues, plugin metrics). How streams flow through a chain
//! of filters, pauses and callouts included, is `gateway::filters` and `gateway::replica`.

pub mod abi;
mod hostcalls;
pub mod http;
mod memory;
pub mod module;
pub mod properties;
pub mod shared;
pub mod vm;
mod wasi;

pub use module::{AbiVersion, Allocator, EntryPoint, ModuleError, ModuleInfo, PluginModule};
pub use vm::{
    CallResponse, Callout, Direction, LocalResponse, MapType, Outbox, PluginConfig, Signal, Vm,
    VmError,
};

/// How often the engine's epoch advances; callback deadlines are counted in these ticks.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// The wasmtime engine all plugins share, with epoch interruption on and a thread that advances
/// the epoch every [`EPOCH_TICK`] for as long as the engine lives, so that every callback can be
/// given a deadline (a plugin that loops forever must not stall a worker).
pub fn engine() -> Result<wasmtime::Engine, ModuleError> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    let engine = wasmtime::Engine::new(&config).map_err(|e| ModuleError::Engine(e.to_string()))?;
    let weak = engine.weak();
    std::thread::Builder::new()
        .name(String::from("barbacane-wasm-epoch"))
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map_err(|e| ModuleError::Engine(format!("cannot start the epoch thread: {e}")))?;
    Ok(engine)
}

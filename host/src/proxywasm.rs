//! The Proxy-Wasm host: runs filters built for Envoy (Rust, Go, C++ SDKs) unchanged, in wasmtime.
//!
//! `module` reads a module's ABI marker, entry point and allocator; `vm` starts a replica the way
//! Envoy does and runs its callbacks; `hostcalls` (by family) and `wasi` are the imports it links;
//! `http` converts heads to header maps; `properties` answers `proxy_get_property`; `shared` is
//! the process-wide state (shared data, queues, plugin metrics); `grpc` the gRPC callouts a VM
//! opens; `capability` records what a plugin does beyond its stream. How streams flow through a chain
//! of filters, pauses and callouts included, is `gateway::filters` and `gateway::replica`.

pub mod abi;
pub mod capability;
mod foreign;
pub mod grpc;
mod hostcalls;
pub mod http;
mod memory;
pub mod module;
pub mod properties;
pub mod shared;
pub mod vm;
mod wasi;

pub use capability::{Capabilities, Capability};
pub use module::{
    AbiVersion, Allocator, EntryPoint, ModuleError, ModuleInfo, PluginModule, StreamCallback,
    StreamCallbacks,
};
pub use vm::{
    CallResponse, Callout, Direction, LocalResponse, MapType, Outbox, PluginConfig, Signal, Vm,
    VmError, Wants,
};

/// How often the engine's epoch advances; callback deadlines are counted in these ticks.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// How many VM instances (and linear memories) the pooling allocator keeps slots for, process
/// wide: workers × plugin instances, plus one check VM per instance while a spec loads.
pub const POOL_SLOTS: u32 = 1000;

/// The wasmtime engine all plugins share, made once per process:
/// - epoch interruption, with a thread that advances the epoch every [`EPOCH_TICK`], so every
///   callback gets a deadline (a plugin that loops forever must not stall a worker);
/// - the pooling allocator with copy-on-write memory images, so a new VM replica is a slot
///   reuse rather than fresh mappings (falls back to on-demand allocation where the address space
///   cannot be reserved);
/// - an on-disk cache of compiled modules keyed by the module's digest and the engine's
///   settings and version (see [`cache_directory`]), so a module is compiled once per machine.
pub fn engine() -> Result<wasmtime::Engine, ModuleError> {
    static ENGINE: std::sync::OnceLock<Result<wasmtime::Engine, String>> =
        std::sync::OnceLock::new();
    ENGINE
        .get_or_init(new_engine)
        .clone()
        .map_err(ModuleError::Engine)
}

fn new_engine() -> Result<wasmtime::Engine, String> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    #[cfg(feature = "wasm-profiling")]
    if std::env::var_os("BARBACANE_WASM_PROFILER").is_some_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Some(directory) = cache_directory() {
        let mut cache = wasmtime::CacheConfig::new();
        cache.with_directory(directory);
        match wasmtime::Cache::new(cache) {
            Ok(cache) => {
                config.cache(Some(cache));
            }
            Err(e) => tracing::warn!(error = %e, "the compiled-module cache is off"),
        }
    }
    let mut pooling = wasmtime::PoolingAllocationConfig::new();
    pooling
        .total_core_instances(POOL_SLOTS)
        .total_memories(POOL_SLOTS)
        .total_tables(POOL_SLOTS)
        .max_memory_size(vm::MEMORY_LIMIT_BYTES)
        // Go modules carry large function tables.
        .table_elements(100_000);
    let mut pooled = config.clone();
    pooled.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
    let engine = match wasmtime::Engine::new(&pooled) {
        Ok(engine) => engine,
        Err(e) => {
            tracing::warn!(error = %e, "pooling allocator unavailable; VMs are allocated on demand");
            wasmtime::Engine::new(&config).map_err(|e| e.to_string())?
        }
    };
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
        .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
    Ok(engine)
}

/// Where compiled modules are cached: `$BARBACANE_CACHE_DIR`, else `$XDG_CACHE_HOME/barbacane`,
/// else `$HOME/.cache/barbacane` (each with a `wasm/` subdirectory); none when `BARBACANE_CACHE_DIR`
/// is set to the empty string or no home is known.
pub fn cache_directory() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let base = match std::env::var_os("BARBACANE_CACHE_DIR") {
        Some(dir) if dir.is_empty() => return None,
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("barbacane"),
            None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/barbacane"),
        },
    };
    Some(base.join("wasm"))
}

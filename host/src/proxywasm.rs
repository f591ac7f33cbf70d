//! The Proxy-Wasm host: runs filters built for Envoy (Rust, Go, C++ SDKs) unchanged, in wasmtime.
//!
//! Grows with issue 3 into the engine, VM replicas, the stream state machine, host calls grouped
//! by family, properties and WASI stubs (see `shared/reference/proxy-wasm-abi.md`). What exists
//! today is the engine and module loading: a module is compiled once and its ABI marker, entry
//! point and allocator are found before anything runs.

pub mod module;

pub use module::{AbiVersion, Allocator, EntryPoint, ModuleError, ModuleInfo, PluginModule};

/// The wasmtime engine all plugins share. Epoch interruption is on so that every callback can be
/// given a deadline (a plugin that loops forever must not stall a worker).
pub fn engine() -> Result<wasmtime::Engine, ModuleError> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    wasmtime::Engine::new(&config).map_err(|e| ModuleError::Engine(e.to_string()))
}

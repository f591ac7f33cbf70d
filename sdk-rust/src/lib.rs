//! Rust plugin authoring for barbacane, on top of the upstream [`proxy_wasm`] crate (not a fork):
//! a plugin is an ordinary Proxy-Wasm module written against `proxy_wasm::traits`, and this crate
//! adds what every gateway plugin needs around it.
//!
//! * [`consumer`]: who an auth plugin authenticated, shared with the plugins after it;
//! * [`config`]: the plugin configuration (JSON text) parsed into a typed struct, with the path of
//!   the offending field in errors;
//! * [`problem`]: RFC 9457 `application/problem+json` local replies shaped like the gateway's own;
//! * [`http`]: query strings, headers, the client's IP address (with trusted proxies) and CIDRs;
//! * [`allocator`]: [`allocator!`], a faster allocator than wasm's default for the module;
//! * [`callbacks`]: [`stream_callbacks!`], the HTTP stream callbacks a plugin implements, so
//!   that the gateway calls no others;
//! * [`root`]: [`ConfiguredRoot`](root::ConfiguredRoot), the root context of a plugin whose
//!   per-VM state is its parsed configuration;
//! * `testing` (feature `testing`, native targets only): a harness that serves the compiled `.wasm` through the real
//!   barbacane host, so a plugin's `cargo test` checks the module that ships.
//!
//! Everything but `testing` compiles for `wasm32-wasip1` and natively.

pub mod allocator;
pub mod callbacks;
pub mod config;
pub mod consumer;
mod host;
pub mod http;
pub mod problem;
pub mod root;
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;

pub use config::ConfigError;
pub use problem::Problem;
/// The upstream Proxy-Wasm SDK this crate builds on, re-exported so that a plugin can name the
/// exact version the SDK was built with.
pub use proxy_wasm;

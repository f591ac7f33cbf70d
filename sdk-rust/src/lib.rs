//! Rust plugin authoring for barbacane, on top of the upstream `proxy-wasm` crate: typed plugin
//! configuration checked against the plugin's JSON Schema, RFC 9457 problem replies, header and
//! query helpers, and a native test harness that drives a compiled plugin through the real host.
//!
//! Empty for now: it is filled by the built-in plugins milestone. The crate exists so that the
//! workspace layout is the one the design describes.

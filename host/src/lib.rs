//! barbacane: an API gateway compiled from OpenAPI specs.
//!
//! The pipeline is `spec` (load, `$ref`s, schema bundling) → `compile` (checks, diagnostics) →
//! `artifact` (sealed `.bca`) → `server` (router → validate → dispatch). See `ARCHITECTURE.md`
//! at the repository root for the code map.

pub mod artifact;
pub mod builtins;
pub mod cli;
pub mod compile;
pub mod diag;
pub mod dispatch;
pub mod gateway;
pub mod idle;
pub mod model;
pub mod oci;
pub mod problem;
pub mod project;
pub mod proxywasm;
pub mod request_body;
pub mod router;
pub mod scaffold;
pub mod server;
pub mod spec;
pub mod upstream;
pub mod validate;
pub mod watch;

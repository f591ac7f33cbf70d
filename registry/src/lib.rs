//! Plugin distribution for barbacane: OCI push/pull of Wasm plugins, cosign-compatible
//! signatures, the trust policy, `barbacane.lock` and the local content-addressed cache.
//!
//! Empty for now: it is filled by the signed-OCI-distribution milestone. The crate exists so that
//! the workspace layout is the one the design describes.

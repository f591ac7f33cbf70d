//! Empty: this package exists so that cargo fetches the `proxy-wasm` crates whose examples
//! `conformance/third-party/build` builds (see `Cargo.toml`).

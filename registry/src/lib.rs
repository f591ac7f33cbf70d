//! Plugin distribution for barbacane: OCI push/pull of Proxy-Wasm plugins, cosign-compatible
//! signatures, the trust policy, `barbacane.lock` and the local content-addressed cache.
//!
//! Entry point: [`Registry`] (one per process; it keeps one `oci-client` client per registry and
//! identity). Its methods: [`Registry::push`], [`Registry::pull`], [`Registry::sign`],
//! [`Registry::verify`], [`Registry::resolve`] (the compiler's "pull, verify, pin" step) and
//! [`Registry::inspect`]. Free functions: [`keygen`], [`inspect_file`], [`check_module`].
//! Every error is an [`Error`] whose [`Error::kind`] gives the CLI an exit code and a hint.
//!
//! | module | concern |
//! |---|---|
//! | [`reference`](mod@reference) | `oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]`, plain-HTTP policy |
//! | [`auth`] | anonymous / basic / bearer credentials, Docker config and helpers |
//! | [`client`] | [`Registry`], [`Options`], [`Limits`], transfer primitives |
//! | [`layout`] | media types written and accepted, layout detection, tar.gz extraction |
//! | [`push`] | the CNCF Wasm layout push |
//! | [`pull`] | layout-aware, size-capped, digest-checked pull |
//! | [`module`] | Proxy-Wasm module check (magic, structure, ABI marker), imports |
//! | [`plugin_manifest`] | `plugin.toml` |
//! | [`signing`] | keygen, sign (merging), verify |
//! | [`resolve`] | trust policy + lock → verified, pinned module |
//! | [`lockfile`] | `barbacane.lock` |
//! | [`cache`] | content-addressed blob cache |
//! | [`inspect`] | describe a reference or a local file |
//! | [`progress`] | progress callbacks |
//! | [`error`] | [`Error`], [`ErrorKind`], exit codes, hints |

pub mod auth;
pub mod cache;
pub mod client;
pub mod error;
pub mod inspect;
pub mod layout;
pub mod lockfile;
pub mod module;
pub mod plugin_manifest;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod resolve;
pub mod signing;

pub use auth::{Credentials, DockerConfig};
pub use cache::Cache;
pub use client::{Limits, Options, Registry};
pub use error::{Error, ErrorKind, Result};
pub use inspect::{Inspection, inspect_file};
pub use layout::Layout;
pub use lockfile::{LockEntry, Lockfile};
pub use module::{ModuleInfo, check_module};
pub use plugin_manifest::PluginManifest;
pub use progress::{NoProgress, Progress};
pub use pull::Pulled;
pub use push::Pushed;
pub use reference::PluginRef;
pub use resolve::{Resolved, TrustPolicy};
pub use signing::{KeyPair, Signed, Verified, check_private_key, key_fingerprint, keygen};

//! Progress reporting: a callback trait the CLI hooks a progress bar to. The crate itself prints
//! nothing.
//!
//! Each transfer is reported as [`Progress::start`] (with the total when it is known), any number
//! of [`Progress::advance`] calls with the bytes just moved, and [`Progress::finish`]. Transfers
//! are sequential within one operation, so a single bar can be reset on each `start`.

/// Receives transfer progress. All methods have empty defaults.
pub trait Progress: Send + Sync {
    /// A transfer starts: `what` names it (e.g. `"plugin.wasm"`), `total` is its size in bytes
    /// when known.
    fn start(&self, what: &str, total: Option<u64>) {
        let _ = (what, total);
    }

    /// `bytes` more bytes were moved.
    fn advance(&self, bytes: u64) {
        let _ = bytes;
    }

    /// The transfer ended (successfully or not).
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

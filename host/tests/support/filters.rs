//! Builds the conformance filters (`conformance/filters`, Rust `proxy-wasm` for `wasm32-wasip1`)
//! once per test binary. Shared by the tests and the benchmarks.

use std::path::{Path, PathBuf};

/// The bytes of conformance filter `name` (`conformance/filters/NAME`), built from source with
/// the real `proxy-wasm` crate for `wasm32-wasip1` (once per test binary; cargo makes a rebuild
/// of fresh sources a no-op).
pub fn conformance_filter(name: &str) -> Vec<u8> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let target = BUILT.get_or_init(|| {
        let filters = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/filters");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
        let out = std::process::Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip1",
                "--manifest-path",
            ])
            .arg(filters.join("Cargo.toml"))
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building the conformance filters failed (is the wasm32-wasip1 target installed? \
                 `rustup target add wasm32-wasip1`):\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(filters.join("target/wasm32-wasip1/release"))
    });
    let dir = target.as_ref().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join(format!("conformance_{}.wasm", name.replace('-', "_")));
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

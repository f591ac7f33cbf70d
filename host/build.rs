//! Embeds the built-in plugins: builds the `plugins/` cargo workspace for `wasm32-wasip1`
//! (release) and writes `$OUT_DIR/builtins.rs`, the table `barbacane::builtins` serves, with each
//! plugin's `plugin.toml` fields, its JSON Schema (`include_str!`) and its module
//! (`include_bytes!`).
//!
//! The table is empty when `plugins/Cargo.toml` is absent or has no members, or when
//! `BARBACANE_NO_BUILTINS=1` (a gateway without built-ins, e.g. without the Wasm target).
//! Otherwise a missing `wasm32-wasip1` target or a failing plugin build fails this build.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One `plugins/<dir>/plugin.toml`.
struct Plugin {
    name: String,
    version: String,
    kind: &'static str,
    abi: String,
    description: String,
    capabilities: Vec<String>,
    schema: PathBuf,
    wasm: PathBuf,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: built-in plugins: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let host = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let repo = host.parent().unwrap_or(&host);
    let plugins_dir = repo.join("plugins");
    println!("cargo:rerun-if-env-changed=BARBACANE_NO_BUILTINS");
    let disabled = std::env::var("BARBACANE_NO_BUILTINS").is_ok_and(|v| v == "1");
    let plugins = if disabled {
        Vec::new()
    } else {
        watch(&plugins_dir, &repo.join("sdk-rust"));
        match members(&plugins_dir.join("Cargo.toml"))? {
            Some(members) if !members.is_empty() => {
                let target_dir = out_dir.join("plugins-target");
                build(&plugins_dir, &target_dir)?;
                let wasm_dir = target_dir.join("wasm32-wasip1/release");
                read_plugins(&plugins_dir, &wasm_dir)?
            }
            _ => Vec::new(),
        }
    };
    let code = generate(&plugins);
    std::fs::write(out_dir.join("builtins.rs"), code)
        .map_err(|e| format!("cannot write builtins.rs: {e}"))
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

/// Reruns this script when the plugins' sources (or the Rust SDK they build on) change. Once
/// the workspace exists its entries are listed one by one, so that a `plugins/target/` left by a
/// manual build is not watched (a directory is watched with everything below it).
fn watch(plugins_dir: &Path, sdk: &Path) {
    if !plugins_dir.join("Cargo.toml").is_file() {
        println!("cargo:rerun-if-changed={}", plugins_dir.display());
        return;
    }
    let Ok(entries) = std::fs::read_dir(plugins_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name() != "target" {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }
    for path in [sdk.join("Cargo.toml"), sdk.join("src")] {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// The `[workspace] members` of `plugins/Cargo.toml`, or `None` when there is no such file.
fn members(manifest: &Path) -> Result<Option<Vec<String>>, String> {
    let Ok(text) = std::fs::read_to_string(manifest) else {
        return Ok(None);
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", manifest.display()))?;
    let members = table
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(members))
}

/// `cargo build --release --target wasm32-wasip1` of the plugins workspace, into `target_dir`.
fn build(plugins_dir: &Path, target_dir: &Path) -> Result<(), String> {
    check_wasm_target()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--target", "wasm32-wasip1"])
        .arg("--manifest-path")
        .arg(plugins_dir.join("Cargo.toml"))
        // As a manual build there would: `plugins/.cargo/config.toml` applies, if any.
        .current_dir(plugins_dir)
        // A target (and build) directory of its own: sharing the outer build's would wait
        // forever on the lock the outer cargo holds while this script runs.
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_BUILD_BUILD_DIR", target_dir)
        // Cargo's progress goes to stderr; its stdout must not be read as `cargo:` directives.
        .stdout(std::io::stderr());
    // What cargo sets for this script, or what shapes the outer build, must not reach the
    // nested one: flags and wrappers meant for the host (coverage, clippy-driver, sccache), the
    // outer `--target`, profile overrides, this package's metadata. The jobserver
    // (`CARGO_MAKEFLAGS`), `CARGO_HOME` and network settings are kept.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = [
            "CARGO_BUILD_",
            "CARGO_CFG_",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_FEATURE_",
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_PROFILE_",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTC_WRAPPER",
            "RUSTDOCFLAGS",
            "RUSTFLAGS",
        ];
        if leaks.iter().any(|prefix| key.starts_with(prefix)) && key != "CARGO_BUILD_BUILD_DIR" {
            command.env_remove(key);
        }
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo build --release --target wasm32-wasip1 --manifest-path {}` failed ({status}); \
             its output is above",
            plugins_dir.join("Cargo.toml").display()
        ))
    }
}

/// Fails with the fix when the toolchain has no `wasm32-wasip1` standard library.
fn check_wasm_target() -> Result<(), String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| String::from("rustc"));
    let out = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if Path::new(&sysroot)
        .join("lib/rustlib/wasm32-wasip1")
        .is_dir()
    {
        Ok(())
    } else {
        Err(String::from(
            "the wasm32-wasip1 target is not installed: run `rustup target add wasm32-wasip1` \
             (scripts/test does), or build without built-in plugins with BARBACANE_NO_BUILTINS=1",
        ))
    }
}

/// Every `plugins/<dir>/plugin.toml`, sorted by name, with its schema and built module.
fn read_plugins(plugins_dir: &Path, wasm_dir: &Path) -> Result<Vec<Plugin>, String> {
    let entries = std::fs::read_dir(plugins_dir)
        .map_err(|e| format!("cannot list {}: {e}", plugins_dir.display()))?;
    let mut plugins = Vec::new();
    for entry in entries.flatten() {
        let manifest = entry.path().join("plugin.toml");
        if manifest.is_file() {
            plugins.push(read_plugin(&manifest, wasm_dir)?);
        }
    }
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = plugins.windows(2).find(|p| p[0].name == p[1].name) {
        return Err(format!("two plugins are named '{}'", pair[0].name));
    }
    Ok(plugins)
}

fn read_plugin(manifest: &Path, wasm_dir: &Path) -> Result<Plugin, String> {
    let shown = manifest.display();
    let text = std::fs::read_to_string(manifest).map_err(|e| format!("{shown}: {e}"))?;
    let table: toml::Table = text.parse().map_err(|e| format!("{shown}: {e}"))?;
    let field = |key: &str| {
        table
            .get(key)
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{shown}: missing string field '{key}'"))
    };
    let name = field("name")?;
    let kind = match field("kind")?.as_str() {
        "auth" => "Auth",
        "transform" => "Transform",
        "traffic" => "Traffic",
        "logging" => "Logging",
        other => {
            return Err(format!(
                "{shown}: kind '{other}' is not auth, transform, traffic or logging"
            ));
        }
    };
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let schema = dir.join(field("schema")?);
    if !schema.is_file() {
        return Err(format!("{shown}: schema {} not found", schema.display()));
    }
    let wasm = wasm_dir.join(format!("barbacane_plugin_{}.wasm", name.replace('-', "_")));
    if !wasm.is_file() {
        return Err(format!(
            "{shown}: no module {} after the build (is the crate a member of plugins/Cargo.toml, \
             a cdylib named barbacane-plugin-{name}?)",
            wasm.display()
        ));
    }
    // Optional: a plugin that only filters its own streams declares none.
    let capabilities = match table.get("capabilities") {
        None => Vec::new(),
        Some(value) => value
            .as_array()
            .and_then(|list| {
                list.iter()
                    .map(|c| c.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| format!("{shown}: 'capabilities' must be a list of strings"))?,
    };
    Ok(Plugin {
        capabilities,
        version: field("version")?,
        abi: field("abi")?,
        description: field("description")?,
        name,
        kind,
        schema,
        wasm,
    })
}

/// The Rust source of the table (`{:?}` of a `str` is a valid Rust string literal).
fn generate(plugins: &[Plugin]) -> String {
    let mut code =
        String::from("/// Generated by host/build.rs.\nstatic BUILTINS: &[Builtin] = &[\n");
    for p in plugins {
        let _ = writeln!(
            code,
            "    Builtin {{ name: {:?}, version: {:?}, kind: Kind::{}, abi: {:?}, description: {:?}, \
             capabilities: &{:?}, schema: include_str!({:?}), wasm: include_bytes!({:?}) }},",
            p.name,
            p.version,
            p.kind,
            p.abi,
            p.description,
            p.capabilities,
            p.schema.display().to_string(),
            p.wasm.display().to_string(),
        );
    }
    code.push_str("];\n");
    code
}

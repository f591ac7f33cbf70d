//! Filters built with the standard Go toolchain (`GOOS=wasip1 GOARCH=wasm go build
//! -buildmode=c-shared`, Go >= 1.24), the way the official Go SDK builds them for Envoy, load and
//! run unchanged: ABI 0.2.0 marker, `_initialize` (the Go runtime and `init()`), the Go allocator,
//! the Go runtime's WASI imports, and the same header behaviour as the Rust `headers` filter.
//! The filters are in `conformance/filters-go/` (no dependencies: the ABI glue is written by hand
//! with `//go:wasmimport` / `//go:wasmexport`, mirroring `proxy-wasm/proxy-wasm-go-sdk`).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::compile::{self, Options};
use barbacane::proxywasm::abi::LogLevel;
use barbacane::proxywasm::{AbiVersion, Allocator, EntryPoint, PluginModule, Vm, engine};
use barbacane::server::Config;
use support::{echo_upstream, get};

/// A spec whose `/echo` goes to the echo upstream on `port`, with `go-headers` configured with
/// `config` as the global chain.
fn spec(port: u16, config: &str) -> String {
    format!(
        r#"openapi: 3.1.0
info: {{title: go filters, version: '1'}}
x-barbacane-upstreams:
  echo: {{endpoints: ['http://127.0.0.1:{port}'], allow_plaintext: true}}
x-barbacane-middlewares:
  - name: go-headers
    config: "{config}"
paths:
  /echo:
    get:
      operationId: echoGet
      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: echo}}}}
"#
    )
}

/// A project directory with `spec` and the Go `headers` filter as plugin `go-headers`.
fn go_project(spec: &str) -> tempfile::TempDir {
    support::plugins_project(spec, &[("go-headers", support::go_filter("headers"))])
}

#[test]
fn a_go_filter_is_read_as_abi_0_2_0_with_initialize_and_the_go_allocator() {
    let bytes = support::go_filter("headers");
    let plugin = PluginModule::compile(&engine().unwrap(), &bytes).unwrap();
    let info = &plugin.info;
    assert_eq!(info.abi, AbiVersion::V0_2_0);
    assert_eq!(info.entry, EntryPoint::Initialize { with_main: false });
    assert_eq!(info.allocator, Allocator::ProxyOnMemoryAllocate);
    for export in [
        "_initialize",
        "proxy_abi_version_0_2_0",
        "proxy_on_memory_allocate",
        "proxy_on_context_create",
        "proxy_on_configure",
        "proxy_on_request_headers",
        "proxy_on_response_headers",
        "proxy_on_delete",
    ] {
        assert!(
            info.exports.iter().any(|e| e == export),
            "missing export {export} in {:?}",
            info.exports
        );
    }
    let imports: Vec<(&str, &str)> = info
        .imports
        .iter()
        .map(|(m, n)| (m.as_str(), n.as_str()))
        .collect();
    // Go imports only the hostcalls it uses, and the Go runtime's WASI set.
    let mut env: Vec<&str> = imports
        .iter()
        .filter(|(m, _)| *m == "env")
        .map(|(_, n)| *n)
        .collect();
    env.sort_unstable();
    assert_eq!(
        env,
        [
            "proxy_add_header_map_value",
            "proxy_get_buffer_bytes",
            "proxy_log",
            "proxy_replace_header_map_value",
        ]
    );
    for wasi in [
        "args_get",
        "args_sizes_get",
        "clock_time_get",
        "environ_get",
        "environ_sizes_get",
        "fd_write",
        "fd_fdstat_get",
        "fd_prestat_get",
        "poll_oneoff",
        "proc_exit",
        "random_get",
        "sched_yield",
    ] {
        assert!(
            imports.contains(&("wasi_snapshot_preview1", wasi)),
            "missing WASI import {wasi} in {imports:?}"
        );
    }
}

#[test]
fn a_go_filter_starts_and_reaches_the_host_through_the_go_runtimes_wasi() {
    let engine = engine().unwrap();
    let module = PluginModule::compile(&engine, &support::go_filter("headers")).unwrap();
    let vm = Vm::start(
        &engine,
        &module,
        support::plugin_config("go-headers", "x-go: yes"),
    )
    .unwrap();
    let logs: Vec<&(LogLevel, String)> = vm.recent_logs().collect();
    // fmt.Println goes through the Go runtime to WASI fd_write(1): one info line.
    assert!(
        logs.contains(&&(LogLevel::Info, String::from("go filter configured"))),
        "{logs:?}"
    );
    // time.Now() goes through WASI clock_time_get(REALTIME): a plausible wall clock.
    let configured = logs
        .iter()
        .find_map(|(level, line)| {
            (*level == LogLevel::Info)
                .then(|| line.strip_prefix("configured header x-go ("))
                .flatten()
        })
        .unwrap_or_else(|| panic!("no 'configured header' line in {logs:?}"));
    let year: i32 = configured
        .rsplit_once("clock year ")
        .and_then(|(_, y)| y.strip_suffix(')'))
        .and_then(|y| y.parse().ok())
        .unwrap_or_else(|| panic!("no clock year in {configured:?}"));
    assert!(year >= 2024, "{configured}");
}

#[tokio::test]
async fn a_go_filter_edits_request_and_response_headers_through_the_gateway() {
    let up = echo_upstream().await;
    let gw = support::gateway_in(
        go_project(&spec(up.addr.port(), "x-go-filter: from-go")),
        Config::default(),
    )
    .await;
    let url = gw.url("/echo");

    for round in 0..5 {
        let reply = get(&url).await;
        assert_eq!(reply.status, 200, "round {round}: {reply:?}");
        assert_eq!(
            reply.json()["headers"]["x-go-filter"],
            "from-go",
            "round {round}: the upstream sees the Go filter's request header"
        );
        assert_eq!(
            reply.header("x-conformance"),
            "go-headers",
            "round {round}: the client sees the Go filter's response header"
        );
        assert_eq!(reply.header("x-upstream"), "echo");
    }

    let concurrent: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for (i, task) in concurrent.into_iter().enumerate() {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200, "concurrent {i}: {reply:?}");
        assert_eq!(
            reply.json()["headers"]["x-go-filter"],
            "from-go",
            "concurrent {i}"
        );
        assert_eq!(
            reply.header("x-conformance"),
            "go-headers",
            "concurrent {i}"
        );
    }
    gw.stop().await;
}

#[test]
fn a_go_filter_that_rejects_its_configuration_fails_the_compile() {
    for (config, complaint) in [
        (
            "garbage",
            r#"configuration must be 'name: value', got "garbage""#,
        ),
        (
            ": no-name",
            r#"configuration must be 'name: value', got ": no-name""#,
        ),
    ] {
        let dir = go_project(&spec(1, config));
        let diagnostics = compile::compile(
            &[dir.path().join("api.yaml")],
            Some(&dir.path().join("barbacane.yaml")),
            Options { dev: true },
        )
        .err()
        .unwrap_or_else(|| panic!("config {config:?} compiled"));
        let rejected = diagnostics
            .iter()
            .find(|d| d.message.contains("go-headers"))
            .unwrap_or_else(|| panic!("no diagnostic names the plugin: {diagnostics:#?}"));
        assert_eq!(
            rejected.message,
            format!("plugin 'go-headers' rejected its configuration: {complaint}"),
            "{diagnostics:#?}"
        );
        assert_eq!(format!("{:?}", rejected.code), "E1061");
    }
}

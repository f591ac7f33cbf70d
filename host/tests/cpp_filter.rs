//! C++ filters, written as C++ Proxy-Wasm filters are (classes for the contexts, a registry of
//! them by id, std containers, the C library's malloc as the allocator), each in its two builds
//! (`conformance/filters-cpp/build`): by Emscripten as the C++ SDK builds filters for Envoy (a
//! standalone reactor, `malloc` exported as the allocator, memory growth allowed), and by clang
//! with wasi-libc and libc++ (`proxy_on_memory_allocate`). Each is loaded unchanged and runs
//! through the real gateway against a real upstream. `conformance/run` maps these tests to
//! `conformance/cases.tsv` rows of family `C++`.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::compile::{self, Options};
use barbacane::proxywasm::abi::LogLevel;
use barbacane::proxywasm::http::Pairs;
use barbacane::proxywasm::properties::StreamInfo;
use barbacane::proxywasm::{AbiVersion, Allocator, EntryPoint, MapType, PluginModule, Vm, engine};
use barbacane::server::Config;
use http::Method;
use std::sync::Arc;
use support::{echo_spec, echo_upstream, get, send};

/// The builds of the C++ filters `headers` and `calls`, as `conformance/filters-cpp/build` names
/// them: Emscripten's first, then clang's.
const HEADERS_BUILDS: [&str; 2] = ["emcc-headers", "cpp-headers"];
const CALLS_BUILDS: [&str; 2] = ["emcc-calls", "cpp-calls"];

/// A GET of `path` from `gw` with one request header.
async fn get_with(gw: &support::TestGateway, path: &str, header: (&str, &str)) -> support::Reply {
    send(Method::GET, &gw.url(path), &[header], b"").await
}

/// A project serving `echo_spec`'s routes behind `build` of the C++ filter with `config` and
/// root_id `headers_root`.
fn cpp_project(build: &str, echo_port: u16, config: &str) -> tempfile::TempDir {
    let chain = format!("  - {{name: cpp-headers, root_id: headers_root, config: '{config}'}}");
    let spec = echo_spec(echo_port, "", &chain);
    support::plugins_project(&spec, &[("cpp-headers", support::cpp_filter(build))])
}

/// The diagnostic naming the C++ filter when the project in `dir` fails to compile.
fn refusal(dir: &tempfile::TempDir) -> barbacane::diag::Diagnostic {
    let mut diagnostics = compile::compile(
        &[dir.path().join("api.yaml")],
        Some(&dir.path().join("barbacane.yaml")),
        Options { dev: true },
    )
    .err()
    .unwrap();
    let Some(at) = diagnostics
        .iter()
        .position(|d| d.message.contains("cpp-headers"))
    else {
        panic!("no diagnostic names the plugin: {diagnostics:#?}");
    };
    diagnostics.swap_remove(at)
}

#[test]
fn a_cpp_filter_is_read_started_and_logs_as_envoy_would() {
    let engine = engine().unwrap();
    for build in HEADERS_BUILDS {
        let module = PluginModule::compile(&engine, &support::cpp_filter(build)).unwrap();
        let info = &module.info;
        let emscripten = build.starts_with("emcc");
        assert_eq!(info.abi, AbiVersion::V0_2_1, "{build}");
        assert_eq!(
            info.entry,
            EntryPoint::Initialize { with_main: false },
            "{build}"
        );
        let allocator = if emscripten {
            Allocator::Malloc
        } else {
            Allocator::ProxyOnMemoryAllocate
        };
        assert_eq!(info.allocator, allocator, "{build}");
        let imports = |module: &str, name: &str| {
            info.imports
                .iter()
                .any(|(m, n)| (m.as_str(), n.as_str()) == (module, name))
        };
        assert!(
            imports("wasi_snapshot_preview1", "fd_write"),
            "{build}: C++'s stdio reaches WASI: {:?}",
            info.imports
        );
        assert_eq!(
            imports("env", "emscripten_notify_memory_growth"),
            emscripten,
            "{build}: Emscripten's standalone runtime reports memory growth: {:?}",
            info.imports
        );
        for (module, name) in &info.imports {
            assert!(
                module == "wasi_snapshot_preview1"
                    || (module == "env"
                        && (name.starts_with("proxy_")
                            || name == "emscripten_notify_memory_growth")),
                "{build}: unexpected import {module}.{name}"
            );
        }

        let mut vm = Vm::start(
            &engine,
            &module,
            support::plugin_config("cpp-headers", "x-cpp: yes"),
        )
        .unwrap();
        let announced = (LogLevel::Error, String::from("C++ filter adds x-cpp"));
        assert!(
            vm.recent_logs().any(|line| *line == announced),
            "{build}: stderr (fd_write on fd 2) is a log line: {:?}",
            vm.recent_logs().collect::<Vec<_>>()
        );

        // on_log reads the final response headers.
        let context = vm.create_stream(Arc::new(StreamInfo::default())).unwrap();
        vm.set_map(
            context,
            MapType::ResponseHeaders,
            Pairs::from([(":status", "204")]),
        );
        vm.end_stream(context).unwrap();
        let logged = (
            LogLevel::Info,
            String::from("C++ filter logged a 204 response"),
        );
        assert!(
            vm.recent_logs().any(|line| *line == logged),
            "{build}: {:?}",
            vm.recent_logs().collect::<Vec<_>>()
        );
        assert!(
            !vm.has_stream(context),
            "{build}: on_delete ended the stream"
        );
    }
}

#[test]
fn a_cpp_filter_refusing_its_configuration_fails_the_compile_quoting_its_log() {
    // (configuration, what the filter logs): a name that is not a token is refused by
    // proxy_validate_configuration, before proxy_on_configure (which would announce it on
    // stderr); a configuration without a colon by proxy_on_configure.
    let refusals = [
        ("x y: 1", "header name 'x y' is not a token"),
        (
            "nocolon",
            "configuration must be 'name: value', got 'nocolon'",
        ),
    ];
    for build in HEADERS_BUILDS {
        for (config, logged) in refusals {
            let rejected = refusal(&cpp_project(build, 1, config));
            assert_eq!(format!("{:?}", rejected.code), "E1061", "{build}");
            assert!(
                rejected.message.contains(logged) && !rejected.message.contains("C++ filter adds"),
                "{build}, {config:?}: {}",
                rejected.message
            );
        }
    }
}

#[test]
fn a_cpp_filter_built_with_wasm_exceptions_is_refused_with_a_hint() {
    // Emscripten's -fwasm-exceptions emits try/throw instructions, which wasmtime does not run
    // (V8, Envoy's default runtime, does): the compile says so and how to build the filter instead.
    let refused = refusal(&cpp_project("emcc-eh-headers", 1, "x-cpp: yes"));
    assert_eq!(format!("{:?}", refused.code), "E1061");
    assert!(
        refused.message.contains("uses Wasm exception handling"),
        "{}",
        refused.message
    );
    assert!(refused.hint.contains("-fno-exceptions"), "{}", refused.hint);
}

#[tokio::test]
async fn a_cpp_filter_edits_answers_grows_and_traps_through_the_gateway() {
    let echo = echo_upstream().await;
    for build in HEADERS_BUILDS {
        let gw = support::gateway_in(
            cpp_project(build, echo.addr.port(), "x-cpp: yes"),
            Config::default(),
        )
        .await;

        // Request headers added (one read from `:path`, one from a property), response headers
        // replaced with the VM's stream count and the status.
        for round in 1..=2 {
            let reply = get(&gw.url("/echo?q=1")).await;
            assert_eq!(reply.status, 200, "{build}: {reply:?}");
            let headers = &reply.json()["headers"];
            assert_eq!(headers["x-cpp"], "yes", "{build}: {headers}");
            assert_eq!(headers["x-cpp-path"], "/echo?q=1", "{build}: {headers}");
            let source = headers["x-cpp-source"].as_str().unwrap();
            assert!(source.starts_with("127.0.0.1:"), "{build}: {source}");
            assert_eq!(reply.header("x-cpp-filter"), round.to_string(), "{build}");
            assert_eq!(reply.header("x-cpp-status"), "200", "{build}");
            assert_eq!(reply.header("x-cpp-root-id"), "headers_root", "{build}");
        }

        // A local response from the request phase, in place of the upstream's answer.
        let denied = get_with(&gw, "/echo", ("x-cpp-deny", "1")).await;
        assert_eq!(denied.status, 403, "{build}");
        assert_eq!(
            denied.body.as_ref(),
            b"denied by the C++ filter\n",
            "{build}"
        );
        assert_eq!(denied.header("x-denied-by"), "cpp", "{build}");
        assert_eq!(denied.header("content-type"), "text/plain", "{build}");

        // The C library's malloc grows the memory (Emscripten's calls
        // emscripten_notify_memory_growth after each growth) up to the VM's 64 MiB cap; past
        // it, malloc returns null and the filter goes on.
        let grown = get_with(&gw, "/mock", ("x-cpp-grow", "32")).await;
        assert_eq!(grown.status, 200, "{build}");
        let memory = grown.header("x-cpp-memory");
        let mib: u32 = memory
            .strip_prefix("32 MiB in a memory of ")
            .and_then(|rest| rest.strip_suffix(" MiB"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{build}: x-cpp-memory {memory:?}"));
        assert!((32..=64).contains(&mib), "{build}: {memory}");
        let refused = get_with(&gw, "/mock", ("x-cpp-grow", "80")).await;
        assert_eq!(
            (refused.status.as_u16(), refused.header("x-cpp-memory")),
            (200, "refused"),
            "{build}"
        );

        // abort() traps: the default failure policy (closed) answers 500, the failure is
        // counted, and the replica is rebuilt (a fresh VM: its stream count starts again).
        let aborted = get_with(&gw, "/mock", ("x-cpp-abort", "1")).await;
        let problem = aborted.problem(500, "plugin-failed");
        assert_eq!(problem["detail"], "plugin 'cpp-headers' failed", "{build}");
        let after = get(&gw.url("/mock")).await;
        assert_eq!(
            (after.status.as_u16(), after.body.as_ref()),
            (200, b"mocked".as_slice()),
            "{build}"
        );
        assert_eq!(
            after.header("x-cpp-filter"),
            "1",
            "{build}: a new VM serves the next request"
        );
        let metrics = get(&gw.url("/__barbacane/metrics")).await;
        let metrics = String::from_utf8_lossy(&metrics.body);
        assert!(
            metrics.contains("barbacane_plugin_failures_total{plugin=\"cpp-headers\"} 1"),
            "{build}: {metrics}"
        );
    }
}

/// A project serving `echo_spec`'s routes behind `build` of the `calls` C++ filter, named after
/// the build (shared data and metrics are keyed by plugin), ticking every 50 ms; upstream `down`
/// refuses connections.
fn calls_project(build: &str, echo_port: u16) -> tempfile::TempDir {
    let down = "  down: {endpoints: ['http://127.0.0.1:1'], allow_plaintext: true}";
    let chain = format!("  - {{name: {build}, vm_config: '50'}}");
    let spec = echo_spec(echo_port, down, &chain);
    support::plugins_project(&spec, &[(build, support::cpp_filter(build))])
}

#[tokio::test]
async fn a_cpp_filter_calls_out_ticks_counts_and_rewrites_bodies_through_the_gateway() {
    let echo = echo_upstream().await;
    for build in CALLS_BUILDS {
        let gw =
            support::gateway_in(calls_project(build, echo.addr.port()), Config::default()).await;

        // A callout from the request phase; its answer, delivered to the root context, resumes
        // the request with what the filter read from it.
        let called = get_with(&gw, "/echo", ("x-cpp-callout", "echo /echo?from=callout")).await;
        assert_eq!(called.status, 200, "{build}: {called:?}");
        let headers = &called.json()["headers"];
        assert_eq!(headers["x-cpp-callout-status"], "200", "{build}: {headers}");
        assert_eq!(
            headers["x-cpp-callout-uri"], "/echo?from=callout",
            "{build}: {headers}"
        );

        // A callout to an upstream that refuses connections is answered as Envoy answers it
        // (503); one to an upstream the spec does not declare is refused by proxy_http_call.
        let down = get_with(&gw, "/echo", ("x-cpp-callout", "down /")).await;
        assert_eq!(down.status, 200, "{build}: {down:?}");
        assert_eq!(
            down.json()["headers"]["x-cpp-callout-status"],
            "503",
            "{build}"
        );
        let refused = get_with(&gw, "/echo", ("x-cpp-callout", "nowhere /")).await;
        assert_eq!(
            (refused.status.as_u16(), refused.body.as_ref()),
            (500, b"callout refused\n".as_slice()),
            "{build}"
        );

        // A body in two chunks is buffered to its end, then replaced.
        let addr = gw.addr;
        let chunked = "POST /echo HTTP/1.1\r\nHost: t\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n4\r\n c++\r\n0\r\n\r\n";
        let answer = tokio::task::spawn_blocking(move || support::raw(addr, chunked.as_bytes()))
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{build}: {answer}");
        assert!(
            answer.contains(r#""body":"HELLO C++""#),
            "{build}: {answer}"
        );

        // A request waits for the VM's next tick, which resumes it; every tick has counted
        // itself in shared data by then.
        let waited = get_with(&gw, "/echo", ("x-cpp-wait-tick", "1")).await;
        assert_eq!(waited.status, 200, "{build}");
        assert_eq!(waited.json()["headers"]["x-cpp-waited"], "tick", "{build}");
        let ticks: u64 = waited.header("x-cpp-ticks").parse().unwrap();
        assert!(ticks >= 1, "{build}: {ticks}");

        // The counter, read back by the filter and on the metrics endpoint: five requests.
        assert_eq!(waited.header("x-cpp-requests"), "5", "{build}");
        let metrics = get(&gw.url("/__barbacane/metrics")).await;
        let metrics = String::from_utf8_lossy(&metrics.body);
        for line in [
            format!("barbacane_plugin_cpp_requests_total{{plugin=\"{build}\"}} 5"),
            format!("barbacane_plugin_cpp_body_bytes_count{{plugin=\"{build}\"}} 1"),
            format!("barbacane_plugin_cpp_body_bytes_sum{{plugin=\"{build}\"}} 9"),
        ] {
            assert!(
                metrics.contains(&line),
                "{build}: {line} missing from\n{metrics}"
            );
        }
    }
}

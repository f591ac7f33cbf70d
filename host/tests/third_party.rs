//! Third-party filters, loaded unchanged: the examples that the official Rust SDK's maintainers
//! ship in the `proxy-wasm` crates on crates.io — 0.2.0 (ABI 0.2.1 marker) and 0.1.4 (ABI 0.1.0,
//! an exported `_start`) — and the README example of the AssemblyScript SDK on npm (ABI 0.2.0),
//! fetched and built as published by `conformance/third-party/build`. Each test checks what the
//! filter's authors say it does in Envoy, through the real gateway against real upstreams.
//! `conformance/run` maps these tests to `conformance/cases.tsv` rows of family `Third-party`.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::proxywasm::abi::LogLevel;
use barbacane::proxywasm::http::Pairs;
use barbacane::proxywasm::properties::StreamInfo;
use barbacane::proxywasm::{AbiVersion, Allocator, EntryPoint, MapType, PluginModule, Vm, engine};
use barbacane::server::{Config, full};
use http::Response;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{echo_upstream, get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The published SDK versions whose examples are built, with the ABI each declares.
const SDKS: [(&str, AbiVersion); 2] = [
    ("proxy-wasm-0.2.0", AbiVersion::V0_2_1),
    ("proxy-wasm-0.1.4", AbiVersion::V0_1_0),
];

/// The examples each version ships.
const EXAMPLES: [&str; 5] = [
    "hello_world",
    "http_auth_random",
    "http_body",
    "http_config",
    "http_headers",
];

/// The middleware settings of a filter that reads no configuration.
const NO_SETTINGS: &str = "config: ''";

/// A project serving `/echo` (to the echo upstream), `/hello` (the same), `/mock` (a mock answering
/// `mocked`) and `/stream` (to the stream upstream) behind third-party filter `example` of `sdk`,
/// its middleware entry completed by `settings` (e.g. `config: x`); the upstream named `httpbin`
/// is on `ports.httpbin`.
fn project(sdk: &str, example: &str, settings: &str, ports: Ports) -> tempfile::TempDir {
    let Ports {
        echo,
        httpbin,
        stream,
    } = ports;
    let spec = format!(
        r#"openapi: 3.1.0
info: {{title: third-party filter, version: '1'}}
x-barbacane-upstreams:
  echo: {{endpoints: ['http://127.0.0.1:{echo}'], allow_plaintext: true}}
  httpbin: {{endpoints: ['http://127.0.0.1:{httpbin}'], allow_plaintext: true}}
  stream: {{endpoints: ['http://127.0.0.1:{stream}'], allow_plaintext: true}}
x-barbacane-middlewares:
  - {{name: example, {settings}}}
paths:
  /echo:
    get:
      operationId: echo
      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: echo}}}}
  /hello:
    get:
      operationId: hello
      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: echo}}}}
  /mock:
    get:
      operationId: mock
      x-barbacane-dispatch: {{name: mock, config: {{body: mocked}}}}
  /stream:
    get:
      operationId: stream
      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: stream}}}}
"#
    );
    support::plugins_project(
        &spec,
        &[("example", support::third_party_filter(sdk, example))],
    )
}

/// Ports of the upstreams a project names (1 where a test needs none: nothing listens there).
#[derive(Clone, Copy)]
struct Ports {
    echo: u16,
    httpbin: u16,
    stream: u16,
}

impl Ports {
    fn echo(echo: u16) -> Ports {
        Ports {
            echo,
            httpbin: 1,
            stream: 1,
        }
    }
}

#[test]
fn the_official_rust_sdk_examples_load_unchanged() {
    let engine = engine().unwrap();
    for (sdk, abi) in SDKS {
        for example in EXAMPLES {
            let module = PluginModule::compile(&engine, &support::third_party_filter(sdk, example))
                .unwrap_or_else(|e| panic!("{sdk} {example}: {e}"));
            let info = &module.info;
            assert_eq!(info.abi, abi, "{sdk} {example}");
            for (module, name) in &info.imports {
                assert!(
                    module == "wasi_snapshot_preview1"
                        || (module == "env" && name.starts_with("proxy_")),
                    "{sdk} {example}: unexpected import {module}.{name}"
                );
            }
            let entry = if sdk == "proxy-wasm-0.1.4" {
                EntryPoint::Start
            } else {
                EntryPoint::Initialize { with_main: false }
            };
            assert_eq!(info.entry, entry, "{sdk} {example}");
        }
    }
}

#[test]
fn hello_world_greets_on_vm_start_and_ticks_every_five_seconds() {
    let engine = engine().unwrap();
    for (sdk, _) in SDKS {
        let module =
            PluginModule::compile(&engine, &support::third_party_filter(sdk, "hello_world"))
                .unwrap();
        let mut vm = Vm::start(&engine, &module, support::plugin_config("hello", "")).unwrap();
        let greeting = (LogLevel::Info, String::from("Hello, World!"));
        assert!(
            vm.recent_logs().any(|line| *line == greeting),
            "{sdk}: {:?}",
            vm.recent_logs().collect::<Vec<_>>()
        );
        assert_eq!(
            vm.take_outbox().tick_period,
            Some(Some(Duration::from_secs(5))),
            "{sdk}"
        );

        // Each tick logs the wall-clock time (WASI clock_time_get, through chrono) and a random
        // byte (WASI random_get, through getrandom).
        vm.on_tick().unwrap();
        let (level, line) = vm.recent_logs().last().unwrap().clone();
        assert_eq!(level, LogLevel::Info, "{sdk}");
        // e.g. "It's 2026-11-30 06:40:01.123456 UTC, your lucky number is 42."
        let (date, number) = line
            .strip_prefix("It's ")
            .and_then(|rest| rest.split_once(" UTC, your lucky number is "))
            .unwrap_or_else(|| panic!("{sdk}: {line}"));
        let year: u32 = date[..4].parse().unwrap();
        assert!(year >= 2026, "the host's wall clock, not zero: {line}");
        number.strip_suffix('.').unwrap().parse::<u8>().unwrap();
    }
}

#[test]
fn http_headers_logs_every_header_at_trace_and_its_completion_on_log() {
    let engine = engine().unwrap();
    for (sdk, _) in SDKS {
        let module =
            PluginModule::compile(&engine, &support::third_party_filter(sdk, "http_headers"))
                .unwrap();
        let mut vm = Vm::start(&engine, &module, support::plugin_config("headers", "")).unwrap();
        let context = vm.create_stream(Arc::new(StreamInfo::default())).unwrap();
        let mut request = Pairs::from([(":path", "/other"), ("x-one", "1")]);
        let (result, _) = vm
            .map_callback(context, MapType::RequestHeaders, &mut request, true)
            .unwrap();
        assert_eq!(result, 0);
        let mut response = Pairs::from([(":status", "200")]);
        let (result, _) = vm
            .map_callback(context, MapType::ResponseHeaders, &mut response, true)
            .unwrap();
        assert_eq!(result, 0);
        vm.end_stream(context).unwrap();
        let logs: Vec<_> = vm.recent_logs().cloned().collect();
        for expected in [
            format!("#{context} -> :path: /other"),
            format!("#{context} -> x-one: 1"),
            format!("#{context} <- :status: 200"),
            format!("#{context} completed."),
        ] {
            assert!(
                logs.contains(&(LogLevel::Trace, expected.clone())),
                "{sdk}: {expected:?} not in {logs:?}"
            );
        }
    }
}

#[tokio::test]
async fn http_headers_answers_hello_itself_and_passes_other_requests() {
    let echo = echo_upstream().await;
    for (sdk, _) in SDKS {
        let dir = project(
            sdk,
            "http_headers",
            NO_SETTINGS,
            Ports::echo(echo.addr.port()),
        );
        let gw = support::gateway_in(dir, Config::default()).await;

        let hello = get(&gw.url("/hello")).await;
        assert_eq!(hello.status, 200, "{sdk}: {hello:?}");
        assert_eq!(hello.body.as_ref(), b"Hello, World!\n");
        assert_eq!(hello.header("hello"), "World");
        assert_eq!(hello.header("powered-by"), "proxy-wasm");
        assert_eq!(hello.header("x-upstream"), "", "answered by the filter");

        let passed = get(&gw.url("/echo?q=1")).await;
        assert_eq!(passed.status, 200, "{sdk}: {passed:?}");
        assert_eq!(passed.json()["uri"], "/echo?q=1");
        assert_eq!(passed.header("x-upstream"), "echo");
        gw.stop().await;
    }
}

/// An `httpbin` whose `/bytes/1` answers one byte, alternately even (2) and odd (3), and records
/// each request as `METHOD PATH HOST`.
async fn httpbin(seen: Arc<std::sync::Mutex<Vec<String>>>) -> support::Upstream {
    let calls = Arc::new(AtomicUsize::new(0));
    support::upstream(move |request: http::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        let calls = calls.clone();
        async move {
            let host = request
                .headers()
                .get("host")
                .map(|h| h.to_str().unwrap().to_string())
                .unwrap_or_default();
            seen.lock()
                .unwrap()
                .push(format!("{} {} {host}", request.method(), request.uri()));
            let byte = 2 + (calls.fetch_add(1, Ordering::SeqCst) % 2) as u8;
            Response::new(full(vec![byte]))
        }
    })
    .await
}

#[tokio::test]
async fn http_auth_random_lets_a_request_through_when_httpbin_answers_an_even_byte() {
    let echo = echo_upstream().await;
    for (sdk, _) in SDKS {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let bin = httpbin(seen.clone()).await;
        let ports = Ports {
            httpbin: bin.addr.port(),
            ..Ports::echo(echo.addr.port())
        };
        let gw = support::gateway_in(
            project(sdk, "http_auth_random", NO_SETTINGS, ports),
            Config::default(),
        )
        .await;

        // First callout answers 2: the paused request resumes and reaches the upstream; the
        // response carries the filter's header.
        let granted = get(&gw.url("/echo")).await;
        assert_eq!(granted.status, 200, "{sdk}: {granted:?}");
        assert_eq!(granted.json()["uri"], "/echo");
        assert_eq!(granted.header("powered-by"), "proxy-wasm");

        // Second answers 3: a local 403 in place of the upstream's answer.
        let forbidden = get(&gw.url("/echo")).await;
        assert_eq!(forbidden.status, 403, "{sdk}: {forbidden:?}");
        assert_eq!(forbidden.body.as_ref(), b"Access forbidden.\n");
        assert_eq!(forbidden.header("powered-by"), "proxy-wasm");
        assert_eq!(forbidden.header("x-upstream"), "");

        // The callouts asked for what the example names (`:authority` becomes `Host`).
        assert_eq!(
            *seen.lock().unwrap(),
            ["GET /bytes/1 httpbin.org", "GET /bytes/1 httpbin.org"],
            "{sdk}"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn http_auth_random_forbids_every_request_while_httpbin_is_down() {
    // As in Envoy, a failed callout reaches `on_http_call_response` with no body: 403.
    let echo = echo_upstream().await;
    for (sdk, _) in SDKS {
        let gw = support::gateway_in(
            project(
                sdk,
                "http_auth_random",
                NO_SETTINGS,
                Ports::echo(echo.addr.port()),
            ),
            Config::default(),
        )
        .await;
        let forbidden = get(&gw.url("/echo")).await;
        assert_eq!(forbidden.status, 403, "{sdk}: {forbidden:?}");
        assert_eq!(forbidden.body.as_ref(), b"Access forbidden.\n");
        gw.stop().await;
    }
}

/// An upstream that answers every request with a chunked body sent as `chunks`, each flushed
/// separately after a pause, so that the gateway receives them as separate frames.
async fn chunked_upstream(chunks: &'static [&'static str]) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n @ 1..) = stream.read(&mut buf).await else {
                        return;
                    };
                    head.extend_from_slice(&buf[..n]);
                }
                let start = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\
                             transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                stream.write_all(start.as_bytes()).await.unwrap();
                for chunk in chunks {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                    stream.write_all(frame.as_bytes()).await.unwrap();
                }
                stream.write_all(b"0\r\n\r\n").await.unwrap();
            });
        }
    });
    addr
}

#[tokio::test]
async fn http_body_redacts_a_response_that_mentions_a_secret() {
    let stream = chunked_upstream(&["the ", "secret", " plan"]).await;
    for (sdk, _) in SDKS {
        let ports = Ports {
            stream: stream.port(),
            ..Ports::echo(1)
        };
        let gw = support::gateway_in(
            project(sdk, "http_body", NO_SETTINGS, ports),
            Config::default(),
        )
        .await;

        // The body arrives in three chunks; the filter pauses until the last and then sees the
        // whole 15 bytes.
        let redacted = get(&gw.url("/stream")).await;
        assert_eq!(redacted.status, 200, "{sdk}: {redacted:?}");
        assert_eq!(
            String::from_utf8_lossy(&redacted.body),
            "Original message body (15 bytes) redacted.",
            "{sdk}"
        );

        assert_eq!(redacted.header("content-length"), "", "{sdk}");

        // Other bodies pass unchanged. The filter removes content-length from every response;
        // where the whole body is known (the mock's), hyper frames it with its length again
        // (Envoy would send it chunked: both are valid framing, and neither can be wrong).
        let plain = get(&gw.url("/mock")).await;
        assert_eq!(plain.body.as_ref(), b"mocked", "{sdk}");
        assert_eq!(plain.header("content-length"), "6", "{sdk}");
        gw.stop().await;
    }
}

#[tokio::test]
async fn http_config_adds_its_plugin_configuration_as_a_response_header() {
    for (sdk, _) in SDKS {
        let dir = project(sdk, "http_config", "config: from the spec", Ports::echo(1));
        let gw = support::gateway_in(dir, Config::default()).await;
        let reply = get(&gw.url("/mock")).await;
        assert_eq!(reply.status, 200, "{sdk}: {reply:?}");
        assert_eq!(reply.header("custom-header"), "from the spec");
        assert_eq!(reply.body.as_ref(), b"mocked");
        gw.stop().await;
    }
}

/// The AssemblyScript SDK (`@solo-io/proxy-runtime` on npm) whose README example is built.
const ASSEMBLYSCRIPT: &str = "proxy-runtime-0.1.8";

#[test]
fn the_assemblyscript_sdk_readme_example_loads_unchanged() {
    let engine = engine().unwrap();
    let module = PluginModule::compile(
        &engine,
        &support::third_party_filter(ASSEMBLYSCRIPT, "add_header"),
    )
    .unwrap();
    let info = &module.info;
    assert_eq!(info.abi, AbiVersion::V0_2_0);
    assert_eq!(info.entry, EntryPoint::None);
    assert_eq!(info.allocator, Allocator::Malloc);
    // `--use abort=abort_proc_exit`: AssemblyScript's abort reaches the pre-preview1 WASI name.
    assert!(
        info.imports
            .contains(&(String::from("wasi_unstable"), String::from("proc_exit"))),
        "{:?}",
        info.imports
    );
    for (module, name) in &info.imports {
        assert!(
            module == "wasi_unstable" || (module == "env" && name.starts_with("proxy_")),
            "unexpected import {module}.{name}"
        );
    }
}

#[tokio::test]
async fn the_assemblyscript_readme_example_adds_its_configuration_as_envoy_documents() {
    // The README's Envoy configuration, followed literally: root_id `add_header`, configuration
    // "what ever you want".
    let settings = "config: what ever you want, root_id: add_header";
    let dir = project(ASSEMBLYSCRIPT, "add_header", settings, Ports::echo(1));
    let gw = support::gateway_in(dir, Config::default()).await;
    let reply = get(&gw.url("/mock")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("hello"), "what ever you want");
    assert_eq!(reply.body.as_ref(), b"mocked");
    gw.stop().await;
}

#[tokio::test]
async fn the_assemblyscript_sdk_starts_without_a_configuration_as_in_envoy() {
    // The SDK's on_configure reads the configuration with `proxy_get_buffer_bytes(7, 0, size,
    // &buffer, size)` (its size as the out-pointer for the length): with size 0 Envoy answers OK
    // and writes nothing, and the SDK goes on with whatever its buffer reference held before (so
    // the header it adds is not the README's `world!`). Writing (0, 0) there, as this host did,
    // made it read address 0 and trap in on_configure.
    let dir = project(
        ASSEMBLYSCRIPT,
        "add_header",
        "root_id: add_header",
        Ports::echo(1),
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let reply = get(&gw.url("/mock")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body.as_ref(), b"mocked");
    gw.stop().await;
}

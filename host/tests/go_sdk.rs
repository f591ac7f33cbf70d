//! Filters built on barbacane's Go SDK (`sdk-tinygo/`) with the standard Go toolchain
//! (`GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`, Go >= 1.24) run through the real
//! gateway against real upstreams. The filters are `conformance/filters-go/sdk-*` (each a Go
//! module using the SDK through a local `replace`), and the SDK's examples
//! (`sdk-tinygo/examples/*`); `conformance/filters-go/build` builds them all.
//! `conformance/run` maps these tests to `conformance/cases.tsv` rows of family `Go SDK`.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::compile::{self, Options};
use barbacane::proxywasm::abi::LogLevel;
use barbacane::proxywasm::{AbiVersion, Allocator, EntryPoint, PluginModule, Vm, engine};
use barbacane::server::{Config, full};
use http::{Method, Response};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::{auth_upstream, chunked_post, echo_spec, echo_upstream, get, raw_header, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A project with `spec` and the given plugins, each `(name, Go filter)`; a Go filter is a
/// name of `conformance/filters-go/target/` such as `sdk-headers` or `examples/http_auth`.
fn go_project(spec: &str, plugins: &[(&str, &str)]) -> tempfile::TempDir {
    let modules: Vec<_> = plugins
        .iter()
        .map(|&(name, filter)| (name, support::go_filter(filter)))
        .collect();
    support::plugins_project(spec, &modules)
}

/// One middleware item named `name` with `config` (a JSON value).
fn middleware(name: &str, config: &serde_json::Value) -> String {
    format!("  - name: {name}\n    config: '{config}'\n")
}

const SDK_FILTERS: [&str; 9] = [
    "sdk-headers",
    "sdk-body",
    "sdk-reply",
    "sdk-callout",
    "sdk-state",
    "sdk-props",
    "examples/http_headers",
    "examples/http_auth",
    "examples/metrics_tick",
];

#[test]
fn go_sdk_modules_are_abi_0_2_1_with_initialize_and_the_sdk_allocator() {
    let engine = engine().unwrap();
    for filter in SDK_FILTERS {
        let plugin = PluginModule::compile(&engine, &support::go_filter(filter)).unwrap();
        let info = &plugin.info;
        assert_eq!(info.abi, AbiVersion::V0_2_1, "{filter}");
        assert_eq!(
            info.entry,
            EntryPoint::Initialize { with_main: false },
            "{filter}"
        );
        assert_eq!(info.allocator, Allocator::ProxyOnMemoryAllocate, "{filter}");
        for export in [
            "proxy_abi_version_0_2_1",
            "proxy_on_memory_allocate",
            "proxy_on_context_create",
            "proxy_on_vm_start",
            "proxy_on_configure",
            "proxy_on_tick",
            "proxy_on_queue_ready",
            "proxy_on_request_headers",
            "proxy_on_request_body",
            "proxy_on_request_trailers",
            "proxy_on_response_headers",
            "proxy_on_response_body",
            "proxy_on_response_trailers",
            "proxy_on_http_call_response",
            "proxy_on_done",
            "proxy_on_log",
            "proxy_on_delete",
        ] {
            assert!(
                info.exports.iter().any(|e| e == export),
                "{filter}: missing export {export} in {:?}",
                info.exports
            );
        }
        // Only the host functions the SDK declares, all of them ABI 0.2.1 `env` functions.
        for (module, name) in &info.imports {
            assert!(
                module == "wasi_snapshot_preview1"
                    || (module == "env" && name.starts_with("proxy_")),
                "{filter}: unexpected import {module}.{name}"
            );
        }
    }
}

#[test]
fn go_sdk_logs_at_every_level_and_reads_the_host_log_level() {
    let engine = engine().unwrap();
    let module = PluginModule::compile(&engine, &support::go_filter("sdk-headers")).unwrap();
    let vm = Vm::start(
        &engine,
        &module,
        support::plugin_config("sdk-headers", "{}"),
    )
    .unwrap();
    let logs: Vec<&(LogLevel, String)> = vm.recent_logs().collect();
    for (level, line) in [
        (LogLevel::Trace, "sdk-headers trace"),
        (LogLevel::Debug, "sdk-headers debug"),
        (LogLevel::Info, "sdk-headers info"),
        (LogLevel::Warn, "sdk-headers warn"),
        (LogLevel::Error, "sdk-headers error"),
        (LogLevel::Critical, "sdk-headers critical"),
    ] {
        assert!(
            logs.contains(&&(level, String::from(line))),
            "{line} at {level:?} missing from {logs:?}"
        );
    }
    assert!(
        logs.iter().any(|(level, line)| *level == LogLevel::Info
            && ["trace", "debug", "info", "warn", "error", "critical"]
                .iter()
                .any(|l| *line == format!("sdk-headers host log level {l}"))),
        "GetLogLevel answered a level name: {logs:?}"
    );
}

#[tokio::test]
async fn go_sdk_headers_are_added_replaced_and_removed_through_the_gateway() {
    let echo = echo_upstream().await;
    let config = serde_json::json!({
        "request": {
            "add": {"x-go-added": "1"},
            "set": {"x-go-set": "new", "user-agent": "go-sdk"},
            "remove": ["x-go-gone"],
        },
        "response": {
            "add": {"x-go-response": "added"},
            "set": {"content-type": "application/x-go"},
            "remove": ["x-upstream"],
        },
    });
    let dir = go_project(
        &echo_spec(echo.addr.port(), "", &middleware("sdk-headers", &config)),
        &[("sdk-headers", "sdk-headers")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    for round in 0..3 {
        let reply = send(
            Method::GET,
            &gw.url("/echo"),
            &[
                ("x-go-set", "old"),
                ("x-go-gone", "bye"),
                ("user-agent", "test"),
            ],
            b"",
        )
        .await;
        assert_eq!(reply.status, 200, "round {round}: {reply:?}");
        let headers = &reply.json()["headers"];
        assert_eq!(headers["x-go-added"], "1", "{headers}");
        assert_eq!(headers["x-go-set"], "new", "{headers}");
        assert_eq!(headers["user-agent"], "go-sdk", "{headers}");
        assert!(headers.get("x-go-gone").is_none(), "{headers}");
        assert_eq!(reply.header("x-go-response"), "added");
        assert_eq!(reply.header("content-type"), "application/x-go");
        assert_eq!(reply.header("x-upstream"), "", "removed from the response");
        assert_eq!(reply.header("x-go-status"), "200", ":status is readable");
        assert_eq!(reply.header("x-go-method"), "GET", ":method is readable");
        let count: usize = reply.header("x-go-request-headers").parse().unwrap();
        assert!(
            count >= 7,
            "pseudo-headers and the client's headers are in the map: {count}"
        );
    }

    gw.stop().await;

    // Under GC pressure: many requests with large headers, read 20 times each, with the Go GC
    // running after almost every allocation (GOGC=1). Every map the host returns lives in a
    // block it allocated in the guest (proxy_on_memory_allocate); each must arrive intact.
    let mut churn = config.clone();
    churn["churn"] = serde_json::json!(20);
    let dir = go_project(
        &echo_spec(echo.addr.port(), "", &middleware("sdk-headers", &churn)),
        &[("sdk-headers", "sdk-headers")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let client = support::client();
    for round in 0..200 {
        let big = format!("{round}-{}", "g".repeat(8 * 1024));
        let reply = support::send_with(
            &client,
            Method::GET,
            &gw.url("/echo"),
            &[("x-big", &big), ("x-go-set", "old")],
            b"",
        )
        .await;
        assert_eq!(reply.status, 200, "round {round}");
        let headers = &reply.json()["headers"];
        assert_eq!(headers["x-big"], big.as_str(), "round {round}");
        assert_eq!(headers["x-go-set"], "new", "round {round}");
        assert_eq!(reply.header("x-go-method"), "GET", "round {round}");
        assert_eq!(reply.header("x-go-corrupt"), "", "round {round}");
    }
}

#[tokio::test]
async fn go_sdk_bodies_are_buffered_and_replaced_through_the_gateway() {
    let echo = echo_upstream().await;
    for (mode, expected) in [
        ("append", "hello world!"),
        ("prepend", "!hello world"),
        ("replace", "!"),
    ] {
        let config = serde_json::json!({"request": mode, "response": "append", "value": "!"});
        let dir = go_project(
            &echo_spec(echo.addr.port(), "", &middleware("sdk-body", &config)),
            &[("sdk-body", "sdk-body")],
        );
        let gw = support::gateway_in(dir, Config::default()).await;
        let raw = chunked_post(gw.addr, "/echo", &[b"hello", b" world"]).await;
        assert_eq!(support::raw_status(&raw), 200, "{raw}");
        assert_eq!(
            raw_header(&raw, "x-request-body-calls"),
            "5:false,11:false,11:true",
            "each chunk is delivered; while the filter pauses, the size is cumulative"
        );
        assert_eq!(raw_header(&raw, "x-request-body-seen"), "hello world");
        let body = raw.split("\r\n\r\n").nth(1).unwrap();
        let json_end = body.rfind('}').unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(&body[body.find('{').unwrap()..=json_end]).unwrap();
        assert_eq!(doc["body"], expected, "request body {mode}");
        assert!(
            body[json_end + 1..].starts_with('!'),
            "the response body was appended to: {body:?}"
        );
    }

    // The whole response body replaced, and a fixed-length request body in one call.
    let config = serde_json::json!({"request": "none", "response": "replace", "value": "{}"});
    let dir = go_project(
        &echo_spec(echo.addr.port(), "", &middleware("sdk-body", &config)),
        &[("sdk-body", "sdk-body")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let reply = send(Method::POST, &gw.url("/echo"), &[], b"abc").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.as_ref(), b"{}");
    assert_eq!(reply.header("x-request-body-calls"), "3:true");
}

#[tokio::test]
async fn go_sdk_request_and_response_trailers_are_read_and_added() {
    // Request trailers are reported on the same response.
    let echo = echo_upstream().await;
    let config = serde_json::json!({"request": "none", "response": "none"});
    let dir = go_project(
        &echo_spec(echo.addr.port(), "", &middleware("sdk-body", &config)),
        &[("sdk-body", "sdk-body")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let raw = support::raw_exchange(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\ncontent-type: text/plain\r\n\
          transfer-encoding: chunked\r\nconnection: close\r\n\r\n\
          5\r\nhello\r\n0\r\nx-client-trailer: yes\r\n\r\n",
    )
    .await;
    assert_eq!(support::raw_status(&raw), 200, "{raw}");
    assert_eq!(
        raw_header(&raw, "x-request-trailers"),
        "1:yes",
        "one trailer, readable in the callback, and the filter's add accepted"
    );
    gw.stop().await;

    // Response trailers come after the response headers: the filter keeps what it saw in
    // shared data and reports it on a later response.
    let upstream = support::trailers_upstream().await;
    let dir = go_project(
        &echo_spec(upstream.port(), "", &middleware("sdk-body", &config)),
        &[("sdk-body", "sdk-body")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let request = b"GET /echo HTTP/1.1\r\nHost: t\r\nte: trailers\r\nconnection: close\r\n\r\n";
    let raw = support::raw_exchange(gw.addr, request).await;
    assert_eq!(support::raw_status(&raw), 200, "{raw}");
    let mut last = String::new();
    for _ in 0..50 {
        let raw = support::raw_exchange(gw.addr, request).await;
        last = raw_header(&raw, "x-last-response-trailers").to_string();
        if !last.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        last, "1:t",
        "one trailer, readable in the callback, and the filter's add accepted"
    );
}

#[tokio::test]
async fn go_sdk_local_replies_from_the_request_and_the_response_phase() {
    let echo = echo_upstream().await;
    let config = serde_json::json!({"deny_header": "x-deny", "replace_status": "200"});
    let dir = go_project(
        &echo_spec(echo.addr.port(), "", &middleware("sdk-reply", &config)),
        &[("sdk-reply", "sdk-reply")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;

    // Request phase: a problem+json 403 from the SDK's problem helper; no upstream call.
    let before = echo.connections.load(Ordering::SeqCst);
    let denied = send(Method::GET, &gw.url("/echo"), &[("x-deny", "1")], b"").await;
    let doc = denied.problem(403, "forbidden");
    assert_eq!(doc["title"], "Forbidden");
    assert_eq!(doc["detail"], "denied by the Go filter: x-deny");
    assert_eq!(denied.header("x-go-reply"), "request");
    assert_eq!(echo.connections.load(Ordering::SeqCst), before);

    // Response phase: the upstream's 200 is replaced by the filter's 418.
    let replaced = get(&gw.url("/echo")).await;
    assert_eq!(replaced.status.as_u16(), 418, "{replaced:?}");
    assert_eq!(replaced.body.as_ref(), b"replaced by go");
    assert_eq!(replaced.header("x-go-reply"), "response");
    assert_eq!(replaced.header("content-type"), "text/plain");
    assert!(echo.connections.load(Ordering::SeqCst) > before);
}

#[tokio::test]
async fn go_sdk_http_callouts_pause_the_request_and_resume_it() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let auth = auth_upstream(seen.clone()).await;
    let echo = echo_upstream().await;
    let huge =
        support::upstream(|_| async { Response::new(full(vec![b'x'; (1 << 20) + 1])) }).await;
    let upstreams = format!(
        "  auth: {{endpoints: ['http://127.0.0.1:{}'], allow_plaintext: true}}\n  huge: {{endpoints: ['http://127.0.0.1:{}'], allow_plaintext: true}}",
        auth.addr.port(),
        huge.addr.port()
    );
    let chain = |upstream: &str| {
        middleware(
            "sdk-callout",
            &serde_json::json!({"upstream": upstream, "path": "/check", "timeout_ms": 2000}),
        )
    };
    let dir = go_project(
        &echo_spec(echo.addr.port(), &upstreams, &chain("auth")),
        &[("sdk-callout", "sdk-callout")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;

    // Allowed: resumed from the callout's callback with the answer added.
    let allowed = send(
        Method::GET,
        &gw.url("/echo?x=1"),
        &[("authorization", "Bearer good")],
        b"",
    )
    .await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let echoed = allowed.json();
    assert_eq!(echoed["headers"]["x-auth-user"], "alice");
    let callout_headers: usize = echoed["headers"]["x-callout-headers"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(callout_headers >= 2, ":status and content-length at least");
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        "GET /check auth /echo?x=1",
        "the callout carries the filter's :method, :path, :authority and headers"
    );

    // Denied: a problem reply from the callout callback; the upstream is never called.
    let before = echo.connections.load(Ordering::SeqCst);
    let denied = get(&gw.url("/echo")).await;
    denied.problem(403, "forbidden");
    assert_eq!(denied.header("x-callout-status"), "401");
    assert_eq!(echo.connections.load(Ordering::SeqCst), before);

    // Several paused requests at once, each resumed by its own callout.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let url = gw.url(&format!("/echo?n={i}"));
            tokio::spawn(async move {
                send(Method::GET, &url, &[("authorization", "Bearer good")], b"").await
            })
        })
        .collect();
    for handle in handles {
        let reply = handle.await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["headers"]["x-auth-user"], "alice");
    }
    gw.stop().await;

    // An unknown upstream: DispatchHttpCall returns ErrBadArgument.
    let dir = go_project(
        &echo_spec(echo.addr.port(), &upstreams, &chain("nowhere")),
        &[("sdk-callout", "sdk-callout")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let reply = get(&gw.url("/echo")).await;
    reply.problem(500, "callout-failed");
    assert_eq!(
        reply.header("x-callout-error"),
        "proxy-wasm status 2 (bad argument)"
    );
    gw.stop().await;

    // A callout response over the buffer limit resets the call, as in Envoy: the callback gets
    // no headers, and GetStatus answers 11 (BrokenConnection) "reset".
    let dir = go_project(
        &echo_spec(echo.addr.port(), &upstreams, &chain("huge")),
        &[("sdk-callout", "sdk-callout")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let reply = get(&gw.url("/echo")).await;
    reply.problem(502, "callout-failed");
    assert_eq!(reply.header("x-callout-failed"), "11 reset");
}

#[tokio::test]
async fn go_sdk_ticks_shared_data_queues_and_metrics_work_across_callbacks() {
    let echo = echo_upstream().await;
    let config = serde_json::json!({"tick_ms": 20, "queue": "go-events"});
    let dir = go_project(
        &echo_spec(echo.addr.port(), "", &middleware("sdk-state", &config)),
        &[("sdk-state", "sdk-state")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    // The tick period set in OnPluginStart runs from start-up, before any request.
    tokio::time::sleep(Duration::from_millis(150)).await;
    for expected in 1..=3 {
        let reply = get(&gw.url("/mock")).await;
        assert_eq!(reply.status, 200);
        if expected == 1 {
            let ticks: u64 = reply.header("x-ticks").parse().unwrap();
            assert!(ticks >= 2, "ticks before the first request: {ticks}");
        }
        assert_eq!(
            reply.header("x-hits"),
            expected.to_string(),
            "CAS increments"
        );
        assert_eq!(reply.header("x-requests-metric"), expected.to_string());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = get(&gw.url("/mock")).await;
    let ticks: u64 = reply.header("x-ticks").parse().unwrap();
    assert!(ticks >= 5, "OnTick ran every 20 ms: {ticks}");
    let dequeued: u64 = reply.header("x-dequeued").parse().unwrap();
    assert!(
        dequeued >= 3,
        "OnQueueReady dequeued the enqueued paths: {dequeued}"
    );
    let done: u64 = reply.header("x-done").parse().unwrap();
    assert!(
        done >= 3,
        "OnHttpStreamDone ran for the earlier streams: {done}"
    );
    assert_eq!(reply.header("x-resolved"), "same", "ResolveSharedQueue");
    assert_eq!(
        reply.header("x-clock"),
        "plausible",
        "GetCurrentTimeNanoseconds"
    );
    assert_eq!(
        reply.header("x-foreign"),
        "proxy-wasm status 1 (not found)",
        "CallForeignFunction of an unknown name is ErrNotFound"
    );
    assert_eq!(
        reply.header("x-foreign-round-trip"),
        "hello",
        "CallForeignFunction: compress, then uncompress"
    );
    assert_eq!(reply.header("x-postponed"), "");
    let metrics = get(&gw.url("/__barbacane/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    for line in [
        "barbacane_plugin_go_sdk_requests_total{plugin=\"sdk-state\"} 4",
        "barbacane_plugin_go_sdk_inflight{plugin=\"sdk-state\"} 0",
        "barbacane_plugin_go_sdk_path_length_count{plugin=\"sdk-state\"} 4",
        "barbacane_plugin_failures_total{plugin=\"sdk-state\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[tokio::test]
async fn go_sdk_paused_requests_are_resumed_from_on_tick_through_the_effective_context() {
    let echo = echo_upstream().await;
    // Its own plugin name, so its shared data (keyed by vm_id) is not the other test's.
    let config = serde_json::json!({"tick_ms": 50, "queue": "go-postponed", "postpone": true});
    let dir = go_project(
        &echo_spec(echo.addr.port(), "", &middleware("sdk-postpone", &config)),
        &[("sdk-postpone", "sdk-state")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let url = gw.url(&format!("/echo?p={i}"));
            tokio::spawn(async move { send(Method::GET, &url, &[], b"").await })
        })
        .collect();
    for handle in handles {
        let reply = handle.await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header("x-postponed"), "resumed-on-tick");
        assert_eq!(
            reply.header("x-upstream"),
            "echo",
            "the upstream was called"
        );
    }
}

#[tokio::test]
async fn go_sdk_properties_and_filter_state() {
    let echo = echo_upstream().await;
    let dir = go_project(
        &echo_spec(echo.addr.port(), "", "  - name: sdk-props\n"),
        &[("sdk-props", "sdk-props")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let reply = send(Method::GET, &gw.url("/echo?q=1"), &[("x-a", "1")], b"").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for (header, value) in [
        ("x-prop-request-path", "/echo?q=1"),
        ("x-prop-request-method", "GET"),
        ("x-prop-request-header-x-a", "1"),
        ("x-prop-headers-map-x-a", "1"),
        ("x-prop-plugin-name", "sdk-props"),
        ("x-prop-route-name", "echoGet"),
        ("x-prop-no-such", "<absent>"),
        ("x-prop-go-key", "from-go"),
        ("x-prop-response-code", "200"),
    ] {
        assert_eq!(reply.header(header), value, "{header}");
    }
    let address = reply.header("x-prop-source-address");
    assert!(
        address.starts_with("127.0.0.1:"),
        "source.address {address}"
    );
    let port: u16 = reply.header("x-prop-source-port").parse().unwrap();
    assert!(
        address.ends_with(&format!(":{port}")),
        "source.port decodes as a little-endian int64: {port} vs {address}"
    );
}

#[test]
fn go_sdk_configuration_errors_fail_the_compile_with_the_config_helpers_message() {
    for (filter, config, complaint) in [
        (
            "sdk-headers",
            r#"{"request": {"bogus": 1}}"#,
            r#"invalid configuration: unknown field "bogus""#,
        ),
        (
            "sdk-callout",
            r#"{"upstream": "auth", "timeout_ms": "soon"}"#,
            "invalid configuration at /timeout_ms: expected uint32, got string",
        ),
        (
            "sdk-body",
            r#"{"request": "sideways"}"#,
            r#"unknown mode "sideways""#,
        ),
    ] {
        let dir = go_project(
            &echo_spec(
                1,
                "",
                &format!("  - name: {filter}\n    config: '{config}'\n"),
            ),
            &[(filter, filter)],
        );
        let diagnostics = compile::compile(
            &[dir.path().join("api.yaml")],
            Some(&dir.path().join("barbacane.yaml")),
            Options { dev: true },
        )
        .err()
        .unwrap_or_else(|| panic!("{filter} with {config} compiled"));
        let rejected = diagnostics
            .iter()
            .find(|d| d.message.contains(filter))
            .unwrap_or_else(|| panic!("no diagnostic names the plugin: {diagnostics:#?}"));
        assert_eq!(
            rejected.message,
            format!("plugin '{filter}' rejected its configuration: {complaint}"),
            "{diagnostics:#?}"
        );
        assert_eq!(format!("{:?}", rejected.code), "E1061");
    }
}

#[tokio::test]
async fn go_sdk_examples_run_through_the_gateway() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let auth = auth_upstream(seen.clone()).await;
    let echo = echo_upstream().await;
    let upstreams = format!(
        "  auth: {{endpoints: ['http://127.0.0.1:{}'], allow_plaintext: true}}",
        auth.addr.port()
    );
    let chain = format!(
        "{}{}{}",
        middleware(
            "http_headers",
            &serde_json::json!({"header": "x-hello", "value": "gopher"})
        ),
        middleware(
            "http_auth",
            &serde_json::json!({"upstream": "auth", "path": "/check"})
        ),
        middleware("metrics_tick", &serde_json::json!({"tick_ms": 50})),
    );
    let dir = go_project(
        &echo_spec(echo.addr.port(), &upstreams, &chain),
        &[
            ("http_headers", "examples/http_headers"),
            ("http_auth", "examples/http_auth"),
            ("metrics_tick", "examples/metrics_tick"),
        ],
    );
    let gw = support::gateway_in(dir, Config::default()).await;

    let reply = send(
        Method::GET,
        &gw.url("/echo"),
        &[("authorization", "Bearer good")],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let headers = &reply.json()["headers"];
    assert_eq!(headers["x-hello"], "gopher");
    assert_eq!(headers["x-auth-user"], "alice");
    assert_eq!(reply.header("x-powered-by"), "go");

    let anonymous = get(&gw.url("/echo")).await;
    anonymous.problem(401, "unauthorized");
    assert_eq!(anonymous.header("www-authenticate"), "Bearer");
    let bad = send(
        Method::GET,
        &gw.url("/echo"),
        &[("authorization", "Bearer bad")],
        b"",
    )
    .await;
    bad.problem(401, "unauthorized");

    let metrics = get(&gw.url("/__barbacane/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let line = "barbacane_plugin_example_requests_total{plugin=\"metrics_tick\"} 1";
    assert!(
        text.contains(line),
        "{line} missing (the auth example answered the other two):\n{text}"
    );
}

/// A gateway running `sdk-more` (with `vm_config: go-vm-conf`) in front of the echo upstream,
/// with `trailers` (a `support::trailers_upstream`) as the callout upstream; `upstream_port` is the
/// routes' upstream.
async fn sdk_more_gateway(upstream_port: u16) -> support::TestGateway {
    let trailers = support::trailers_upstream().await;
    let upstreams = format!(
        "  trailers: {{endpoints: ['http://127.0.0.1:{}'], allow_plaintext: true}}",
        trailers.port()
    );
    let chain = "  - name: sdk-more\n    vm_config: go-vm-conf\n    config: '{\"upstream\": \"trailers\"}'\n";
    let dir = go_project(
        &echo_spec(upstream_port, &upstreams, chain),
        &[("sdk-more", "sdk-more")],
    );
    support::gateway_in(dir, Config::default()).await
}

#[tokio::test]
async fn go_sdk_whole_header_maps_are_replaced() {
    let echo = echo_upstream().await;
    let gw = sdk_more_gateway(echo.addr.port()).await;
    let reply = send(
        Method::GET,
        &gw.url("/echo"),
        &[("x-mode", "set"), ("x-drop", "1"), ("x-keep", "2")],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = &reply.json()["headers"];
    assert_eq!(seen["x-set-req"], "yes", "upstream saw {seen}");
    assert_eq!(seen["x-keep"], "2", "upstream saw {seen}");
    assert!(seen.get("x-drop").is_none(), "upstream saw {seen}");
    assert_eq!(reply.header("x-set-resp"), "yes");
    assert!(
        reply.headers.get("x-upstream").is_none(),
        "the replaced map left out x-upstream: {reply:?}"
    );
    assert_eq!(reply.header("content-type"), "application/json");
}

#[tokio::test]
async fn go_sdk_trailer_maps_are_replaced() {
    // Request trailers: replaced in the callback and read back.
    let echo = echo_upstream().await;
    let gw = sdk_more_gateway(echo.addr.port()).await;
    let raw = support::raw_exchange(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nx-mode: trailers\r\ncontent-type: text/plain\r\n\
          transfer-encoding: chunked\r\nconnection: close\r\n\r\n\
          5\r\nhello\r\n0\r\nx-client-trailer: yes\r\n\r\n",
    )
    .await;
    assert_eq!(support::raw_status(&raw), 200, "{raw}");
    assert_eq!(raw_header(&raw, "x-req-trailers"), "x-set-req-trailer=r");
    gw.stop().await;

    // Response trailers: the client gets the filter's map instead of the upstream's.
    let upstream = support::trailers_upstream().await;
    let gw = sdk_more_gateway(upstream.port()).await;
    let raw = support::raw_exchange(
        gw.addr,
        b"GET /echo HTTP/1.1\r\nHost: t\r\nx-mode: trailers\r\nte: trailers\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(support::raw_status(&raw), 200, "{raw}");
    assert_eq!(raw_header(&raw, "x-set-trailer"), "s", "{raw}");
    assert_eq!(raw_header(&raw, "x-upstream-trailer"), "", "{raw}");
}

#[tokio::test]
async fn go_sdk_streams_are_reset_from_the_request_and_the_response_phase() {
    let echo = echo_upstream().await;
    let gw = sdk_more_gateway(echo.addr.port()).await;
    for mode in ["reset-request", "reset-response"] {
        let addr = gw.addr;
        let request = format!("GET /echo HTTP/1.1\r\nHost: t\r\nx-mode: {mode}\r\n\r\n");
        let raw = tokio::task::spawn_blocking(move || support::raw(addr, request.as_bytes()))
            .await
            .unwrap();
        assert_eq!(
            raw, "",
            "{mode}: no response at all, the connection was closed"
        );
    }
    // The gateway keeps serving.
    let ok = send(Method::GET, &gw.url("/echo"), &[], b"").await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn go_sdk_paused_responses_are_resumed_from_on_tick() {
    let echo = echo_upstream().await;
    let gw = sdk_more_gateway(echo.addr.port()).await;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = gw.url("/echo");
            tokio::spawn(async move {
                send(Method::GET, &url, &[("x-mode", "pause-response")], b"").await
            })
        })
        .collect();
    for handle in handles {
        let reply = handle.await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header("x-resumed"), "tick", "{reply:?}");
        assert_eq!(reply.header("x-upstream"), "echo");
        assert_eq!(
            reply.json()["uri"],
            "/echo",
            "the body follows the resumed headers"
        );
    }
}

#[tokio::test]
async fn go_sdk_vm_configuration_and_typed_properties() {
    let echo = echo_upstream().await;
    let gw = sdk_more_gateway(echo.addr.port()).await;
    // Two connections from known local ports: source.port (read with GetPropertyUint64) is
    // each connection's own, and so is connection.id (Envoy numbers connections from 1).
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let local = stream.local_addr().unwrap().port();
        stream
            .write_all(b"GET /echo HTTP/1.1\r\nHost: t\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
        let raw = String::from_utf8_lossy(&out);
        assert_eq!(support::raw_status(&raw), 200, "{raw}");
        assert_eq!(raw_header(&raw, "x-vm-config"), "go-vm-conf", "{raw}");
        assert_eq!(raw_header(&raw, "x-prop-mtls"), "false", "{raw}");
        assert_eq!(
            raw_header(&raw, "x-prop-source-port"),
            local.to_string(),
            "{raw}"
        );
        let id = raw_header(&raw, "x-prop-connection-id");
        let id: u64 = id
            .parse()
            .unwrap_or_else(|_| panic!("connection.id as a uint64: {raw}"));
        assert!(id > 0, "{raw}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each connection has its own id");
}

#[tokio::test]
async fn go_sdk_http_callout_trailers_are_read() {
    let echo = echo_upstream().await;
    let gw = sdk_more_gateway(echo.addr.port()).await;
    let reply = send(Method::GET, &gw.url("/echo"), &[("x-mode", "callout")], b"").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let got = reply.header("x-call-trailers");
    assert!(
        got.ends_with(":1:x-upstream-trailer=t"),
        "headers:trailers:map of the callout response: {got}"
    );
    assert_eq!(
        reply.header("x-upstream"),
        "echo",
        "the request was resumed"
    );
}

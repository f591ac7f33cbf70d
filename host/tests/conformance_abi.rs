//! The Proxy-Wasm conformance suite, ABI part: the host functions, callbacks and WASI stubs the
//! feature tests (`conformance.rs`) leave out, through the real gateway against real upstreams.
//! Filter `hostcalls` (`conformance/filters/hostcalls`, built from source with the upstream
//! `proxy-wasm` crate) reports each answer it got as an `x-hc-*` response header; a hand-written
//! ABI 0.1.0 module covers what only old modules do. Each test checks one behaviour against
//! Envoy's. `conformance/run` runs this file and writes `conformance/REPORT.md` from
//! `conformance/cases.tsv`.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::server::Config;
use http::Method;
use std::time::Duration;
use support::{Reply, TestGateway, echo_spec, echo_upstream, get, raw_header, send};

/// The `hostcalls` filter with a root id and a VM configuration, calling upstream `echo`.
const HOSTCALLS: &str = "  - name: hostcalls\n    root_id: hc-root\n    vm_config: vm-conf\n    config: '{\"upstream\": \"echo\"}'\n";

/// A gateway running filter `hostcalls` in front of `upstream_port`.
async fn hostcalls_gateway(upstream_port: u16) -> TestGateway {
    let dir = support::plugins_project(
        &echo_spec(upstream_port, "", HOSTCALLS),
        &[("hostcalls", support::conformance_filter("hostcalls"))],
    );
    support::gateway_in(dir, Config::default()).await
}

/// One GET through `hostcalls` to the echo upstream.
async fn hostcalls_get() -> Reply {
    let echo = echo_upstream().await;
    let gw = hostcalls_gateway(echo.addr.port()).await;
    let reply = get(&gw.url("/echo")).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply
}

/// Asserts each `(x-hc-NAME, value)` of `expected` on `reply`.
fn assert_reported(reply: &Reply, expected: &[(&str, &str)]) {
    for (name, value) in expected {
        let header = format!("x-hc-{name}");
        assert_eq!(reply.header(&header), *value, "{header}");
    }
}

#[tokio::test]
async fn header_maps_add_replace_remove_and_set_whole_maps_as_envoy_does() {
    let reply = hostcalls_get().await;
    assert_reported(
        &reply,
        &[
            // add appends a repeat; get returns the first value of a repeated header.
            ("dup", "1,2"),
            ("dup-first", "1"),
            // replace collapses the repeats into one; remove removes every one.
            ("replaced", "3"),
            ("removed", "0"),
            // A missing header is NOT_FOUND, which the SDK turns into None.
            ("missing", "<none>"),
        ],
    );
    let size: u32 = reply.header("x-hc-map-size").parse().unwrap();
    assert!(size > 0, "proxy_get_header_map_size answers OK with a size");
    let echoed = reply.json();
    assert_eq!(
        echoed["headers"]["x-hc-set-pairs"], "yes",
        "proxy_set_header_map_pairs replaces the request headers"
    );
    assert!(echoed["headers"].get("x-dup").is_none());
    assert_eq!(echoed["uri"], "/echo", "pseudo-headers survive a set");
    assert_eq!(
        reply.header("x-hc-set-response-pairs"),
        "yes",
        "proxy_set_header_map_pairs replaces the response headers"
    );
    assert_eq!(reply.status, 200, ":status survives a set");
}

#[tokio::test]
async fn header_map_size_is_the_byte_size_of_keys_and_values() {
    let reply = hostcalls_get().await;
    assert_reported(
        &reply,
        &[("map-size-bytes", "true"), ("map-size-serialized", "false")],
    );
}

#[tokio::test]
async fn buffer_status_and_body_reads_see_the_buffered_body() {
    let echo = echo_upstream().await;
    let gw = hostcalls_gateway(echo.addr.port()).await;
    let reply = send(
        Method::POST,
        &gw.url("/echo"),
        &[("content-type", "text/plain")],
        b"hello",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_reported(
        &reply,
        &[
            // Buffer status: the length of the (whole, buffered) body; no flags, as Envoy.
            ("body-status", "Ok length=5 flags=0"),
            ("body-size", "5"),
            ("body", "hello"),
            ("body-slice", "ell"),
            // Reading past the end is OK with nothing, which the SDK turns into None.
            ("body-past-end", "<none>"),
            ("body-status-invalid", "BadArgument"),
        ],
    );
    assert_eq!(reply.json()["body"], "hello");
}

#[tokio::test]
async fn unknown_grpc_tokens_and_foreign_function_names_answer_errors_the_sdk_returns() {
    let reply = hostcalls_get().await;
    assert_reported(
        &reply,
        &[
            ("grpc-call", "Ok"),
            ("grpc-stream", "Ok"),
            ("grpc-send", "NotFound"),
            ("grpc-cancel", "NotFound"),
            ("grpc-close", "NotFound"),
            ("foreign-unknown", "NotFound"),
        ],
    );
}

#[tokio::test]
async fn envoys_compress_and_uncompress_foreign_functions_are_zlib() {
    let reply = hostcalls_get().await;
    assert_reported(
        &reply,
        &[
            ("foreign-compress", "Ok"),
            ("foreign-round-trip", "hello"),
            ("foreign-uncompress-garbage", "SerializationFailure"),
        ],
    );
    // What the plugin got is a zlib stream (RFC 1950) any decoder reads, as Envoy's.
    let hex = reply.header("x-hc-foreign-compressed");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::ZlibDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    assert_eq!(text, "hello");
}

#[tokio::test]
async fn a_callout_without_authority_and_an_unknown_effective_context_are_bad_arguments() {
    let reply = hostcalls_get().await;
    assert_reported(
        &reply,
        &[
            ("http-call-no-authority", "BadArgument"),
            ("effective-context-unknown", "BadArgument"),
            ("effective-context-self", "Ok"),
        ],
    );
}

#[tokio::test]
async fn tcp_stream_types_are_accepted_in_http_contexts_and_do_nothing() {
    let reply = hostcalls_get().await;
    assert_reported(
        &reply,
        &[
            ("continue-downstream", "Ok"),
            ("continue-upstream", "Ok"),
            ("close-downstream", "Ok"),
            ("close-upstream", "Ok"),
            ("continue-stream-invalid", "BadArgument"),
        ],
    );
}

#[tokio::test]
async fn clocks_and_the_log_level_answer_sane_values() {
    let reply = hostcalls_get().await;
    assert_reported(
        &reply,
        &[
            ("time", "true"),
            ("wasi-time", "true"),
            ("time-agrees", "true"),
            ("wasi-monotonic", "true"),
        ],
    );
    let level = reply.header("x-hc-log-level");
    assert!(
        ["Trace", "Debug", "Info", "Warn", "Error", "Critical"].contains(&level),
        "proxy_get_log_level answers a level in 0..=5: {level:?}"
    );
}

#[tokio::test]
async fn wasi_randomness_stdio_environment_and_stubs_answer_as_envoys() {
    let reply = hostcalls_get().await;
    assert_reported(
        &reply,
        &[
            ("wasi-hashmap", "true"),
            ("wasi-random", "true"),
            ("wasi-random-over-limit", "28"),
            ("wasi-stdio", "ok"),
            ("wasi-environ", "0"),
            ("wasi-args", "0"),
            (
                "wasi-stubs",
                "fd_read=52 fd_close=0 fd_seek=0 fd_fdstat_get=0/64 fd_fdstat_get(99)=8 \
                 fd_fdstat_set_flags=52 fd_prestat_get=8 fd_prestat_dir_name=52 \
                 poll_oneoff=0/0 sched_yield=0 clock_res_get=0/1 clock_time_get(cputime)=58",
            ),
            ("env-extras", "emscripten_notify_memory_growth=ok"),
        ],
    );
}

#[tokio::test]
async fn the_root_context_reads_its_configurations_and_identity_at_start() {
    let reply = hostcalls_get().await;
    assert_reported(
        &reply,
        &[
            ("vm-config", "vm-conf"),
            // ABI 0.1.0's proxy_get_configuration: the VM configuration in on_vm_start, the
            // plugin configuration in on_configure.
            ("legacy-vm-config", "vm-conf"),
            ("legacy-config", "match"),
            ("plugin-name", "hostcalls"),
            ("plugin-root-id", "hc-root"),
        ],
    );
}

#[tokio::test]
async fn abi_0_1_0_continue_calls_resume_what_the_same_callback_paused() {
    let echo = echo_upstream().await;
    let gw = hostcalls_gateway(echo.addr.port()).await;
    let reply = send(Method::GET, &gw.url("/echo"), &[("x-hc-pause", "1")], b"").await;
    assert_eq!(reply.status, 200);
    assert_reported(
        &reply,
        &[
            ("continue-request", "Ok"),
            ("continue-response", "Ok"),
            ("clear-route-cache", "Ok"),
        ],
    );
    assert_eq!(
        reply.json()["headers"]["x-hc-set-pairs"],
        "yes",
        "the request went on to the upstream"
    );
}

/// Sends GETs to `/echo?poll` (with `headers`) until `done` says the reply shows what was
/// waited for; panics after 2 s.
async fn poll_until(
    gw: &TestGateway,
    headers: &[(&str, &str)],
    done: impl Fn(&Reply) -> bool,
) -> Reply {
    for _ in 0..100 {
        let reply = send(Method::GET, &gw.url("/echo?poll"), headers, b"").await;
        if done(&reply) {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the gateway never reported what was waited for");
}

/// Waits until the stream of request path `path` has ended (its `proxy_on_delete` ran) and
/// returns a reply carrying what its callbacks recorded.
async fn ended(gw: &TestGateway, path: &str) -> Reply {
    poll_until(gw, &[("x-hc-of", path)], |r| {
        r.header("x-hc-ended").contains("delete")
    })
    .await
}

#[tokio::test]
async fn streams_end_with_on_done_then_on_log_then_on_delete() {
    let echo = echo_upstream().await;
    let gw = hostcalls_gateway(echo.addr.port()).await;
    assert_eq!(get(&gw.url("/echo?ended")).await.status, 200);
    let reply = ended(&gw, "/echo?ended").await;
    assert_eq!(reply.header("x-hc-ended"), "done log delete");
}

/// In `on_log` the heads are still readable, and `request.size` / `response.size` are the body
/// bytes that passed each way.
#[tokio::test]
async fn on_log_still_reads_the_request_and_response_headers() {
    let echo = echo_upstream().await;
    let gw = hostcalls_gateway(echo.addr.port()).await;
    let sent = get(&gw.url("/echo?logged")).await;
    assert_eq!(sent.status, 200);
    let reply = ended(&gw, "/echo?logged").await;
    assert_eq!(
        reply.header("x-hc-logged"),
        format!("GET 200 0 {}", sent.body.len())
    );

    let sent = send(Method::POST, &gw.url("/echo?posted"), &[], b"hello").await;
    assert_eq!(sent.status, 200);
    let reply = ended(&gw, "/echo?posted").await;
    assert_eq!(
        reply.header("x-hc-logged"),
        format!("POST 200 5 {}", sent.body.len())
    );
}

/// `response.size` counts a body that streams in several chunks, which the filters see one by
/// one (the gateway pumps it through them), as it counts a body read whole.
#[tokio::test]
async fn on_log_counts_a_response_body_that_streams_in_chunks() {
    const CHUNKS: [&str; 3] = ["first chunk, ", "second chunk, ", "last"];
    let streaming = support::upstream(|_| async {
        let frames = futures_util::stream::unfold(0, |sent| async move {
            let chunk = CHUNKS.get(sent)?;
            // Apart in time, so that the gateway reads them as separate frames.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let frame = Ok::<_, barbacane::server::BoxError>(http_body::Frame::data(
                bytes::Bytes::from_static(chunk.as_bytes()),
            ));
            Some((frame, sent + 1))
        });
        http::Response::new(barbacane::server::Body::new(
            http_body_util::StreamBody::new(frames),
        ))
    })
    .await;
    let gw = hostcalls_gateway(streaming.addr.port()).await;
    let sent = get(&gw.url("/echo?streamed")).await;
    assert_eq!(sent.body, CHUNKS.concat().as_bytes());
    let reply = ended(&gw, "/echo?streamed").await;
    assert_eq!(
        reply.header("x-hc-logged"),
        format!("GET 200 0 {}", CHUNKS.concat().len())
    );
}

#[tokio::test]
async fn request_trailers_reach_on_request_trailers() {
    let echo = echo_upstream().await;
    let gw = hostcalls_gateway(echo.addr.port()).await;
    let raw = support::raw_exchange(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\ncontent-type: text/plain\r\n\
          transfer-encoding: chunked\r\nconnection: close\r\n\r\n\
          5\r\nhello\r\n0\r\nx-client-trailer: yes\r\n\r\n",
    )
    .await;
    assert_eq!(support::raw_status(&raw), 200, "{raw}");
    assert_eq!(
        raw_header(&raw, "x-hc-request-trailers"),
        "1:yes",
        "one trailer, readable in the callback (and the filter's add was accepted)"
    );
}

#[tokio::test]
async fn response_trailers_reach_on_response_trailers() {
    let upstream = support::trailers_upstream().await;
    let gw = hostcalls_gateway(upstream.port()).await;
    let raw = support::raw_exchange(
        gw.addr,
        b"GET /echo?trailers HTTP/1.1\r\nHost: t\r\nte: trailers\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(support::raw_status(&raw), 200, "{raw}");
    let reply = ended(&gw, "/echo?trailers").await;
    assert_eq!(
        reply.header("x-hc-response-trailers"),
        "1:t",
        "one trailer, readable in the callback (and the filter's add was accepted)"
    );
}

/// An ABI 0.1.0 module, as old Emscripten and TinyGo builds are: `malloc` only, `_initialize`
/// and `main`, `proxy_get_configuration`, two-parameter headers callbacks. On request headers it
/// adds `x-legacy: s<S> l<L> e<E> c<C>`: S the status and L the value length of
/// `proxy_get_header_map_value` for a missing header, E how many times `_initialize` (tens) and
/// `main` (units) ran, C the length of the plugin configuration `proxy_get_configuration`
/// returned in `proxy_on_configure`. On response headers it adds `x-legacy-response:
/// two-parameter`.
fn legacy_module() -> Vec<u8> {
    wat::parse_str(
        r#"(module
            (import "env" "proxy_get_configuration" (func $get_configuration (param i32 i32) (result i32)))
            (import "env" "proxy_get_header_map_value" (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
            (import "env" "proxy_add_header_map_value" (func $add_value (param i32 i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 2)
            (global $heap (mut i32) (i32.const 65536))
            (global $entry (mut i32) (i32.const 0))
            (global $config_len (mut i32) (i32.const 0))
            (data (i32.const 256) "x-missing")
            (data (i32.const 272) "x-legacy")
            (data (i32.const 288) "s? l? e?? c?")
            (data (i32.const 320) "x-legacy-response")
            (data (i32.const 352) "two-parameter")
            (func (export "proxy_abi_version_0_1_0"))
            (func (export "malloc") (param $size i32) (result i32)
              (local $at i32)
              (local.set $at (global.get $heap))
              (global.set $heap (i32.add (global.get $heap) (local.get $size)))
              (local.get $at))
            (func (export "_initialize")
              (global.set $entry (i32.add (global.get $entry) (i32.const 10))))
            (func (export "main") (param i32 i32) (result i32)
              (global.set $entry (i32.add (global.get $entry) (i32.const 1)))
              (i32.const 0))
            (func (export "proxy_on_configure") (param i32 i32) (result i32)
              (drop (call $get_configuration (i32.const 0) (i32.const 4)))
              (global.set $config_len (i32.load (i32.const 4)))
              (i32.const 1))
            (func (export "proxy_on_request_headers") (param $context i32) (param $headers i32) (result i32)
              (local $status i32)
              (i32.store (i32.const 12) (i32.const 0))
              (local.set $status
                (call $get_value (i32.const 0) (i32.const 256) (i32.const 9) (i32.const 8) (i32.const 12)))
              (i32.store8 (i32.const 289) (i32.add (i32.const 48) (local.get $status)))
              (i32.store8 (i32.const 292) (i32.add (i32.const 48) (i32.load (i32.const 12))))
              (i32.store8 (i32.const 295)
                (i32.add (i32.const 48) (i32.div_u (global.get $entry) (i32.const 10))))
              (i32.store8 (i32.const 296)
                (i32.add (i32.const 48) (i32.rem_u (global.get $entry) (i32.const 10))))
              (i32.store8 (i32.const 299) (i32.add (i32.const 48) (global.get $config_len)))
              (drop (call $add_value (i32.const 0) (i32.const 272) (i32.const 8) (i32.const 288) (i32.const 12)))
              (i32.const 0))
            (func (export "proxy_on_response_headers") (param $context i32) (param $headers i32) (result i32)
              (drop (call $add_value (i32.const 2) (i32.const 320) (i32.const 17) (i32.const 352) (i32.const 13)))
              (i32.const 0)))"#,
    )
    .unwrap()
}

/// One GET through the 0.1.0 module (configuration `abc`); returns the `x-legacy` header the
/// upstream saw and the reply.
async fn legacy_get() -> (String, Reply) {
    let echo = echo_upstream().await;
    let dir = support::plugins_project(
        &echo_spec(echo.addr.port(), "", "  - name: legacy\n    config: abc\n"),
        &[("legacy", legacy_module())],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let reply = get(&gw.url("/echo")).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let legacy = reply.json()["headers"]["x-legacy"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (legacy, reply)
}

#[tokio::test]
async fn an_abi_0_1_0_module_starts_configures_and_filters_through_the_gateway() {
    let (legacy, reply) = legacy_get().await;
    let fields: Vec<&str> = legacy.split(' ').collect();
    assert_eq!(fields.len(), 4, "{legacy:?}");
    assert_eq!(
        fields[2], "e11",
        "_initialize then main(0, 0), once each: {legacy:?}"
    );
    assert_eq!(
        fields[3], "c3",
        "proxy_get_configuration in on_configure returns the plugin configuration through malloc"
    );
    assert_eq!(
        reply.header("x-legacy-response"),
        "two-parameter",
        "two-parameter proxy_on_response_headers"
    );
}

#[tokio::test]
async fn abi_0_1_0_reads_a_missing_header_as_ok_with_an_empty_value() {
    let (legacy, _) = legacy_get().await;
    assert!(
        legacy.starts_with("s0 l0 "),
        "ABI 0.1.0: proxy_get_header_map_value answers OK and an empty value: {legacy:?}"
    );
}

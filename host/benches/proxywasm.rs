//! The Proxy-Wasm host's own costs, with filters built from source with the upstream
//! `proxy-wasm` crate: starting a VM replica (instantiate from the `InstancePre` in the pooling
//! allocator, then Envoy's start-up callbacks; also for a Go and an Emscripten C++ filter of
//! the conformance suite), an empty callback round trip, and the whole
//! per-request work of one headers-only filter (stream, request and response headers, end).
#![allow(
    clippy::unwrap_used,
    reason = "benchmark code: a failed unwrap is a failed run"
)]

/// As in the `barbacane` binary, so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: barbacane_allocator::Allocator = barbacane_allocator::Allocator;

#[path = "../tests/support/filters.rs"]
mod filters;

use barbacane::model::Middleware;
use barbacane::proxywasm::http::Pairs;
use barbacane::proxywasm::properties::StreamInfo;
use barbacane::proxywasm::{MapType, PluginConfig, PluginModule, Vm, engine};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn config(plugin: &str, config: &str) -> PluginConfig {
    let middleware = Middleware {
        plugin: plugin.to_string(),
        config: config.to_string(),
        root_id: String::new(),
        vm_config: String::new(),
        failure: Default::default(),
        backoff: Default::default(),
        allow_on_headers_stop_iteration: false,
        deadline_ms: barbacane::model::default_deadline_ms(),
    };
    PluginConfig::for_middleware(&middleware, std::sync::Arc::from(Vec::new()))
}

/// A typical browser/API-client request head.
fn request_headers() -> Pairs {
    [
        (":method", "GET"),
        (":path", "/hello?x=1"),
        (":authority", "api.example.com"),
        (":scheme", "https"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("authorization", "Bearer abcdefghijklmnopqrstuvwxyz"),
        ("x-request-id", "0f5c5e3a-1b2c-4d5e-8f90-123456789abc"),
        ("cookie", "session=abc; theme=dark"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect()
}

fn bench(c: &mut Criterion) {
    let engine = engine().unwrap();
    let info = std::sync::Arc::new(StreamInfo::default());
    let headers_module =
        PluginModule::compile(&engine, &filters::conformance_filter("headers")).unwrap();
    let body_module = PluginModule::compile(&engine, &filters::conformance_filter("body")).unwrap();

    c.bench_function("replica start (headers filter)", |b| {
        b.iter(|| Vm::start(&engine, &headers_module, config("headers", "x-a: 1")).unwrap())
    });
    // The other SDKs' starts: Go's runtime initialises itself in `_initialize` (a 4.6 MiB
    // module), Emscripten's C++ runs its constructors.
    let go_module = PluginModule::compile(&engine, &filters::go_filter("sdk-headers")).unwrap();
    c.bench_function("replica start (Go SDK filter)", |b| {
        b.iter(|| Vm::start(&engine, &go_module, config("go", "{}")).unwrap())
    });
    let cpp_module = PluginModule::compile(&engine, &filters::cpp_filter("emcc-headers")).unwrap();
    c.bench_function("replica start (Emscripten C++ filter)", |b| {
        b.iter(|| Vm::start(&engine, &cpp_module, config("cpp", "x-a: 1")).unwrap())
    });

    // The `body` filter with nothing to do returns Continue at once: the cost of crossing into
    // the guest and back through the SDK's dispatcher (and the map lent to it and taken back).
    let mut vm = Vm::start(&engine, &body_module, config("body", "")).unwrap();
    let context = vm.create_stream(info.clone()).unwrap();
    let mut pairs = request_headers();
    let request = MapType::RequestHeaders;
    c.bench_function("empty callback round trip", |b| {
        b.iter(|| black_box(vm.map_callback(context, request, &mut pairs, true).unwrap()))
    });

    let mut vm = Vm::start(&engine, &headers_module, config("headers", "x-a: 1")).unwrap();
    let response: Pairs = Pairs::from([
        (":status", "200"),
        ("content-type", "application/json"),
        ("content-length", "60"),
    ]);
    c.bench_function("headers-only filter, one request", |b| {
        b.iter(|| {
            let context = vm.create_stream(info.clone()).unwrap();
            let mut pairs = request_headers();
            black_box(vm.map_callback(context, request, &mut pairs, true).unwrap());
            let mut pairs = response.clone();
            let map = MapType::ResponseHeaders;
            black_box(vm.map_callback(context, map, &mut pairs, false).unwrap());
            vm.end_stream(context).unwrap();
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

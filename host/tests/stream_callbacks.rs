//! The custom section `barbacane.stream_callbacks`: a module that lists the HTTP stream
//! callbacks it implements gets no other, through the VM and through the gateway; a module
//! without it gets every callback it exports (as in Envoy), and a section the host cannot read
//! fails the load with its reason. The filter (`conformance/filters/declared`) implements more
//! callbacks than it declares, and each leaves a trace when called.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::proxywasm::http::Pairs;
use barbacane::proxywasm::properties::StreamInfo;
use barbacane::proxywasm::{
    Direction, MapType, ModuleError, PluginModule, StreamCallback, StreamCallbacks, Vm, engine,
};
use barbacane::server::Config;
use std::sync::Arc;
use support::{echo_upstream, get};

#[test]
fn only_the_declared_callbacks_are_called() {
    let engine = engine().unwrap();
    let module = PluginModule::compile(&engine, &support::conformance_filter("declared")).unwrap();
    let mut vm = Vm::start(&engine, &module, support::plugin_config("declared", "")).unwrap();
    let wants = vm.wants();
    assert_eq!(
        wants.bodies,
        (false, false),
        "undeclared body callbacks: bodies stream past the plugin"
    );
    assert_eq!(
        wants.headers,
        (true, false),
        "response headers undeclared: the response phase passes the plugin by"
    );
    let context = vm.create_stream(Arc::new(StreamInfo::default())).unwrap();
    let mut request = Pairs::new();
    let (result, _) = vm
        .map_callback(context, MapType::RequestHeaders, &mut request, true)
        .unwrap();
    assert_eq!(result, 0);
    assert_eq!(
        request,
        Pairs::from([("x-declared", "request")]),
        "the declared callback ran"
    );
    let mut response = Pairs::new();
    let (result, _) = vm
        .map_callback(context, MapType::ResponseHeaders, &mut response, false)
        .unwrap();
    assert_eq!(result, 0);
    assert_eq!(
        response,
        Pairs::new(),
        "response headers: not declared, not called"
    );
    let size = vm.append_body(
        context,
        Direction::Response,
        bytes::Bytes::from_static(b"kept"),
    );
    assert_eq!(
        vm.on_body(context, Direction::Response, size, true)
            .unwrap(),
        0
    );
    assert_eq!(vm.take_body(context, Direction::Response), &b"kept"[..]);
    vm.end_stream(context).unwrap();
    assert!(!vm.has_stream(context), "on_delete still ends the stream");
    assert!(
        !vm.recent_logs().any(|(_, line)| line == "on_log called"),
        "on_log: not declared, not called: {:?}",
        vm.recent_logs().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_gateway_skips_undeclared_callbacks() {
    let up = echo_upstream().await;
    let spec = format!(
        r#"openapi: 3.1.0
info: {{title: declared callbacks, version: '1'}}
x-barbacane-upstreams:
  echo: {{endpoints: ['http://127.0.0.1:{}'], allow_plaintext: true}}
x-barbacane-middlewares:
  - {{name: declared}}
paths:
  /echo:
    get:
      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: echo}}}}
  /mock:
    get:
      x-barbacane-dispatch: {{name: mock, config: {{body: mocked}}}}
"#,
        up.addr.port()
    );
    let manifest = "plugins:\n  declared: {source: 'file:declared.wasm'}\n";
    let dir = support::project(&[("api.yaml", &spec), ("barbacane.yaml", manifest)]);
    support::write_filter(&dir, "declared.wasm", "declared");
    let gw = support::gateway_in(dir, Config::default()).await;

    let echoed = get(&gw.url("/echo")).await;
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.json()["headers"]["x-declared"], "request");
    assert_eq!(
        echoed.header("x-declared"),
        "",
        "response headers not called"
    );
    let mock = get(&gw.url("/mock")).await;
    assert_eq!(
        (mock.header("x-declared"), mock.body.as_ref()),
        ("", b"mocked".as_slice()),
        "neither response headers nor body called"
    );
}

#[test]
fn an_unreadable_declaration_fails_the_load_with_its_reason() {
    let engine = engine().unwrap();
    let module = |section: &str| {
        let wat = format!(
            r#"(module
                 (@custom "barbacane.stream_callbacks" "{section}")
                 (memory (export "memory") 1)
                 (func (export "proxy_abi_version_0_2_1"))
                 (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0))"#
        );
        PluginModule::compile(&engine, &wat::parse_str(wat).unwrap())
    };
    let undeclared = PluginModule::compile(&engine, &support::conformance_filter("headers"));
    assert_eq!(undeclared.unwrap().info.callbacks, StreamCallbacks::ALL);
    let declared = module(" request_headers\\tlog ").unwrap().info.callbacks;
    let called = |c| declared.contains(c);
    assert!(called(StreamCallback::RequestHeaders) && called(StreamCallback::Log));
    assert!(!called(StreamCallback::ResponseHeaders) && !called(StreamCallback::Done));
    match module("request_headers on_log") {
        Err(e @ ModuleError::StreamCallbacks(_)) => assert_eq!(
            e.to_string(),
            "custom section barbacane.stream_callbacks: unknown callback 'on_log' (known: \
             request_headers, request_body, request_trailers, response_headers, response_body, \
             response_trailers, done, log)"
        ),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("an unknown callback name was accepted"),
    }
}

//! The Proxy-Wasm host so far: loading modules and starting VMs. A filter compiled from source with
//! the upstream `proxy-wasm` crate is recognised and configured; modules that are not Proxy-Wasm
//! plugins, or that fail during start-up, are refused with errors that name the plugin and say why.
//! A body buffer is lent to a filter and copied only if it changes it.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::proxywasm::http::Pairs;
use barbacane::proxywasm::{AbiVersion, Allocator, EntryPoint, ModuleError, PluginModule, engine};

#[test]
fn a_rust_sdk_filter_is_recognised() {
    let bytes = support::conformance_filter("headers");
    let plugin = PluginModule::compile(&engine().unwrap(), &bytes).unwrap();
    let info = &plugin.info;
    assert_eq!(info.abi, AbiVersion::V0_2_1);
    assert_eq!(info.entry, EntryPoint::Initialize { with_main: false });
    assert_eq!(info.allocator, Allocator::ProxyOnMemoryAllocate);
    for export in [
        "proxy_on_context_create",
        "proxy_on_configure",
        "proxy_on_request_headers",
        "proxy_on_done",
    ] {
        assert!(
            info.exports.iter().any(|e| e == export),
            "missing export {export}"
        );
    }
    let imports: Vec<(&str, &str)> = info
        .imports
        .iter()
        .map(|(m, n)| (m.as_str(), n.as_str()))
        .collect();
    for import in [
        ("env", "proxy_log"),
        ("env", "proxy_add_header_map_value"),
        ("env", "proxy_get_buffer_bytes"),
    ] {
        assert!(
            imports.contains(&import),
            "missing import {import:?} in {imports:?}"
        );
    }
    assert!(
        imports.iter().any(|(m, _)| *m == "wasi_snapshot_preview1"),
        "{imports:?}"
    );
}

#[test]
fn modules_that_are_not_proxy_wasm_plugins_are_refused() {
    let engine = engine().unwrap();
    let refuse = |bytes: &[u8]| PluginModule::compile(&engine, bytes).err().unwrap();
    assert!(matches!(
        refuse(b"\x7fELF not wasm"),
        ModuleError::Invalid(_)
    ));
    assert!(matches!(
        refuse(&wat::parse_str("(module)").unwrap()),
        ModuleError::NoAbiMarker
    ));
    let future = wat::parse_str(r#"(module (func (export "proxy_abi_version_0_3_0")) (func (export "malloc") (param i32) (result i32) i32.const 0))"#).unwrap();
    match refuse(&future) {
        ModuleError::UnsupportedAbi(marker) => assert_eq!(marker, "proxy_abi_version_0_3_0"),
        other => panic!("{other:?}"),
    }
    let no_allocator =
        wat::parse_str(r#"(module (func (export "proxy_abi_version_0_2_0")))"#).unwrap();
    assert!(matches!(refuse(&no_allocator), ModuleError::NoAllocator));
    let truncated = support::conformance_filter("headers");
    assert!(matches!(
        refuse(&truncated[..truncated.len() / 2]),
        ModuleError::Invalid(_)
    ));
}

#[test]
fn older_markers_and_entry_points_are_read_as_cpp_host_does() {
    // An Emscripten-style module: 0.1.0 marker, `_start`, `malloc` only.
    let emscripten = wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (func (export "proxy_abi_version_0_1_0"))
            (func (export "_start"))
            (func (export "malloc") (param i32) (result i32) i32.const 8))"#,
    )
    .unwrap();
    let info = PluginModule::compile(&engine().unwrap(), &emscripten)
        .unwrap()
        .info;
    assert_eq!(
        (info.abi, info.entry, info.allocator),
        (AbiVersion::V0_1_0, EntryPoint::Start, Allocator::Malloc)
    );
}

use barbacane::proxywasm::abi::LogLevel;
use barbacane::proxywasm::{PluginConfig, Vm, VmError};

fn start(bytes: &[u8], config: PluginConfig) -> Result<Vm, VmError> {
    let engine = engine().unwrap();
    let module = PluginModule::compile(&engine, bytes).unwrap();
    Vm::start(&engine, &module, config)
}

#[test]
fn a_rust_sdk_filter_starts_and_reads_its_configuration() {
    let vm = start(
        &support::conformance_filter("headers"),
        support::plugin_config("headers", "x-added: yes"),
    )
    .unwrap();
    let logs: Vec<&(LogLevel, String)> = vm.recent_logs().collect();
    assert!(
        logs.contains(&&(LogLevel::Info, String::from("configured header x-added"))),
        "{logs:?}"
    );
}

#[test]
fn a_rejected_configuration_names_the_plugin_and_quotes_its_log() {
    let err = start(
        &support::conformance_filter("headers"),
        support::plugin_config("add-header", "garbage"),
    )
    .err()
    .unwrap();
    assert!(matches!(err, VmError::ConfigureRejected { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "plugin 'add-header' rejected its configuration: configuration must be 'name: value', got \"garbage\""
    );
}

/// A minimal module around `body` (WAT), with the marker, memory and allocator every plugin has.
fn wat_plugin(body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            {body}
            (memory (export "memory") 1)
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024))"#
    ))
    .unwrap()
}

#[test]
fn start_up_failures_are_reported_like_envoy() {
    let rejects_vm = wat_plugin(
        r#"(func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 0)"#,
    );
    assert!(matches!(
        start(&rejects_vm, support::plugin_config("p", "")),
        Err(VmError::VmStartRejected { .. })
    ));

    let traps = wat_plugin(r#"(func (export "_initialize") unreachable)"#);
    match start(&traps, support::plugin_config("p", "")) {
        Err(VmError::Trap { during, .. }) => assert_eq!(during, "_initialize"),
        other => panic!("{:?}", other.err()),
    }

    let exits = wat_plugin(
        r#"(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
           (func (export "_start") i32.const 3 call $exit)"#,
    );
    let err = start(&exits, support::plugin_config("p", ""))
        .err()
        .unwrap();
    assert!(err.to_string().contains("proc_exit(3)"), "{err}");
}

#[test]
fn stdout_becomes_log_lines() {
    let writes = wat_plugin(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
           (data (i32.const 16) "hello from stdout\n")
           (func (export "_initialize")
             (i32.store (i32.const 0) (i32.const 16))
             (i32.store (i32.const 4) (i32.const 18))
             (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 100))))"#,
    );
    let vm = start(&writes, support::plugin_config("p", "")).unwrap();
    let logs: Vec<&(LogLevel, String)> = vm.recent_logs().collect();
    assert_eq!(
        logs,
        vec![&(LogLevel::Info, String::from("hello from stdout"))]
    );
}

#[test]
fn vendor_imports_load_and_only_trap_when_called() {
    let vendor = wat_plugin(
        r#"(import "env" "proxy_redis_call" (func $vendor (param i32) (result i32)))
           (func (export "proxy_on_configure") (param i32 i32) (result i32)
             (drop (call $vendor (i32.const 0)))
             i32.const 1)"#,
    );
    match start(&vendor, support::plugin_config("p", ""))
        .err()
        .unwrap()
    {
        VmError::Trap {
            during, message, ..
        } => {
            assert_eq!(during, "proxy_on_configure");
            assert!(message.contains("proxy_redis_call"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// The plugin's log lines, oldest first.
fn logs(vm: &Vm) -> Vec<String> {
    vm.recent_logs().map(|(_, line)| line.clone()).collect()
}

#[test]
fn shutdown_runs_the_roots_on_done_then_on_delete_as_envoy_does() {
    let lifecycle = support::conformance_filter("lifecycle");
    // on_done returns true: on_delete follows at once.
    let mut vm = start(&lifecycle, support::plugin_config("lifecycle", "")).unwrap();
    assert!(vm.begin_shutdown().unwrap());
    assert!(logs(&vm).ends_with(&[String::from("root done"), String::from("root delete")]));

    // on_done returns false after starting a flush by callout: the VM waits for proxy_done,
    // which the plugin calls from the callout's answer; on_delete comes after.
    let mut config = support::plugin_config("lifecycle", r#"{"flush_upstream": "flush"}"#);
    config.upstreams = std::sync::Arc::from(vec![String::from("flush")]);
    let mut vm = start(&lifecycle, config).unwrap();
    assert!(!vm.begin_shutdown().unwrap());
    let outbox = vm.take_outbox();
    assert!(!outbox.root_finished);
    let [callout] = &outbox.callouts[..] else {
        panic!("one flush callout expected: {:?}", outbox.callouts);
    };
    assert_eq!(callout.headers.get(b":path"), Some(&b"/flush"[..]));
    assert!(!logs(&vm).contains(&String::from("root delete")));
    let answer = barbacane::proxywasm::CallResponse {
        headers: Pairs::from([(":status", "204")]),
        ..Default::default()
    };
    vm.on_http_call_response(callout.token, Ok(answer)).unwrap();
    assert!(vm.take_outbox().root_finished, "proxy_done from the root");
    assert_eq!(logs(&vm).last().unwrap(), "root flushed 204");
    vm.delete_root().unwrap();
    assert_eq!(logs(&vm).last().unwrap(), "root delete");
}

#[test]
fn a_body_a_filter_leaves_as_it_is_passes_without_a_copy() {
    use barbacane::proxywasm::Direction;
    let chunk = bytes::Bytes::from(vec![b'x'; 4096]);
    let body_after = |config: &str| {
        let mut vm = start(
            &support::conformance_filter("body"),
            support::plugin_config("body", config),
        )
        .unwrap();
        let context = vm.create_stream(Default::default()).unwrap();
        let size = vm.append_body(context, Direction::Response, chunk.clone());
        assert_eq!(
            vm.on_body(context, Direction::Response, size, true)
                .unwrap(),
            0
        );
        let body = vm.take_body(context, Direction::Response);
        vm.end_stream(context).unwrap();
        body
    };
    // Read (its size recorded) but not changed: the very bytes that were lent come back.
    let passed = body_after(r#"{"response": "none"}"#);
    assert_eq!(passed.as_ptr(), chunk.as_ptr());
    // Changed: a copy, with the change.
    let appended = body_after(r#"{"response": "append", "value": "!", "pause": false}"#);
    assert_ne!(appended.as_ptr(), chunk.as_ptr());
    assert_eq!(appended.len(), 4097);
    assert_eq!(appended.last(), Some(&b'!'));
    assert_eq!(chunk, vec![b'x'; 4096], "the lent chunk is left as it was");
}

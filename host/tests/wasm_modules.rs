//! Loading Proxy-Wasm modules: a filter compiled from source with the upstream `proxy-wasm`
//! crate is recognised (ABI marker, entry point, allocator, imports); modules that are not
//! Proxy-Wasm plugins are refused with an error that says why.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

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

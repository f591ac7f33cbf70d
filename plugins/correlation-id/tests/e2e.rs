//! End-to-end: the plugin's `.wasm`, built from this crate, served by the real gateway in front
//! of an echo upstream (`barbacane_sdk::testing`).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane_sdk::testing::{TestGateway, build_plugin, check_config, plugin_manifest};
use serde_json::json;
use std::path::Path;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn wasm() -> Vec<u8> {
    build_plugin(crate_dir())
}

fn is_uuid_v4(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            14 => *c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

#[tokio::test]
async fn generates_an_id_passes_it_upstream_and_echoes_it() {
    let gateway = TestGateway::start(&wasm(), json!({})).await;
    let first = gateway.get("/anything").await;
    assert_eq!(first.status, 200, "{}", first.text());
    let id = first.header("x-correlation-id").unwrap().to_string();
    assert!(is_uuid_v4(&id), "{id}");
    assert_eq!(first.json()["headers"]["x-correlation-id"], id.as_str());

    let second = gateway.send("POST", "/anything", &[], b"{}").await;
    let other = second.header("x-correlation-id").unwrap();
    assert!(is_uuid_v4(other) && other != id, "{other} after {id}");
}

#[tokio::test]
async fn propagates_the_incoming_id() {
    let gateway = TestGateway::start(&wasm(), json!(null)).await;
    let response = gateway
        .send("GET", "/anything", &[("X-Correlation-ID", "abc-123")], b"")
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["headers"]["x-correlation-id"], "abc-123");
    assert_eq!(response.header_values("x-correlation-id"), vec!["abc-123"]);
    // An empty header is no id: one is generated.
    let response = gateway
        .send("GET", "/anything", &[("x-correlation-id", "")], b"")
        .await;
    assert!(is_uuid_v4(response.header("x-correlation-id").unwrap()));
}

#[tokio::test]
async fn custom_header_without_echo() {
    let config = json!({"header": "X-Trace-Id", "echo_downstream": false});
    assert_eq!(check_config(crate_dir(), &config), Ok(()));
    let gateway = TestGateway::start(&wasm(), config).await;
    let response = gateway.get("/anything").await;
    assert_eq!(response.status, 200);
    assert!(is_uuid_v4(
        response.json()["headers"]["x-trace-id"].as_str().unwrap()
    ));
    assert_eq!(response.header("x-trace-id"), None);
    assert_eq!(response.json()["headers"]["x-correlation-id"], json!(null));
}

#[tokio::test]
async fn without_generation_only_incoming_ids_travel() {
    let gateway = TestGateway::start(&wasm(), json!({"generate": false})).await;
    let response = gateway.get("/anything").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["headers"]["x-correlation-id"], json!(null));
    assert_eq!(response.header("x-correlation-id"), None);

    let response = gateway
        .send("GET", "/anything", &[("x-correlation-id", "given")], b"")
        .await;
    assert_eq!(response.json()["headers"]["x-correlation-id"], "given");
    assert_eq!(response.header("x-correlation-id"), Some("given"));
}

#[tokio::test]
async fn a_bad_configuration_fails_the_build_with_the_plugins_reason() {
    for (config, expected) in [
        (
            json!({"header": ":path"}),
            "invalid configuration at /header",
        ),
        (
            json!({"generate": "yes"}),
            "invalid configuration at /generate",
        ),
        (json!({"nope": 1}), "unknown field `nope`"),
    ] {
        assert!(check_config(crate_dir(), &config).is_err(), "{config}");
        let error = match TestGateway::builder()
            .plugin("correlation-id", &wasm(), config.clone())
            .try_start()
            .await
        {
            Ok(_) => panic!("{config} was accepted"),
            Err(e) => e,
        };
        assert!(error.contains("E1061"), "{error}");
        assert!(error.contains(expected), "{config}: {error}");
    }
}

#[test]
fn manifest_and_documented_examples() {
    let manifest = plugin_manifest(crate_dir());
    assert_eq!(manifest.name, "correlation-id");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(manifest.kind, "transform");
    let defaults = json!({"header": "x-correlation-id", "generate": true, "echo_downstream": true});
    assert_eq!(check_config(crate_dir(), &defaults), Ok(()));
    assert_eq!(check_config(crate_dir(), &json!({})), Ok(()));
}

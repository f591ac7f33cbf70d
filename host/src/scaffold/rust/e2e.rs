//! End to end: this crate's `.wasm`, built by the test, served by the real barbacane host in
//! front of an echo upstream (`barbacane_sdk::testing`).

use barbacane_sdk::testing::{TestGateway, build_plugin};
use serde_json::json;
use std::path::Path;

fn wasm() -> Vec<u8> {
    build_plugin(Path::new(env!("CARGO_MANIFEST_DIR")))
}

#[tokio::test]
async fn adds_the_configured_header_to_responses() {
    let gateway = TestGateway::start(&wasm(), json!({"header": "x-greeting", "value": "hi"})).await;
    let response = gateway.get("/anything").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-greeting"), Some("hi"));
}

#[tokio::test]
async fn defaults_apply_without_configuration() {
    let gateway = TestGateway::start(&wasm(), json!({})).await;
    let response = gateway.get("/anything").await;
    assert_eq!(response.header("x-{{name}}"), Some("hello"));
}

//! End-to-end: the plugin's `.wasm`, built from this crate, served by the real gateway in front
//! of an echo upstream (`barbacane_sdk::testing`).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane_sdk::testing::{
    TestGateway, TestResponse, build_plugin, check_config, plugin_manifest,
};
use serde_json::{Value, json};
use std::path::Path;

const APP: &str = "https://app.example";

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A gateway whose `/anything` declares GET, POST, PUT and OPTIONS (the router answers an
/// undeclared method with 405 before any plugin runs).
async fn gateway(config: Value) -> TestGateway {
    TestGateway::builder()
        .plugin("cors", &build_plugin(crate_dir()), config)
        .methods(&["get", "post", "put", "options"])
        .start()
        .await
}

fn cors_headers(response: &TestResponse) -> Vec<&(String, String)> {
    response
        .headers
        .iter()
        .filter(|(n, _)| n.starts_with("access-control-"))
        .collect()
}

#[tokio::test]
async fn allowed_origins_get_cors_headers_on_the_upstreams_response() {
    let gw = gateway(json!({
        "allow_origins": [APP],
        "expose_headers": ["X-Upstream"],
        "allow_credentials": true
    }))
    .await;
    let response = gw.send("GET", "/anything", &[("origin", APP)], b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-upstream"), Some("echo"));
    assert_eq!(response.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        response.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        response.header("access-control-expose-headers"),
        Some("x-upstream")
    );
    assert_eq!(response.header("vary"), Some("origin"));
    assert_eq!(response.json()["headers"]["origin"], APP);
}

#[tokio::test]
async fn other_origins_pass_without_cors_headers() {
    let gw = gateway(json!({"allow_origins": [APP]})).await;
    let response = gw
        .send(
            "POST",
            "/anything",
            &[("origin", "https://evil.example")],
            b"x",
        )
        .await;
    assert_eq!(
        response.status, 200,
        "CORS is not access control: the request goes through"
    );
    assert_eq!(response.json()["body"], "x");
    assert!(cors_headers(&response).is_empty(), "{:?}", response.headers);
    // The answer depends on the origin, so caches are told, with or without one.
    assert_eq!(response.header("vary"), Some("origin"));
    let response = gw.get("/anything").await;
    assert!(cors_headers(&response).is_empty());
    assert_eq!(response.header("vary"), Some("origin"));
}

#[tokio::test]
async fn any_origin_is_a_wildcard_unless_credentials_are_allowed() {
    let gw = gateway(json!({"allow_origins": ["*"]})).await;
    let response = gw
        .send("GET", "/anything", &[("origin", "https://x.example")], b"")
        .await;
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(response.header("vary"), None);

    let gw = gateway(json!({"allow_origins": ["*"], "allow_credentials": true})).await;
    let response = gw
        .send("GET", "/anything", &[("origin", "https://x.example")], b"")
        .await;
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("https://x.example")
    );
    assert_eq!(response.header("vary"), Some("origin"));
}

#[tokio::test]
async fn preflights_are_answered_by_the_gateway() {
    let gw = gateway(json!({
        "allow_origins": [APP],
        "allow_methods": ["GET", "PUT"],
        "allow_headers": ["authorization", "content-type"],
        "allow_credentials": true,
        "max_age": 600
    }))
    .await;
    let preflight = [
        ("origin", APP),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "authorization"),
    ];
    let response = gw.send("OPTIONS", "/anything", &preflight, b"").await;
    assert_eq!(response.status, 204, "{}", response.text());
    assert!(response.body.is_empty());
    assert_eq!(response.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        response.header("access-control-allow-methods"),
        Some("GET, PUT")
    );
    assert_eq!(
        response.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(
        response.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(response.header("access-control-max-age"), Some("600"));
    assert_eq!(response.header_values("vary"), vec!["origin"]);
    // Each header once: the local reply passes back through the plugin untouched.
    assert_eq!(
        response.header_values("access-control-allow-origin").len(),
        1
    );
    assert!(
        gw.upstream("echo").requests().is_empty(),
        "a preflight never reaches the upstream"
    );

    // The actual request that follows.
    let response = gw
        .send(
            "PUT",
            "/anything",
            &[("origin", APP), ("authorization", "Bearer t")],
            b"{}",
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), Some(APP));
    assert_eq!(gw.upstream("echo").requests().len(), 1);
}

#[tokio::test]
async fn refused_preflights_are_problems_without_cors_headers() {
    let gw = gateway(json!({"allow_origins": [APP], "allow_methods": ["PUT"]})).await;
    let evil = [
        ("origin", "https://evil.example"),
        ("access-control-request-method", "PUT"),
    ];
    let response = gw.send("OPTIONS", "/anything", &evil, b"").await;
    let doc = response.assert_problem(403, "cors-rejected");
    assert_eq!(
        doc["detail"],
        "origin 'https://evil.example' is not allowed"
    );
    assert!(cors_headers(&response).is_empty(), "{:?}", response.headers);

    let delete = [("origin", APP), ("access-control-request-method", "DELETE")];
    let response = gw.send("OPTIONS", "/anything", &delete, b"").await;
    let doc = response.assert_problem(403, "cors-rejected");
    assert_eq!(
        doc["detail"],
        "method 'DELETE' is not allowed from origin 'https://app.example'"
    );
    assert!(gw.upstream("echo").requests().is_empty());
}

#[tokio::test]
async fn wildcard_methods_and_headers_echo_the_request() {
    let gw = gateway(json!({
        "allow_origins": [APP],
        "allow_methods": ["*"],
        "allow_headers": ["*"]
    }))
    .await;
    let preflight = [
        ("origin", APP),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "X-Custom, content-type"),
    ];
    let response = gw.send("OPTIONS", "/anything", &preflight, b"").await;
    assert_eq!(response.status, 204);
    assert_eq!(response.header("access-control-allow-methods"), Some("PUT"));
    assert_eq!(
        response.header("access-control-allow-headers"),
        Some("x-custom, content-type")
    );
}

#[tokio::test]
async fn plain_options_requests_reach_the_upstream() {
    let gw = gateway(json!({"allow_origins": [APP]})).await;
    let response = gw
        .send("OPTIONS", "/anything", &[("origin", APP)], b"")
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["method"], "OPTIONS");
    assert_eq!(response.header("access-control-allow-origin"), Some(APP));
}

#[tokio::test]
async fn preflights_need_no_options_operation_in_the_spec() {
    // `/anything` declares only GET and POST here: the gateway runs a preflight through the chain
    // of the method it asks about, so the plugin answers it. A plain OPTIONS is still a 405.
    let gw = TestGateway::start(&build_plugin(crate_dir()), json!({"allow_origins": [APP]})).await;
    let preflight = [("origin", APP), ("access-control-request-method", "POST")];
    let response = gw.send("OPTIONS", "/anything", &preflight, b"").await;
    assert_eq!(response.status, 204);
    assert_eq!(response.header("access-control-allow-origin"), Some(APP));

    let response = gw
        .send("OPTIONS", "/anything", &[("origin", APP)], b"")
        .await;
    response.assert_problem(405, "method-not-allowed");
    assert_eq!(response.header("allow"), Some("GET, POST, HEAD"));
    assert!(cors_headers(&response).is_empty());
}

#[tokio::test]
async fn a_bad_configuration_fails_the_build_with_the_plugins_reason() {
    for (config, expected) in [
        (json!({}), "missing field `allow_origins`"),
        (
            json!({"allow_origins": ["https://app.example/path"]}),
            "at /allow_origins/0",
        ),
        (
            json!({"allow_origins": ["*"], "max_age": "1h"}),
            "at /max_age",
        ),
    ] {
        assert!(check_config(crate_dir(), &config).is_err(), "{config}");
        let error = match TestGateway::builder()
            .plugin("cors", &build_plugin(crate_dir()), config.clone())
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
    assert_eq!(manifest.name, "cors");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    for example in [
        json!({"allow_origins": ["*"]}),
        json!({
            "allow_origins": ["https://app.example.com", "http://localhost:3000"],
            "allow_methods": ["GET", "POST", "PUT", "DELETE"],
            "allow_headers": ["authorization", "content-type"],
            "expose_headers": ["x-request-id"],
            "allow_credentials": true,
            "max_age": 600
        }),
    ] {
        assert_eq!(check_config(crate_dir(), &example), Ok(()), "{example}");
    }
    assert!(check_config(crate_dir(), &json!({"allow_origins": ["*"], "extra": 1})).is_err());
}

//! The example projects in `spec-examples/` behave as their READMEs say.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::server::Config;
use http::Method;
use support::{echo_upstream, gateway_with, get, send};

const PETSTORE: &str = include_str!("../../spec-examples/petstore/petstore.yaml");
const PROXY: &str = include_str!("../../spec-examples/proxy/api.yaml");

#[tokio::test]
async fn petstore_answers_as_documented() {
    let gw = gateway_with(PETSTORE, Config::default()).await;
    let pets = get(&gw.url("/pets?limit=10")).await;
    assert_eq!(pets.status, 200);
    assert_eq!(pets.json().as_array().unwrap().len(), 3);
    let pet = get(&gw.url("/pets/1")).await;
    assert_eq!(pet.status, 200);
    // The built-in plugins of the global chain: correlation-id and cors.
    assert_eq!(
        pet.header("x-correlation-id").len(),
        36,
        "{:?}",
        pet.headers
    );
    let preflight = send(
        Method::OPTIONS,
        &gw.url("/pets"),
        &[
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "POST"),
        ],
        b"",
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        "http://localhost:3000"
    );
    let cross = send(
        Method::GET,
        &gw.url("/pets"),
        &[("origin", "http://localhost:3000")],
        b"",
    )
    .await;
    assert_eq!(
        cross.header("access-control-allow-origin"),
        "http://localhost:3000"
    );
    let json = [("content-type", "application/json")];
    let created = send(
        Method::POST,
        &gw.url("/pets"),
        &json,
        br#"{"name":"Rex","tag":"dog","birth_date":"2019-04-12T08:30:00Z","owner_email":"alice@example.com"}"#,
    )
    .await;
    assert_eq!(
        (created.status.as_u16(), created.header("location")),
        (201, "/pets/4")
    );
    assert_eq!(
        send(Method::DELETE, &gw.url("/pets/1"), &[], b"")
            .await
            .status,
        204
    );

    get(&gw.url("/pets?limit=500"))
        .await
        .problem(400, "validation");
    get(&gw.url("/pets/abc")).await.problem(400, "validation");
    let bad = send(
        Method::POST,
        &gw.url("/pets"),
        &json,
        br#"{"name":"","colour":"brown","owner_email":"not-an-email"}"#,
    )
    .await;
    let locations: Vec<String> = bad.problem(400, "validation")["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["location"].as_str().unwrap().to_string())
        .collect();
    assert!(
        locations.contains(&"body/name".to_string())
            && locations.contains(&"body/owner_email".to_string()),
        "{locations:?}"
    );
    send(
        Method::POST,
        &gw.url("/pets"),
        &[("content-type", "text/plain")],
        b"Rex",
    )
    .await
    .problem(415, "unsupported-media-type");
    get(&gw.url("/owners")).await.problem(404, "not-found");
    send(Method::PUT, &gw.url("/pets/1"), &[], b"")
        .await
        .problem(405, "method-not-allowed");
    assert_eq!(get(&gw.url("/__barbacane/health")).await.status, 200);
}

#[tokio::test]
async fn proxy_example_forwards_to_its_upstream() {
    let up = echo_upstream().await;
    let spec = PROXY.replace("127.0.0.1:9001", &up.addr.to_string());
    let gw = gateway_with(&spec, Config::default()).await;
    let item = get(&gw.url("/items/a1")).await;
    assert_eq!(item.status, 200, "{:?}", item.body);
    assert_eq!(item.json()["uri"], "/v1/items/a1");
    let list = get(&gw.url("/items?limit=5")).await;
    assert_eq!(list.json()["uri"], "/v1/items?limit=5");
    assert_eq!(get(&gw.url("/healthz")).await.status, 200);
}

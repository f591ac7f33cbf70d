//! End-to-end: the plugin's `.wasm`, built from this crate, served by the real gateway in front
//! of an upstream of the test's own (`barbacane_sdk::testing`, a closure answering with the
//! headers and body each test chooses) — so each test reads what the plugin made of the
//! response.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane_sdk::testing::{
    Random, TestGateway, TestRequest, TestResponse, build_plugin, check_config, plugin_manifest,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_dir() -> PathBuf {
    crate_dir().join("../fixtures/set-consumer")
}

/// The upstream: the response the request's `x-respond-*` headers describe — status, content
/// type and headers — with the request's body as its body.
fn origin(request: TestRequest) -> TestResponse {
    let status = request
        .header("x-respond-status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut response = TestResponse::new(status).with_body(request.body.clone());
    if let Some(content_type) = request.header("x-respond-type") {
        response = response.with_header("content-type", content_type);
    }
    for (name, value) in &request.headers {
        if let Some(name) = name.strip_prefix("x-respond-header-") {
            response = response.with_header(name, value);
        }
    }
    response
}

async fn gateway(config: Value) -> TestGateway {
    TestGateway::builder()
        .plugin("response-transformer", &build_plugin(crate_dir()), config)
        .upstream("origin", origin)
        .dispatch("origin")
        .start()
        .await
}

const JSON: (&str, &str) = ("x-respond-type", "application/json");

#[tokio::test]
async fn headers_and_json_body_of_the_upstream_response_are_transformed() {
    let gw = gateway(json!({
        "remove": {"headers": ["x-powered-by"], "body": ["secret", "user.ssn"]},
        "rename": {"headers": {"x-old": "x-new"}, "body": {"id": "order_id"}},
        "replace": {"headers": {"server": "barbacane", "x-absent": "no"}, "body": {"status": "shipped"}},
        "set": {"headers": {"cache-control": "no-store"}, "body": {"meta.via": "gateway"}},
        "add": {"headers": {"x-frame-options": "DENY", "server": "ignored"}, "body": {"status": "ignored", "version": 2}},
        "append": {"headers": {"set-cookie": "c=3"}, "body": {"tags": ["gw"]}}
    }))
    .await;
    let body = json!({
        "id": 7, "secret": "s", "status": "new", "user": {"name": "n", "ssn": "x"}, "tags": ["a"]
    });
    let response = gw
        .send(
            "POST",
            "/anything",
            &[
                JSON,
                ("x-respond-header-x-powered-by", "php"),
                ("x-respond-header-x-old", "o"),
                ("x-respond-header-server", "origin"),
                ("x-respond-header-set-cookie", "a=1"),
                ("x-respond-header-cache-control", "max-age=60"),
            ],
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-powered-by"), None);
    assert_eq!(response.header("x-old"), None);
    assert_eq!(response.header("x-new"), Some("o"));
    assert_eq!(response.header("server"), Some("barbacane"));
    assert_eq!(response.header("x-absent"), None);
    assert_eq!(response.header_values("cache-control"), vec!["no-store"]);
    assert_eq!(response.header("x-frame-options"), Some("DENY"));
    assert_eq!(response.header_values("set-cookie"), vec!["a=1", "c=3"]);
    assert_eq!(response.header("content-type"), Some("application/json"));
    // Keys keep their order; new ones come last.
    assert_eq!(
        response.text(),
        r#"{"status":"shipped","user":{"name":"n"},"tags":["a","gw"],"order_id":7,"meta":{"via":"gateway"},"version":2}"#
    );
    // The body changed length: no stale content-length.
    let length = response.header("content-length");
    assert!(
        length.is_none() || length == Some(response.body.len().to_string().as_str()),
        "{length:?}"
    );
}

#[tokio::test]
async fn values_come_from_the_request_and_the_consumer() {
    let gw = TestGateway::builder()
        .plugin("set-consumer", &build_plugin(&fixture_dir()), json!(null))
        .plugin(
            "response-transformer",
            &build_plugin(crate_dir()),
            json!({
                "add": {
                    "headers": {"x-request-tenant": "$(headers.x-tenant)", "x-page": "$(query.page)"},
                    "body": {"served_to": "$(consumer.id)", "groups": "$(consumer.groups)"}
                },
                "set": {"headers": {"x-missing": "$(headers.x-none)"}}
            }),
        )
        .upstream("origin", origin)
        .dispatch("origin")
        .start()
        .await;
    let response = gw
        .send(
            "POST",
            "/anything?page=3",
            &[
                JSON,
                ("x-tenant", "acme"),
                ("x-test-consumer", "alice"),
                ("x-test-groups", "a,b"),
            ],
            b"{}",
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-request-tenant"), Some("acme"));
    assert_eq!(response.header("x-page"), Some("3"));
    assert_eq!(response.header("x-missing"), None);
    assert_eq!(response.text(), r#"{"served_to":"alice","groups":"a,b"}"#);

    // Anonymous: consumer values are skipped.
    let response = gw.send("POST", "/anything", &[JSON], b"{}").await;
    assert_eq!(response.text(), "{}");
    assert_eq!(response.header("x-page"), None);
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_pass_unchanged() {
    let gw = gateway(json!({"add": {"body": {"added": 1}, "headers": {"x-seen": "1"}}})).await;
    for (content_type, body) in [
        ("text/plain", &br#"{"looks": "like json"}"#[..]),
        ("application/json", b"{not json"),
        ("application/json", b"[1, 2]"),
        ("application/json", b"\xff\xfe"),
        ("text/html; charset=utf-8", b"<p>hi</p>"),
    ] {
        let response = gw
            .send(
                "POST",
                "/anything",
                &[("x-respond-type", content_type)],
                body,
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.body, body, "{content_type}");
        assert_eq!(response.header("x-seen"), Some("1"));
        assert_eq!(response.header("content-type"), Some(content_type));
    }
    // Without a body there is nothing to edit, and errors are transformed like the rest.
    let response = gw
        .send(
            "GET",
            "/anything",
            &[JSON, ("x-respond-status", "404")],
            b"",
        )
        .await;
    assert_eq!(response.status, 404);
    assert!(response.body.is_empty());
    assert_eq!(response.header("x-seen"), Some("1"));
    let response = gw
        .send(
            "POST",
            "/anything",
            &[
                ("x-respond-type", "application/problem+json"),
                ("x-respond-status", "409"),
            ],
            br#"{"title":"Conflict"}"#,
        )
        .await;
    assert_eq!(response.status, 409);
    assert_eq!(response.text(), r#"{"title":"Conflict","added":1}"#);
}

#[tokio::test]
async fn large_and_chunked_upstream_bodies() {
    let gw =
        gateway(json!({"set": {"body": {"count": "many"}}, "max_body_bytes": 2_097_152})).await;
    let items: Vec<Value> = (0..100_000).map(|i| json!({"n": i})).collect();
    let big = json!({"items": items}).to_string();
    // Sent chunked by the upstream, read in many pieces by the gateway.
    let response = gw
        .send(
            "POST",
            "/anything",
            &[JSON, ("x-respond-header-transfer-encoding", "chunked")],
            big.as_bytes(),
        )
        .await;
    assert_eq!(response.status, 200);
    let doc = response.json();
    assert_eq!(doc["count"], "many");
    assert_eq!(doc["items"].as_array().unwrap().len(), 100_000);

    // Over the limit: passed unchanged.
    let gw = gateway(json!({"set": {"body": {"count": "many"}}, "max_body_bytes": 4096})).await;
    let response = gw.send("POST", "/anything", &[JSON], big.as_bytes()).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, big.as_bytes());
}

#[tokio::test]
async fn request_header_values_that_are_not_utf8_do_not_break_the_plugin() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw =
        gateway(json!({"add": {"headers": {"x-request-tenant": "$(headers.x-tenant)"}}})).await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    stream
        .write_all(
            b"GET /anything HTTP/1.1\r\nhost: t\r\nx-tenant: caf\xe9\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    // Rendered lossily: the replacement character is valid header text.
    assert!(text.contains("x-request-tenant: caf\u{fffd}"), "{text}");
}

#[tokio::test]
async fn a_bad_configuration_fails_the_build_with_the_pointer() {
    for (config, expected) in [
        (
            json!({"set": {"headers": {":status": "201"}}}),
            "at /set/headers/:status",
        ),
        (
            json!({"remove": {"headers": ["Transfer-Encoding"]}}),
            "at /remove/headers/0",
        ),
        (
            json!({"add": {"headers": {"content-length": "1"}}}),
            "at /add/headers/content-length",
        ),
        (
            json!({"rename": {"headers": {"connection": "x-c"}}}),
            "at /rename/headers/connection",
        ),
        (
            json!({"add": {"querystring": {"a": "1"}}}),
            "at /add/querystring",
        ),
        (
            json!({"remove": {"querystring": ["a"]}}),
            "at /remove/querystring",
        ),
        (json!({"append": {"body": {"a.": 1}}}), "at /append/body/a."),
        (json!({"max_body_bytes": 10_000_000}), "at /max_body_bytes"),
    ] {
        assert!(check_config(crate_dir(), &config).is_err(), "{config}");
        let error = match TestGateway::builder()
            .plugin(
                "response-transformer",
                &build_plugin(crate_dir()),
                config.clone(),
            )
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
    assert_eq!(manifest.name, "response-transformer");
    assert_eq!(manifest.kind, "transform");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    for example in [
        json!({}),
        json!({
            "remove": {"headers": ["x-powered-by", "server"], "body": ["internal_id", "user.password_hash"]},
            "rename": {"headers": {"x-upstream-version": "x-api-version"}, "body": {"id": "order_id"}},
            "replace": {"body": {"status": "redacted"}},
            "set": {"headers": {"cache-control": "no-store"}},
            "add": {"headers": {"x-frame-options": "DENY", "x-request-tenant": "$(headers.x-tenant)"}, "body": {"served_to": "$(consumer.id)"}},
            "append": {"headers": {"vary": "accept-language"}, "body": {"links": {"rel": "self"}}},
            "max_body_bytes": 262144
        }),
    ] {
        assert_eq!(check_config(crate_dir(), &example), Ok(()), "{example}");
    }
}

fn random_text(rng: &mut Random, max: usize) -> String {
    const SPICE: &[u8] = b"$()%&=+.,:;\"\\{}[]# ";
    (0..rng.below(max + 1))
        .map(|_| {
            if rng.below(4) == 0 {
                SPICE[rng.below(SPICE.len())] as char
            } else {
                (b' ' + rng.below(95) as u8) as char
            }
        })
        .collect()
}

fn random_json(rng: &mut Random, depth: usize) -> Value {
    match rng.below(if depth > 3 { 4 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next_u64() as i64),
        3 => json!(random_text(rng, 12)),
        4 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = ["a", "b", "user", "meta", "tags", "secret"];
            Value::Object(
                (0..rng.below(5))
                    .map(|_| (rng.pick(&keys).to_string(), random_json(rng, depth + 1)))
                    .collect(),
            )
        }
    }
}

#[tokio::test]
async fn random_responses_never_make_the_plugin_fail() {
    let gw = gateway(json!({
        "remove": {"headers": ["x-a"], "body": ["secret", "meta.x"]},
        "rename": {"headers": {"x-b": "x-a"}, "body": {"user": "meta.user", "a": "tags"}},
        "replace": {"headers": {"x-c": "$(query.q)"}, "body": {"b": "$(headers.x-q)"}},
        "set": {"headers": {"x-d": "$(headers.x-q)"}, "body": {"meta.q": "$(query.q)"}},
        "add": {"headers": {"x-e": "e"}, "body": {"user.name": 1}},
        "append": {"headers": {"x-f": ["1", "$(query.q)"]}, "body": {"tags": "$(headers.x-q)", "b": 2}}
    }))
    .await;
    let types = [
        "application/json",
        "application/vnd.api+json",
        "text/plain",
        "application/json; charset=utf-8",
    ];
    let names = ["x-a", "x-b", "x-c", "x-f", "set-cookie"];
    let mut rng = Random::new(0xface_b00c_0bad_5eed);
    for round in 0..300 {
        let mut headers: Vec<(String, String)> = Vec::new();
        for _ in 0..rng.below(5) {
            let name = format!("x-respond-header-{}", rng.pick(&names));
            headers.push((name, random_text(&mut rng, 16).trim().to_string()));
        }
        headers.push((
            String::from("x-q"),
            random_text(&mut rng, 16).trim().to_string(),
        ));
        headers.push((String::from("x-respond-type"), rng.pick(&types).to_string()));
        let status = ["200", "201", "400", "404", "503"][rng.below(5)];
        headers.push((String::from("x-respond-status"), status.to_string()));
        let body: Vec<u8> = match rng.below(4) {
            0 => Vec::new(),
            1 => random_text(&mut rng, 200).into_bytes(),
            2 => (0..rng.below(300)).map(|_| rng.next_u64() as u8).collect(),
            _ => random_json(&mut rng, 0).to_string().into_bytes(),
        };
        let path = format!("/anything?q={}", rng.below(1000));
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let response = gw.send("POST", &path, &pairs, &body).await;
        assert_eq!(
            response.status.to_string(),
            status,
            "round {round}: {headers:?} {:?}: {}",
            String::from_utf8_lossy(&body),
            response.text()
        );
        assert_eq!(response.header("x-e"), Some("e"), "round {round}");
    }
}

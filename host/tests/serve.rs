//! The gateway serving a spec over real loopback connections: routing, admin endpoints, request
//! ids, validation problems, limits, HTTP/1.1 keep-alive and h2c.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::server::{Config, Limits};
use http::Method;
use support::{gateway, gateway_with, get, send};

const SPEC: &str = r#"
openapi: 3.1.0
info: {title: pets, version: '1'}
servers:
  - url: http://localhost:8080/v1
  - url: https://api.pets.test/v1
paths:
  /pets:
    get:
      operationId: listPets
      parameters:
        - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 100}}
        - {name: ids, in: query, style: form, explode: false, schema: {type: array, items: {type: integer}}}
        - {name: x-tenant, in: header, required: true, schema: {type: string, enum: [acme, globex]}}
      x-barbacane-dispatch:
        name: mock
        config: {status: 200, headers: {x-mock: 'yes'}, body: [{id: 1, name: Rex}]}
    post:
      operationId: createPet
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/NewPet'}
      x-barbacane-dispatch: {name: mock, config: {status: 201, body: created}}
  /pets/{petId}:
    parameters:
      - {name: petId, in: path, required: true, schema: {type: integer, format: int64}}
    get:
      x-barbacane-dispatch: {name: mock, config: {body: {id: 7}}}
    delete:
      x-barbacane-dispatch: {name: mock, config: {status: 204}}
  /pets/mine:
    get:
      x-barbacane-dispatch: {name: mock, config: {body: mine}}
  /owners/{ownerId}:
    get:
      parameters:
        - {name: ownerId, in: path, required: true, schema: {type: string, format: uuid}}
        - {name: session, in: cookie, schema: {type: string, pattern: '^[a-z]+$'}}
      x-barbacane-dispatch: {name: mock, config: {body: owner}}
components:
  schemas:
    NewPet:
      type: object
      additionalProperties: false
      required: [name]
      properties:
        name: {type: string, minLength: 1}
        born: {type: string, format: date-time}
        email: {type: string, format: email}
        site: {type: string, format: uri}
        ip4: {type: string, format: ipv4}
        ip6: {type: string, format: ipv6}
        tags: {type: array, items: {$ref: '#/components/schemas/Tag'}}
    Tag: {type: string, maxLength: 5}
"#;

const TENANT: (&str, &str) = ("x-tenant", "acme");

#[tokio::test]
async fn routes_by_path_method_and_base_path() {
    let gw = gateway(SPEC).await;
    let r = send(Method::GET, &gw.url("/v1/pets?limit=5"), &[TENANT], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!([{"id": 1, "name": "Rex"}]));
    assert_eq!(r.header("x-mock"), "yes");
    assert_eq!(r.header("content-type"), "application/json");

    assert_eq!(
        get(&gw.url("/v1/pets/7")).await.json(),
        serde_json::json!({"id": 7})
    );
    let mine = get(&gw.url("/v1/pets/mine")).await;
    assert_eq!(
        (mine.status.as_u16(), mine.body.as_ref()),
        (200, b"mine".as_slice()),
        "static segment wins"
    );
    assert_eq!(
        send(Method::DELETE, &gw.url("/v1/pets/7"), &[], b"")
            .await
            .status,
        204
    );
    assert_eq!(
        send(Method::HEAD, &gw.url("/v1/pets/7"), &[], b"")
            .await
            .status,
        200
    );

    get(&gw.url("/pets/7")).await.problem(404, "not-found");
    get(&gw.url("/v1/cats")).await.problem(404, "not-found");
    let r = send(Method::PUT, &gw.url("/v1/pets/7"), &[], b"").await;
    r.problem(405, "method-not-allowed");
    assert_eq!(r.header("allow"), "GET, DELETE, HEAD");
}

#[tokio::test]
async fn servers_hosts_are_matched() {
    let gw = gateway(SPEC).await;
    let ok = send(
        Method::GET,
        &gw.url("/v1/pets/1"),
        &[("host", "API.pets.test:443")],
        b"",
    )
    .await;
    assert_eq!(ok.status, 200);
    let other = send(
        Method::GET,
        &gw.url("/v1/pets/1"),
        &[("host", "evil.test")],
        b"",
    )
    .await;
    assert_eq!(other.status, 200, "localhost server matches any host");
    let only_remote = r#"
openapi: 3.0.3
info: {title: t, version: '1'}
servers: [{url: 'https://api.pets.test/v2'}]
paths:
  /a: {get: {x-barbacane-dispatch: {name: mock}}}
"#;
    let gw = gateway(only_remote).await;
    assert_eq!(
        send(
            Method::GET,
            &gw.url("/v2/a"),
            &[("host", "api.pets.test")],
            b""
        )
        .await
        .status,
        200
    );
    let doc = send(Method::GET, &gw.url("/v2/a"), &[("host", "evil.test")], b"")
        .await
        .problem(404, "not-found");
    assert_eq!(
        doc["detail"],
        "no route for /v2/a on host 'evil.test'; it is served on: api.pets.test"
    );
}

#[tokio::test]
async fn paths_are_normalised_and_traversal_never_escapes() {
    let gw = gateway(SPEC).await;
    for path in [
        "//v1//pets/7/",
        "/v1/./pets/7",
        "/v1/owners/../pets/7",
        "/v1/pets/%37",
    ] {
        assert_eq!(
            get(&gw.url(path)).await.json(),
            serde_json::json!({"id": 7}),
            "{path}"
        );
    }
    for path in [
        "/v1/pets/%2e%2e/owners",
        "/v1/pets/.%2E",
        "/v1/pets/7%2f..",
        "/v1/pets/%00",
        "/../v1/pets/7",
        "/v1/pets/%c3%28",
    ] {
        get(&gw.url(path)).await.problem(400, "invalid-path");
    }
}

#[tokio::test]
async fn health_metrics_and_request_ids() {
    let gw = gateway(SPEC).await;
    let health = get(&gw.url("/__barbacane/health")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let generated = health.header("x-request-id").to_string();
    assert_eq!(generated.len(), 36, "{generated}");
    assert_ne!(
        generated,
        get(&gw.url("/__barbacane/health"))
            .await
            .header("x-request-id")
    );

    let kept = send(
        Method::GET,
        &gw.url("/v1/nope"),
        &[("x-request-id", "trace-abc.123")],
        b"",
    )
    .await;
    assert_eq!(kept.header("x-request-id"), "trace-abc.123");
    let long = "x".repeat(200);
    let replaced = send(
        Method::GET,
        &gw.url("/v1/pets/1"),
        &[("x-request-id", &long)],
        b"",
    )
    .await;
    assert_eq!(replaced.header("x-request-id").len(), 36);

    let metrics = get(&gw.url("/__barbacane/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        text.contains("barbacane_responses_total{class=\"4xx\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("barbacane_responses_total{class=\"2xx\"} 3"),
        "{text}"
    );
    get(&gw.url("/__barbacane/nope"))
        .await
        .problem(404, "not-found");
}

#[tokio::test]
async fn parameters_are_validated() {
    let gw = gateway(SPEC).await;
    let url = |q: &str| gw.url(&format!("/v1/pets{q}"));
    assert_eq!(
        send(Method::GET, &url("?limit=100&ids=1,2,3"), &[TENANT], b"")
            .await
            .status,
        200
    );

    let r = send(
        Method::GET,
        &url("?limit=0&ids=1,x"),
        &[("x-tenant", "initech")],
        b"",
    )
    .await;
    let doc = r.problem(400, "validation");
    let locations: Vec<&str> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["location"].as_str().unwrap())
        .collect();
    assert_eq!(
        locations,
        vec!["query.limit", "query.ids/1", "header.x-tenant"]
    );

    let missing = send(Method::GET, &url(""), &[], b"")
        .await
        .problem(400, "validation");
    assert_eq!(missing["errors"][0]["location"], "header.x-tenant");
    assert!(
        missing["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("required")
    );

    get(&gw.url("/v1/pets/abc"))
        .await
        .problem(400, "validation");
    get(&gw.url("/v1/owners/not-a-uuid"))
        .await
        .problem(400, "validation");
    assert_eq!(
        get(&gw.url("/v1/owners/6f1c2a86-3b8e-4a43-9d55-0c6f6b0f1b2e"))
            .await
            .status,
        200
    );
    let cookie = send(
        Method::GET,
        &gw.url("/v1/owners/6f1c2a86-3b8e-4a43-9d55-0c6f6b0f1b2e"),
        &[("cookie", "a=1; session=ABC")],
        b"",
    )
    .await;
    assert_eq!(
        cookie.problem(400, "validation")["errors"][0]["location"],
        "cookie.session"
    );
}

#[tokio::test]
async fn bodies_are_validated_with_formats_and_dev_decides_the_detail() {
    let json = [("content-type", "application/json")];
    let good = br#"{"name": "Rex", "born": "2020-01-02T03:04:05Z", "email": "a@b.example", "site": "https://x.test/a", "ip4": "10.0.0.1", "ip6": "::1", "tags": ["a"]}"#;
    let bad = br#"{"name": "", "born": "yesterday", "email": "nope", "site": "not a uri", "ip4": "300.1.1.1", "ip6": "zz", "tags": ["toolong"], "extra": 1}"#;

    let dev = gateway(SPEC).await;
    let r = send(Method::POST, &dev.url("/v1/pets"), &json, good).await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_ref()),
        (201, b"created".as_slice())
    );
    let doc = send(Method::POST, &dev.url("/v1/pets"), &json, bad)
        .await
        .problem(400, "validation");
    let errors = doc["errors"].as_array().unwrap();
    let mut locations: Vec<&str> = errors
        .iter()
        .map(|e| e["location"].as_str().unwrap())
        .collect();
    locations.sort();
    assert_eq!(
        locations,
        vec![
            "body",
            "body/born",
            "body/email",
            "body/ip4",
            "body/ip6",
            "body/name",
            "body/site",
            "body/tags/0"
        ]
    );
    assert!(
        errors
            .iter()
            .any(|e| e["reason"].as_str().unwrap().contains("date-time")),
        "{doc}"
    );

    let prod = gateway_with(SPEC, Config::default()).await;
    let doc = send(Method::POST, &prod.url("/v1/pets"), &json, bad)
        .await
        .problem(400, "validation");
    let text = doc.to_string();
    for internal in [
        "date-time",
        "minLength",
        "additionalProperties",
        "maxLength",
        "#/",
    ] {
        assert!(!text.contains(internal), "{internal} leaked: {text}");
    }
    assert!(
        doc["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["reason"] == "invalid"),
        "{doc}"
    );

    let r = send(Method::POST, &dev.url("/v1/pets"), &json, b"{\"name\": ").await;
    assert!(
        r.problem(400, "validation")["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    send(
        Method::POST,
        &dev.url("/v1/pets"),
        &[("content-type", "text/plain")],
        b"Rex",
    )
    .await
    .problem(415, "unsupported-media-type");
    let r = send(Method::POST, &dev.url("/v1/pets"), &[], b"").await;
    assert_eq!(
        r.problem(400, "validation")["errors"][0]["location"],
        "body"
    );
    let wrong_type = send(Method::POST, &dev.url("/v1/pets"), &json, b"[1, 2]")
        .await
        .problem(400, "validation");
    assert_eq!(wrong_type["errors"][0]["location"], "body");
}

#[tokio::test]
async fn limits_answer_413_414_431() {
    let limits = Limits {
        max_body_bytes: 1024,
        max_headers: 20,
        max_header_bytes: 2048,
        max_uri_bytes: 256,
        ..Limits::default()
    };
    let gw = gateway_with(
        SPEC,
        Config {
            dev: true,
            limits,
            ..Config::default()
        },
    )
    .await;
    let json = [("content-type", "application/json")];
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(2000));
    send(Method::POST, &gw.url("/v1/pets"), &json, big.as_bytes())
        .await
        .problem(413, "payload-too-large");
    get(&gw.url(&format!("/v1/pets/1?pad={}", "a".repeat(300))))
        .await
        .problem(414, "uri-too-long");
    let many: Vec<(String, String)> = (0..30)
        .map(|i| (format!("x-h{i}"), String::from("v")))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    send(Method::GET, &gw.url("/v1/pets/1"), &many, b"")
        .await
        .problem(431, "headers-too-large");
    let huge = "v".repeat(3000);
    send(Method::GET, &gw.url("/v1/pets/1"), &[("x-big", &huge)], b"")
        .await
        .problem(431, "headers-too-large");
}

#[tokio::test]
async fn keep_alive_reuses_one_connection_and_h2c_works() {
    let gw = gateway(SPEC).await;
    // HTTP/1.1: many requests over one connection, read back in order.
    let mut pipeline = String::new();
    for _ in 0..3 {
        pipeline.push_str("GET /v1/pets/1 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    }
    pipeline.push_str("GET /v1/pets/2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let addr = gw.addr;
    let text = tokio::task::spawn_blocking(move || support::raw(addr, pipeline.as_bytes()))
        .await
        .unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 4, "{text}");

    // h2c with prior knowledge.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let response = client
        .get(gw.url("/v1/pets/3").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let problem = client
        .get(gw.url("/v1/nope").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(problem.status(), 404);
}

//! Hostile and malformed requests over raw TCP and through a client. The gateway must answer each
//! with the right status (and a problem body wherever the request was parseable HTTP), never
//! panic, never hang, and keep serving afterwards.
//!
//! Requests that are not HTTP at all (control bytes in the request line or a header, a broken
//! request line) are refused by the HTTP/1 codec itself with a bare 400 and the connection closed:
//! there is no request to attach a problem to.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use http::Method;
use support::{gateway, get, raw, raw_json, raw_status, send};

const SPEC: &str = r#"
openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /pets/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer}}
        - {name: x-trace, in: header, schema: {type: string, pattern: '^[a-z]+$'}}
      x-barbacane-dispatch: {name: mock, config: {body: {ok: true}}}
  /pets:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [name, age]
              properties:
                name: {type: string}
                age: {type: integer, minimum: 0}
      x-barbacane-dispatch: {name: mock, config: {status: 201}}
"#;

async fn raw_async(addr: std::net::SocketAddr, request: Vec<u8>) -> String {
    tokio::task::spawn_blocking(move || raw(addr, &request))
        .await
        .unwrap()
}

fn post(body: &str) -> Vec<u8> {
    format!(
        "POST /pets HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn invalid_json_and_wrong_types_get_validation_problems() {
    let gw = gateway(SPEC).await;
    let cases = [
        ("{\"name\": \"x\", \"age\": ", "body", "invalid JSON"),
        (
            "{\"name\": 5, \"age\": \"old\"}",
            "body/name",
            "not of type",
        ),
        ("{\"name\": \"x\", \"age\": -1}", "body/age", "minimum"),
        ("{\"name\": \"x\"}", "body", "required"),
        ("\"just a string\"", "body", "not of type"),
        ("{\"name\": \"x\", \"age\": 1, \"name\": \"dup\"}", "", ""),
        ("\u{feff}{}", "body", "invalid JSON"),
    ];
    for (body, location, reason) in cases {
        let response = raw_async(gw.addr, post(body)).await;
        if location.is_empty() {
            // Duplicate keys are valid JSON (last one wins), as in every mainstream parser.
            assert_eq!(raw_status(&response), 201, "{body}: {response}");
            continue;
        }
        assert_eq!(raw_status(&response), 400, "{body}: {response}");
        assert!(response.contains("application/problem+json"), "{response}");
        let doc = raw_json(&response);
        assert_eq!(doc["type"], "urn:barbacane:error:validation");
        let errors = doc["errors"].as_array().unwrap();
        assert!(
            errors.iter().any(
                |e| e["location"] == location && e["reason"].as_str().unwrap().contains(reason)
            ),
            "{body}: {doc}"
        );
    }
    let response = raw_async(gw.addr, b"POST /pets HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 4\r\nConnection: close\r\n\r\n\xff\xfe{}".to_vec()).await;
    assert_eq!(raw_status(&response), 400, "invalid UTF-8 body: {response}");
}

#[tokio::test]
async fn oversized_bodies_and_headers() {
    let gw = gateway(SPEC).await;
    let huge_length = b"POST /pets HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n{}".to_vec();
    let response = raw_async(gw.addr, huge_length).await;
    assert_eq!(raw_status(&response), 413, "{response}");
    assert_eq!(
        raw_json(&response)["type"],
        "urn:barbacane:error:payload-too-large"
    );

    let body = format!(
        "{{\"name\": \"{}\", \"age\": 1}}",
        "x".repeat(11 * 1024 * 1024)
    );
    let r = send(
        Method::POST,
        &gw.url("/pets"),
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .await;
    r.problem(413, "payload-too-large");

    let mut many = String::from("GET /pets/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let response = raw_async(gw.addr, many.into_bytes()).await;
    assert_eq!(raw_status(&response), 431, "{response}");
    assert_eq!(
        raw_json(&response)["type"],
        "urn:barbacane:error:headers-too-large"
    );

    let big = format!(
        "GET /pets/1 HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let response = raw_async(gw.addr, big.into_bytes()).await;
    assert_eq!(raw_status(&response), 431, "{response}");

    // Far past the codec's own buffer: refused by the codec, connection closed.
    let absurd = format!(
        "GET /pets/1 HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let response = raw_async(gw.addr, absurd.into_bytes()).await;
    assert!(
        response.is_empty() || [400, 431].contains(&raw_status(&response)),
        "{response}"
    );

    let long_uri = format!(
        "GET /pets/{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "1".repeat(9000)
    );
    let response = raw_async(gw.addr, long_uri.into_bytes()).await;
    assert_eq!(raw_status(&response), 414, "{response}");
    assert_eq!(
        raw_json(&response)["type"],
        "urn:barbacane:error:uri-too-long"
    );
}

#[tokio::test]
async fn bytes_that_are_not_http_get_a_bare_400_from_the_codec() {
    let gw = gateway(SPEC).await;
    let cases: [&[u8]; 5] = [
        b"GET /pets/\x01 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /pets/1 HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
        b"G\x7fT /pets/1 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /pets/1 HTTP/9.9\r\nHost: t\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage-tls-hello\r\n\r\n",
    ];
    for case in cases {
        let response = raw_async(gw.addr, case.to_vec()).await;
        let status = if response.is_empty() {
            0
        } else {
            raw_status(&response)
        };
        assert!(
            [0, 400, 505].contains(&status),
            "{:?}: {response}",
            String::from_utf8_lossy(case)
        );
    }
    assert_eq!(get(&gw.url("/pets/1")).await.status, 200, "still serving");
}

#[tokio::test]
async fn invalid_utf8_and_encoding_tricks_in_paths_and_headers() {
    let gw = gateway(SPEC).await;
    let cases: [(&[u8], u16, &str); 7] = [
        (
            b"GET /pets/%ff%fe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            400,
            "invalid-path",
        ),
        (
            b"GET /pets/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            400,
            "invalid-path",
        ),
        (
            b"GET /pets/1%00 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            400,
            "invalid-path",
        ),
        (
            b"GET /pets/..%2f..%2fadmin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            400,
            "invalid-path",
        ),
        (
            b"GET /../../pets/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            400,
            "invalid-path",
        ),
        (
            b"GET /pets/1 HTTP/1.1\r\nHost: t\r\nX-Trace: caf\xc3\xa9\r\nConnection: close\r\n\r\n",
            400,
            "validation",
        ),
        (
            b"GET /pets/1 HTTP/1.1\r\nHost: t\r\nX-Trace: \xff\xfe\r\nConnection: close\r\n\r\n",
            400,
            "validation",
        ),
    ];
    for (request, status, kind) in cases {
        let response = raw_async(gw.addr, request.to_vec()).await;
        assert_eq!(
            raw_status(&response),
            status,
            "{:?}: {response}",
            String::from_utf8_lossy(request)
        );
        assert_eq!(
            raw_json(&response)["type"],
            format!("urn:barbacane:error:{kind}"),
            "{response}"
        );
    }
    // Raw non-ASCII bytes in the request target.
    let response = raw_async(
        gw.addr,
        b"GET /pets/\xc3\xa9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
    )
    .await;
    let status = raw_status(&response);
    assert!(status == 400, "{response}");
}

#[tokio::test]
async fn unknown_and_odd_methods() {
    let gw = gateway(SPEC).await;
    for method in ["BREW", "PROPFIND", "PURGE", "DELETE", "OPTIONS", "TRACE"] {
        let request = format!("{method} /pets/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let response = raw_async(gw.addr, request.into_bytes()).await;
        assert_eq!(raw_status(&response), 405, "{method}: {response}");
        assert!(
            response.contains("allow: GET, HEAD") || response.contains("Allow: GET, HEAD"),
            "{response}"
        );
        assert_eq!(
            raw_json(&response)["type"],
            "urn:barbacane:error:method-not-allowed"
        );
    }
    let connect = raw_async(
        gw.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(),
    )
    .await;
    let status = raw_status(&connect);
    assert!(status == 404 || status == 400 || status == 405, "{connect}");
}

#[tokio::test]
async fn slow_or_silent_clients_do_not_block_others() {
    let gw = gateway(SPEC).await;
    // Half a request line, then nothing: other clients are still served.
    let mut idle = std::net::TcpStream::connect(gw.addr).unwrap();
    std::io::Write::write_all(&mut idle, b"GET /pets/1 HT").unwrap();
    let partial_body = "POST /pets HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na";
    let mut stalled = std::net::TcpStream::connect(gw.addr).unwrap();
    std::io::Write::write_all(&mut stalled, partial_body.as_bytes()).unwrap();
    for _ in 0..20 {
        assert_eq!(get(&gw.url("/pets/1")).await.status, 200);
    }
    drop((idle, stalled));
}

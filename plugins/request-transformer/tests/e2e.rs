//! End-to-end: the plugin's `.wasm`, built from this crate, served by the real gateway in front
//! of the echo upstream (`barbacane_sdk::testing`), which answers with the request it received —
//! so each test reads what the plugin made of the request.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane_sdk::testing::{Random, TestGateway, build_plugin, check_config, plugin_manifest};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_dir() -> PathBuf {
    crate_dir().join("../fixtures/set-consumer")
}

async fn gateway(config: Value) -> TestGateway {
    TestGateway::start(&build_plugin(crate_dir()), config).await
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn headers_query_and_json_body_reach_the_upstream_transformed() {
    let gw = gateway(json!({
        "remove": {"headers": ["x-internal"], "querystring": ["debug"], "body": ["password"]},
        "rename": {"headers": {"x-old": "x-new"}, "querystring": {"q": "search"}, "body": {"user": "username"}},
        "replace": {"headers": {"x-version": "2"}, "querystring": {"page": "1"}, "body": {"role": "user"}},
        "set": {"headers": {"x-forced": "yes"}, "body": {"meta.source": "gateway"}},
        "add": {"headers": {"x-version": "ignored", "x-added": "1"}, "querystring": {"lang": "en"}, "body": {"role": "ignored", "active": true}},
        "append": {"headers": {"x-list": "b"}, "querystring": {"tag": "new"}, "body": {"tags": "gw"}}
    }))
    .await;
    let body = json!({"user": "alice", "password": "s3cret", "role": "admin", "tags": ["a"]});
    let response = gw
        .send(
            "POST",
            "/anything?debug=1&q=caf%C3%A9&page=7&tag=old",
            &[
                JSON,
                ("x-internal", "secret"),
                ("x-old", "o"),
                ("x-new", "stale"),
                ("x-version", "1"),
                ("x-forced", "client-1"),
                ("x-list", "a"),
                ("x-forced", "client-2"),
                ("x-old", "p"),
            ],
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let echo = response.json();
    let headers = &echo["headers"];
    assert!(headers.get("x-internal").is_none(), "{headers}");
    assert!(headers.get("x-old").is_none());
    // Every value moves, and replaces what the new name had.
    assert_eq!(headers["x-new"], "o, p");
    assert_eq!(headers["x-version"], "2");
    assert_eq!(headers["x-forced"], "yes", "set leaves one value");
    assert_eq!(headers["x-added"], "1");
    assert_eq!(headers["x-list"], "a, b");
    assert_eq!(
        echo["uri"],
        "/anything?search=caf%C3%A9&page=1&tag=old&lang=en&tag=new"
    );
    let sent: Value = serde_json::from_str(echo["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        sent,
        json!({
            "username": "alice",
            "role": "user",
            "tags": ["a", "gw"],
            "meta": {"source": "gateway"},
            "active": true
        })
    );
    // The rewritten body is framed by its own length.
    let length = echo["body"].as_str().unwrap().len().to_string();
    assert_eq!(headers["content-length"], length.as_str());
}

#[tokio::test]
async fn values_come_from_the_request_and_the_consumer() {
    let gw = TestGateway::builder()
        .plugin("set-consumer", &build_plugin(&fixture_dir()), json!(null))
        .plugin(
            "request-transformer",
            &build_plugin(crate_dir()),
            json!({
                "set": {
                    "headers": {"x-consumer-id": "$(consumer.id)", "x-groups": "$(consumer.groups)"},
                    "body": {"owner": "$(consumer.id)", "tenant": "$(headers.x-tenant)"}
                },
                "add": {
                    "headers": {"x-user-agent-copy": "ua=$(headers.user-agent)", "x-missing": "$(headers.x-nope)"},
                    "querystring": {"tenant": "$(headers.x-tenant)"}
                },
                "append": {"headers": {"x-from-query": "$(query.ref)"}}
            }),
        )
        .start()
        .await;
    let response = gw
        .send(
            "POST",
            "/anything?ref=a%20b",
            &[
                JSON,
                ("x-test-consumer", "alice"),
                ("x-test-groups", "admins,dev"),
                ("x-tenant", "acme"),
                ("user-agent", "probe/1"),
            ],
            b"{}",
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let echo = response.json();
    let headers = &echo["headers"];
    assert_eq!(headers["x-consumer-id"], "alice");
    assert_eq!(headers["x-groups"], "admins,dev");
    assert_eq!(headers["x-user-agent-copy"], "ua=probe/1");
    assert_eq!(headers["x-from-query"], "a b");
    assert!(
        headers.get("x-missing").is_none(),
        "a value without data skips its rule"
    );
    assert_eq!(echo["uri"], "/anything?ref=a%20b&tenant=acme");
    assert_eq!(echo["body"], r#"{"owner":"alice","tenant":"acme"}"#);

    // Anonymous: the consumer rules are skipped, the others apply.
    let response = gw
        .send("POST", "/anything", &[JSON, ("x-tenant", "acme")], b"{}")
        .await;
    let echo = response.json();
    assert!(echo["headers"].get("x-consumer-id").is_none());
    assert_eq!(echo["body"], r#"{"tenant":"acme"}"#);
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_pass_unchanged() {
    let gw = gateway(json!({"add": {"body": {"added": 1}}})).await;
    for (content_type, body) in [
        ("text/plain", &br#"{"looks": "like json"}"#[..]),
        ("application/json", b"{not json"),
        ("application/json", b"[1, 2, 3]"),
        ("application/json", b"\xff\xfe binary"),
        ("application/x-www-form-urlencoded", b"a=1&b=2"),
    ] {
        let response = gw
            .send("POST", "/anything", &[("content-type", content_type)], body)
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
        let echo = response.json();
        assert_eq!(
            echo["body"],
            String::from_utf8_lossy(body).as_ref(),
            "{content_type}"
        );
        assert_eq!(
            echo["headers"]["content-length"],
            body.len().to_string().as_str()
        );
    }
    // A JSON body in another case and with parameters is still JSON.
    let response = gw
        .send(
            "POST",
            "/anything",
            &[("content-type", "Application/JSON; charset=utf-8")],
            br#"{"a": 0}"#,
        )
        .await;
    assert_eq!(response.json()["body"], r#"{"a":0,"added":1}"#);
    // A request without a body is not given one.
    let response = gw.get("/anything").await;
    assert_eq!(response.json()["body"], "");
}

#[tokio::test]
async fn large_bodies_are_edited_up_to_the_limit_and_passed_unchanged_beyond() {
    let gw = gateway(json!({"add": {"body": {"added": true}}, "max_body_bytes": 2_097_152})).await;
    // ~1.5 MiB of small values: many chunks through the gateway, a large parse in the VM.
    let items: Vec<Value> = (0..150_000).map(|i| json!({"i": i})).collect();
    let big = json!({"items": items}).to_string();
    assert!(big.len() > 1_500_000);
    let response = gw.send("POST", "/anything", &[JSON], big.as_bytes()).await;
    assert_eq!(response.status, 200, "{}", &response.text()[..200]);
    let sent: Value = serde_json::from_str(response.json()["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["added"], true);
    assert_eq!(sent["items"].as_array().unwrap().len(), 150_000);

    // The costliest document per byte for the parser: empty objects, up to the limit. The VM's
    // memory (64 MiB) holds it.
    let worst = format!("{{\"o\":[{}{{}}]}}", "{},".repeat(699_000));
    assert!(worst.len() < 2_097_152);
    let response = gw
        .send("POST", "/anything", &[JSON], worst.as_bytes())
        .await;
    assert_eq!(
        response.status,
        200,
        "{}",
        &response.text()[..200.min(response.body.len())]
    );
    let sent = response.json()["body"].as_str().unwrap().to_string();
    assert!(
        sent.ends_with(r#"{}],"added":true}"#),
        "{}",
        &sent[sent.len() - 40..]
    );

    let gw = gateway(json!({"add": {"body": {"added": true}}, "max_body_bytes": 1000})).await;
    let body = json!({"pad": "x".repeat(2000)}).to_string();
    let response = gw.send("POST", "/anything", &[JSON], body.as_bytes()).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["body"], body.as_str());
}

/// Sends raw HTTP/1.1 bytes in pieces (with pauses, so the gateway reads them as separate
/// chunks) and returns the status and body of the response (the connection is closed).
async fn raw_exchange(addr: SocketAddr, pieces: &[&[u8]]) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    for piece in pieces {
        stream.write_all(piece).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let Some(at) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (status, Vec::new());
    };
    let head = String::from_utf8_lossy(&out[..at]).to_ascii_lowercase();
    let body = &out[at + 4..];
    if head.contains("transfer-encoding: chunked") {
        (status, dechunk(body))
    } else {
        (status, body.to_vec())
    }
}

/// A chunked body, de-chunked.
fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..at]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[at + 2..at + 2 + size]);
        rest = &rest[at + 2 + size + 2..];
    }
    out
}

#[tokio::test]
async fn a_chunked_request_body_is_buffered_and_edited_whole() {
    let gw = gateway(json!({"set": {"body": {"user.id": 7}}, "remove": {"body": ["drop"]}})).await;
    let head = b"POST /anything HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                 transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let (status, body) = raw_exchange(
        gw.addr(),
        &[
            head,
            b"9\r\n{\"drop\": \r\n",
            b"7\r\ntrue, \"\r\n",
            b"b\r\nuser\": {}, \r\n",
            b"8\r\n\"z\": [1]\r\n",
            b"1\r\n}\r\n0\r\n\r\n",
        ],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["body"], r#"{"user":{"id":7},"z":[1]}"#);
    assert_eq!(echo["headers"]["content-length"], "25");
    assert!(echo["headers"].get("transfer-encoding").is_none());
}

#[tokio::test]
async fn header_values_that_are_not_utf8_do_not_break_the_plugin() {
    let gw = gateway(json!({
        "add": {"headers": {"x-copy": "$(headers.x-latin)"}, "body": {"a": 1}},
        "rename": {"headers": {"x-latin": "x-renamed"}}
    }))
    .await;
    let request = b"POST /anything HTTP/1.1\r\nhost: test\r\nx-latin: caf\xe9\r\n\
                    content-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
    let (status, body) = raw_exchange(gw.addr(), &[request]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["headers"]["x-renamed"], "caf\u{fffd}");
    assert_eq!(echo["headers"]["x-copy"], "caf\u{fffd}");
    assert_eq!(echo["body"], r#"{"a":1}"#);
}

#[tokio::test]
async fn a_bad_configuration_fails_the_build_with_the_pointer() {
    for (config, expected) in [
        (
            json!({"set": {"headers": {":path": "/x"}}}),
            "at /set/headers/:path",
        ),
        (
            json!({"remove": {"headers": ["x-a", ":method"]}}),
            "at /remove/headers/1",
        ),
        (
            json!({"add": {"headers": {":authority": "evil"}}}),
            "at /add/headers/:authority",
        ),
        (
            json!({"add": {"headers": {"Connection": "close"}}}),
            "at /add/headers/Connection",
        ),
        (
            json!({"remove": {"headers": ["transfer-encoding"]}}),
            "at /remove/headers/0",
        ),
        (
            json!({"rename": {"headers": {"x-a": "upgrade"}}}),
            "at /rename/headers/x-a",
        ),
        // Templates are the plugin's to check: the schema sees only a string.
        (
            json!({"add": {"headers": {"x-a": "$(cookies.b)"}}}),
            "at /add/headers/x-a",
        ),
        (
            json!({"append": {"querystring": {"q": []}}}),
            "at /append/querystring/q",
        ),
        (json!({"remove": {"body": ["a..b"]}}), "at /remove/body/0"),
        (json!({"max_body_bytes": 0}), "at /max_body_bytes"),
        (
            json!({"add": {"cookies": {"a": "1"}}}),
            "unknown field `cookies`",
        ),
    ] {
        let template = config.to_string().contains("$(");
        assert_eq!(
            check_config(crate_dir(), &config).is_err(),
            !template,
            "{config}"
        );
        let error = match TestGateway::builder()
            .plugin(
                "request-transformer",
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
    assert_eq!(manifest.name, "request-transformer");
    assert_eq!(manifest.kind, "transform");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    for example in [
        json!({}),
        json!({
            "remove": {"headers": ["x-internal-debug"], "querystring": ["debug"], "body": ["password"]},
            "rename": {"headers": {"x-api-key": "x-upstream-key"}, "querystring": {"q": "search"}, "body": {"user": "username"}},
            "replace": {"headers": {"user-agent": "barbacane"}, "body": {"role": "user"}},
            "set": {"headers": {"x-consumer-id": "$(consumer.id)"}, "querystring": {"v": 2}},
            "add": {"headers": {"x-tenant": "$(headers.x-tenant-hint)"}, "querystring": {"lang": "en"}, "body": {"meta.source": "gateway", "flags": {"beta": true}}},
            "append": {"headers": {"x-forwarded-by": ["gw-1", "gw-2"]}, "body": {"tags": "via-gateway"}},
            "max_body_bytes": 65536
        }),
    ] {
        assert_eq!(check_config(crate_dir(), &example), Ok(()), "{example}");
    }
}

/// Printable ASCII, with the characters that matter to templates and queries overweighted.
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
            let keys = ["a", "b", "user", "meta", "tags", "password", "x.y"];
            Value::Object(
                (0..rng.below(5))
                    .map(|_| (rng.pick(&keys).to_string(), random_json(rng, depth + 1)))
                    .collect(),
            )
        }
    }
}

#[tokio::test]
async fn random_requests_never_make_the_plugin_fail() {
    let gw = TestGateway::builder()
        .plugin("set-consumer", &build_plugin(&fixture_dir()), json!(null))
        .plugin(
            "request-transformer",
            &build_plugin(crate_dir()),
            json!({
                "remove": {"headers": ["x-a"], "querystring": ["a"], "body": ["password", "meta.x"]},
                "rename": {"headers": {"x-b": "x-a"}, "querystring": {"b": "a"}, "body": {"user": "meta.user", "a": "tags"}},
                "replace": {"headers": {"x-c": "$(query.a)"}, "querystring": {"c": "$(headers.x-c)"}, "body": {"b": "$(headers.x-b)"}},
                "set": {"headers": {"x-d": "$(headers.x-c)-$(consumer.id)"}, "body": {"meta.by": "$(consumer.groups)"}},
                "add": {"headers": {"x-e": "$(query.q)"}, "querystring": {"q": "$(headers.x-q)"}, "body": {"meta.q": "$(query.q)", "user.name": 1}},
                "append": {"headers": {"x-f": ["1", "$(headers.x-f)"]}, "querystring": {"t": "$(query.t)"}, "body": {"tags": ["$(query.t)"], "b": 2}}
            }),
        )
        .start()
        .await;
    let names = [
        "x-a",
        "x-b",
        "x-c",
        "x-f",
        "x-q",
        "x-test-consumer",
        "x-test-groups",
        "accept",
    ];
    let content_types = [
        "application/json",
        "application/problem+json",
        "text/plain",
        "application/json; charset=utf-8",
        "",
    ];
    let query_keys = ["a", "b", "c", "q", "t", "%zz", "a+b", ""];
    let mut rng = Random::new(0x5eed_1234_abcd_0001);
    for round in 0..300 {
        let mut headers: Vec<(String, String)> = Vec::new();
        for _ in 0..rng.below(6) {
            headers.push((
                rng.pick(&names).to_string(),
                random_text(&mut rng, 20).trim().to_string(),
            ));
        }
        let content_type = *rng.pick(&content_types);
        if !content_type.is_empty() {
            headers.push((String::from("content-type"), content_type.to_string()));
        }
        let mut path = String::from("/anything");
        for i in 0..rng.below(5) {
            path.push(if i == 0 { '?' } else { '&' });
            path.push_str(rng.pick::<&str>(&query_keys));
            if rng.below(3) > 0 {
                path.push('=');
                let value: String = form_encode(&random_text(&mut rng, 10));
                path.push_str(&value);
            }
        }
        let body: Vec<u8> = match rng.below(4) {
            0 => Vec::new(),
            1 => random_text(&mut rng, 200).into_bytes(),
            2 => (0..rng.below(300)).map(|_| rng.next_u64() as u8).collect(),
            _ => random_json(&mut rng, 0).to_string().into_bytes(),
        };
        let method = if body.is_empty() && rng.below(2) == 0 {
            "GET"
        } else {
            "POST"
        };
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let response = gw.send(method, &path, &pairs, &body).await;
        assert_eq!(
            response.status,
            200,
            "round {round}: {method} {path} {headers:?} {:?}: {}",
            String::from_utf8_lossy(&body),
            response.text()
        );
        // What reached the upstream is still a well-formed request with a body of its length.
        let echo = response.json();
        let received = echo["body"].as_str().unwrap();
        if let Some(length) = echo["headers"]["content-length"].as_str()
            && !received.contains('\u{fffd}')
        {
            assert_eq!(
                length.parse::<usize>().unwrap(),
                received.len(),
                "round {round}"
            );
        }
        // Now and then, a header value that is not UTF-8 (only raw bytes can carry one).
        if round % 10 == 0 {
            let mut raw = format!(
                "POST {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
                 connection: close\r\ncontent-length: {}\r\nx-c: ",
                body.len()
            )
            .into_bytes();
            raw.extend((0..rng.below(8)).map(|_| 0x80 + rng.below(0x80) as u8));
            raw.extend_from_slice(b"\r\n\r\n");
            raw.extend_from_slice(&body);
            let (status, _) = raw_exchange(gw.addr(), &[&raw]).await;
            assert_eq!(status, 200, "round {round}: raw {path}");
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of a query value.
fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

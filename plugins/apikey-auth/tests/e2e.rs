//! End-to-end: the plugin's `.wasm`, built from this crate, served by the real gateway in front
//! of an echo upstream (`barbacane_sdk::testing`). Key hashes are computed by `sha256sum`, not by
//! this repository's code.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane_sdk::testing::{Random, TestGateway, build_plugin, check_config, plugin_manifest};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const CHALLENGE: &str = "ApiKey realm=\"api\"";

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// SHA-256 of `key` in hex, from coreutils' `sha256sum`.
fn sha256sum(key: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) is needed by these tests");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    text.split_whitespace().next().unwrap().to_string()
}

/// Two consumers: alice (admins, ops) and bob (no groups).
fn consumers() -> Value {
    json!([
        {"id": "alice", "key_sha256": sha256sum("alice-secret-key"), "groups": ["admins", "ops"]},
        {"id": "bob", "key_sha256": sha256sum("bob-secret-key").to_uppercase()}
    ])
}

async fn gateway(config: Value) -> TestGateway {
    TestGateway::builder()
        .plugin("apikey-auth", &build_plugin(crate_dir()), config)
        .start()
        .await
}

#[tokio::test]
async fn a_known_key_in_the_header_names_the_consumer_upstream() {
    let gw = gateway(json!({"consumers": consumers()})).await;
    let response = gw
        .send(
            "GET",
            "/anything?x=1",
            &[
                ("x-api-key", "alice-secret-key"),
                // Forged identity headers are replaced, never passed on.
                ("x-consumer-id", "root"),
                ("x-consumer-groups", "superusers"),
            ],
            b"",
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let upstream = response.json();
    assert_eq!(upstream["headers"]["x-consumer-id"], "alice");
    assert_eq!(upstream["headers"]["x-consumer-groups"], "admins, ops");
    assert_eq!(
        upstream["headers"].get("x-api-key"),
        None,
        "hidden by default"
    );
    assert_eq!(upstream["uri"], "/anything?x=1");

    // bob's hash was configured in uppercase hex; he has no groups, so no groups header.
    let response = gw
        .send(
            "POST",
            "/anything",
            &[
                ("X-Api-Key", "bob-secret-key"),
                ("x-consumer-groups", "admins"),
            ],
            b"{}",
        )
        .await;
    assert_eq!(response.status, 200);
    let upstream = response.json();
    assert_eq!(upstream["headers"]["x-consumer-id"], "bob");
    assert_eq!(upstream["headers"].get("x-consumer-groups"), None);
}

#[tokio::test]
async fn keys_in_the_query_are_read_after_the_header_and_removed() {
    let gw = gateway(json!({"consumers": consumers(), "query_param": "apikey"})).await;
    let response = gw.get("/anything?a=1&apikey=bob-secret-key&b=%2Fx+y").await;
    assert_eq!(response.status, 200, "{}", response.text());
    let upstream = response.json();
    assert_eq!(upstream["headers"]["x-consumer-id"], "bob");
    assert_eq!(
        upstream["uri"], "/anything?a=1&b=%2Fx+y",
        "only the key is removed"
    );

    // The header wins over the query: here it is alice, and the query (not the key used) stays.
    let response = gw
        .send(
            "GET",
            "/anything?apikey=bob-secret-key",
            &[("x-api-key", "alice-secret-key")],
            b"",
        )
        .await;
    let upstream = response.json();
    assert_eq!(upstream["headers"]["x-consumer-id"], "alice");
    assert_eq!(upstream["uri"], "/anything?apikey=bob-secret-key");

    // A wrong key in the header is not rescued by a good one in the query.
    let response = gw
        .send(
            "GET",
            "/anything?apikey=bob-secret-key",
            &[("x-api-key", "nope")],
            b"",
        )
        .await;
    response.assert_problem(401, "unauthorized");

    let response = gw.get("/anything?apikey=bob-secret-key").await;
    assert_eq!(response.json()["uri"], "/anything");
}

#[tokio::test]
async fn credentials_can_be_kept_for_the_upstream() {
    let gw = gateway(json!({
        "consumers": consumers(),
        "header": "authorization-key",
        "query_param": "k",
        "hide_credentials": false
    }))
    .await;
    let response = gw
        .send(
            "GET",
            "/anything",
            &[("Authorization-Key", "alice-secret-key")],
            b"",
        )
        .await;
    let upstream = response.json();
    assert_eq!(upstream["headers"]["authorization-key"], "alice-secret-key");
    assert_eq!(upstream["headers"]["x-consumer-id"], "alice");
    let response = gw.get("/anything?k=bob-secret-key").await;
    assert_eq!(response.json()["uri"], "/anything?k=bob-secret-key");
    // x-api-key is not the configured header any more.
    let response = gw
        .send(
            "GET",
            "/anything",
            &[("x-api-key", "alice-secret-key")],
            b"",
        )
        .await;
    response.assert_problem(401, "unauthorized");
}

#[tokio::test]
async fn missing_and_wrong_keys_are_401_problems_with_a_challenge() {
    let gw = gateway(json!({"consumers": consumers(), "query_param": "apikey", "realm": "orders"}))
        .await;
    let challenge = "ApiKey realm=\"orders\"";

    let response = gw.get("/anything").await;
    let doc = response.assert_problem(401, "unauthorized");
    assert_eq!(
        doc["detail"],
        "no API key in header x-api-key or query parameter apikey"
    );
    assert_eq!(response.header("www-authenticate"), Some(challenge));

    let response = gw
        .send("GET", "/anything", &[("x-api-key", "wrong")], b"")
        .await;
    let doc = response.assert_problem(401, "unauthorized");
    assert_eq!(doc["detail"], "invalid API key");
    assert_eq!(response.header("www-authenticate"), Some(challenge));

    // Case matters in keys.
    let response = gw
        .send(
            "GET",
            "/anything",
            &[("x-api-key", "ALICE-SECRET-KEY")],
            b"",
        )
        .await;
    response.assert_problem(401, "unauthorized");

    // Two different keys: refused rather than guessed between.
    let response = gw
        .send(
            "GET",
            "/anything",
            &[
                ("x-api-key", "alice-secret-key"),
                ("x-api-key", "bob-secret-key"),
            ],
            b"",
        )
        .await;
    let doc = response.assert_problem(401, "unauthorized");
    assert_eq!(doc["detail"], "several API keys in header x-api-key");
    let response = gw.get("/anything?apikey=x&apikey=bob-secret-key").await;
    response.assert_problem(401, "unauthorized");

    // Forged identity headers alone get nowhere.
    let response = gw
        .send(
            "GET",
            "/anything",
            &[("x-consumer-id", "alice"), ("x-consumer-groups", "admins")],
            b"",
        )
        .await;
    response.assert_problem(401, "unauthorized");

    assert!(
        gw.upstream("echo").requests().is_empty(),
        "no refused request reached the upstream"
    );
}

#[tokio::test]
async fn a_non_utf8_key_is_refused_not_a_trap() {
    let gw = gateway(json!({"consumers": consumers()})).await;
    let mut request =
        b"GET /anything HTTP/1.1\r\nhost: test\r\nconnection: close\r\nx-api-key: ".to_vec();
    request.extend_from_slice(&[0xff, 0xfe, b'k', 0x80]);
    request.extend_from_slice(b"\r\nx-other: \xc3\x28\r\n\r\n");
    let response = gw.raw(&request).await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(
        response.contains("urn:barbacane:error:unauthorized"),
        "{response}"
    );

    // A non-UTF-8 value elsewhere does not stop a good key.
    let request = b"GET /anything HTTP/1.1\r\nhost: test\r\nconnection: close\r\nx-other: \xff\r\nx-api-key: alice-secret-key\r\n\r\n".to_vec();
    let response = gw.raw(&request).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#""x-consumer-id":"alice""#),
        "{response}"
    );
}

/// Printable ASCII (what the HTTP client lets through), sometimes long.
fn random_text(rng: &mut Random) -> String {
    let len = match rng.below(10) {
        0 => 0,
        1 => 500 + rng.below(4000),
        _ => rng.below(40),
    };
    (0..len)
        .map(|_| char::from(0x20 + rng.below(95) as u8))
        .collect::<String>()
        .trim()
        .to_string()
}

/// A query component: unreserved characters, `+`, `=` and percent-escapes of any byte.
fn random_query_text(rng: &mut Random) -> String {
    let mut out = String::new();
    for _ in 0..rng.below(30) {
        match rng.below(6) {
            0 => out.push_str(&format!("%{:02X}", rng.below(256))),
            1 => out.push('+'),
            2 => out.push('='),
            _ => out.push(char::from(b"abcXYZ019-._~"[rng.below(13)])),
        }
    }
    out
}

#[tokio::test]
async fn random_requests_never_make_it_trap() {
    let gw = gateway(json!({"consumers": consumers(), "query_param": "apikey"})).await;
    let mut rng = Random::new(0x5eed_1234_abcd_ef01);
    let keys = ["alice-secret-key", "bob-secret-key", "", " ", "alice", "x"];
    for i in 0..300 {
        let mut headers: Vec<(String, String)> = Vec::new();
        for _ in 0..rng.below(4) {
            let name = *rng.pick(&[
                "x-api-key",
                "X-API-KEY",
                "x-consumer-id",
                "x-consumer-groups",
                "authorization",
            ]);
            let value = if rng.below(2) == 0 {
                rng.pick(&keys).to_string()
            } else {
                random_text(&mut rng)
            };
            headers.push((name.to_string(), value));
        }
        let mut path = String::from("/anything");
        if rng.below(2) == 0 {
            let key = if rng.below(2) == 0 {
                rng.pick(&keys).replace(' ', "+")
            } else {
                random_query_text(&mut rng)
            };
            path.push_str(&format!(
                "?{}&apikey={key}&{}",
                random_query_text(&mut rng),
                random_query_text(&mut rng)
            ));
        }
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let response = gw.send("GET", &path, &refs, b"").await;
        match response.status {
            200 => {
                let id = response.json()["headers"]["x-consumer-id"].clone();
                assert!(
                    id == "alice" || id == "bob",
                    "#{i} {path} {headers:?}: {id}"
                );
            }
            401 => {
                response.assert_problem(401, "unauthorized");
                assert_eq!(response.header("www-authenticate"), Some(CHALLENGE));
            }
            status => panic!("#{i} {path} {headers:?}: {status} {}", response.text()),
        }
    }
}

#[tokio::test]
async fn a_bad_configuration_fails_the_build_with_the_plugins_reason() {
    let good = sha256sum("k");
    // The schema catches these too (`barbacane compile` reports E1062 for a built-in plugin).
    let schema_errors = [
        (json!({}), "missing field `consumers`"),
        (json!({"consumers": []}), "at /consumers:"),
        (
            json!({"consumers": [{"id": "a", "key_sha256": "k"}]}),
            "at /consumers/0/key_sha256",
        ),
        (
            json!({"consumers": [{"id": "a", "key_sha256": good, "groups": ["a,b"]}]}),
            "at /consumers/0/groups/0",
        ),
        (
            json!({"consumers": [{"id": "a", "key_sha256": good}], "hide_credentials": "yes"}),
            "at /hide_credentials",
        ),
        (
            json!({"consumers": [{"id": "a", "key_sha256": good, "key": "k"}]}),
            "unknown field `key`",
        ),
    ];
    // Only the plugin knows these.
    let plugin_errors = [
        (
            json!({"consumers": [{"id": "a", "key_sha256": good}, {"id": "b", "key_sha256": good.to_uppercase()}]}),
            "at /consumers/1/key_sha256: the same key is configured twice",
        ),
        (
            json!({"consumers": [{"id": "a", "key_sha256": good}], "header": null}),
            "at /header: no header and no query_param",
        ),
    ];
    for (config, _) in &schema_errors {
        assert!(check_config(crate_dir(), config).is_err(), "{config}");
    }
    for (config, _) in &plugin_errors {
        assert_eq!(check_config(crate_dir(), config), Ok(()), "{config}");
    }
    for (config, expected) in schema_errors.into_iter().chain(plugin_errors) {
        let error = match TestGateway::builder()
            .plugin("apikey-auth", &build_plugin(crate_dir()), config.clone())
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

/// The configuration of `docs/plugins/apikey-auth.md` and `spec-examples/plugins/apikey-auth`.
fn documented() -> Value {
    json!({
        "consumers": [
            {"id": "alice", "key_sha256": "0572c17ed012b3efdf9df98db1718f225887132739b8da945d81ac5a7d1fea45", "groups": ["admins"]},
            {"id": "bob", "key_sha256": "3a1f6bae21de4f036f2aba80fce463677f1070f8bf81f0f475604cccd8e2d7f3"}
        ],
        "header": "x-api-key",
        "query_param": "api_key",
        "realm": "orders"
    })
}

#[tokio::test]
async fn the_documented_keys_work() {
    assert_eq!(
        sha256sum("alice-demo-key"),
        documented()["consumers"][0]["key_sha256"]
    );
    let gw = gateway(documented()).await;
    let response = gw
        .send("GET", "/anything", &[("x-api-key", "alice-demo-key")], b"")
        .await;
    assert_eq!(response.json()["headers"]["x-consumer-id"], "alice");
    let response = gw.get("/anything?api_key=bob-demo-key").await;
    assert_eq!(response.json()["headers"]["x-consumer-id"], "bob");
    let response = gw.get("/anything").await;
    response.assert_problem(401, "unauthorized");
    assert_eq!(
        response.header("www-authenticate"),
        Some("ApiKey realm=\"orders\"")
    );
}

#[test]
fn manifest_and_documented_examples() {
    let manifest = plugin_manifest(crate_dir());
    assert_eq!(manifest.name, "apikey-auth");
    assert_eq!(manifest.kind, "auth");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    for example in [
        json!({"consumers": consumers()}),
        documented(),
        json!({
            "consumers": [{
                "id": "billing-service",
                "key_sha256": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
                "groups": ["internal"]
            }],
            "header": "x-api-key",
            "query_param": "api_key",
            "realm": "orders",
            "hide_credentials": true
        }),
        json!({"consumers": consumers(), "header": null, "query_param": "key"}),
    ] {
        assert_eq!(check_config(crate_dir(), &example), Ok(()), "{example}");
    }
}

//! End-to-end: the plugin's `.wasm`, built from this crate, served by the real gateway in front
//! of an echo upstream, with a real loopback introspection server (`barbacane_sdk::testing`)
//! that checks the gateway's client credentials and form body and records every call.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane_sdk::testing::{
    Random, TestGateway, TestRequest, TestResponse, build_plugin, check_config, plugin_manifest,
};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `Basic base64("gw-client:s3cr%2Ft")`: the secret `s3cr/t` form-encoded first (RFC 6749
/// §2.3.1).
const CLIENT_AUTH: &str = "Basic Z3ctY2xpZW50OnMzY3IlMkZ0";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The authorization server: RFC 7662 as written, refusing callers without the gateway's
/// credentials. Tokens name their answer.
fn introspection_server(request: TestRequest) -> TestResponse {
    let json = |status: u16, body: Value| {
        TestResponse::new(status)
            .with_header("content-type", "application/json")
            .with_body(body.to_string())
    };
    if request.method != "POST"
        || request.header("authorization") != Some(CLIENT_AUTH)
        || request.header("content-type") != Some("application/x-www-form-urlencoded")
    {
        return json(401, json!({"error": "invalid_client"}));
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(token) = field("token") else {
        return json(400, json!({"error": "invalid_request"}));
    };
    let now = now();
    match token {
        "good" => json(
            200,
            json!({
                "active": true, "sub": "alice", "client_id": "app", "scope": "read write",
                "groups": ["admin", "ops"], "exp": now + 3600, "iat": now,
                "token_type_hint_seen": field("token_type_hint"),
            }),
        ),
        "reader" => json(
            200,
            json!({"active": true, "sub": "bob", "scope": "read", "exp": now + 3600}),
        ),
        "service" => json(
            200,
            json!({"active": true, "client_id": "batch-job", "scope": "write"}),
        ),
        "short" if now < SHORT_EXP.load(Ordering::SeqCst) => json(
            200,
            json!({"active": true, "sub": "carol", "scope": "read write", "exp": SHORT_EXP.load(Ordering::SeqCst)}),
        ),
        "expired" => json(
            200,
            json!({"active": true, "sub": "dave", "scope": "read write", "exp": now - 10}),
        ),
        "boom" => json(500, json!({"error": "server_error"})),
        "garbage" => TestResponse::new(200).with_body("<html>oops</html>"),
        "no-active" => json(200, json!({"sub": "eve"})),
        "slow" => {
            // Longer than the plugin's timeout; this blocks one runtime thread (the tests that
            // use it run on a multi-threaded runtime).
            std::thread::sleep(Duration::from_millis(1500));
            json(200, json!({"active": true, "sub": "slow"}))
        }
        _ => json(200, json!({"active": false})),
    }
}

/// The `exp` of the token `short`, set by the test that uses it.
static SHORT_EXP: AtomicI64 = AtomicI64::new(0);

fn config(extra: Value) -> Value {
    let mut config = json!({
        "upstream": "idp",
        "path": "/oauth2/introspect",
        "client_id": "gw-client",
        "client_secret": "s3cr/t",
        "realm": "api",
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

async fn gateway(extra: Value) -> TestGateway {
    TestGateway::builder()
        .upstream("idp", introspection_server)
        .plugin(
            "oauth2-introspection",
            &build_plugin(crate_dir()),
            config(extra),
        )
        .start()
        .await
}

async fn get(gw: &TestGateway, authorization: &str) -> TestResponse {
    gw.send("GET", "/anything", &[("authorization", authorization)], b"")
        .await
}

fn calls(gw: &TestGateway) -> usize {
    gw.upstream("idp").requests().len()
}

#[tokio::test]
async fn an_active_token_reaches_the_upstream_as_its_consumer() {
    let gw = gateway(json!({
        "groups_claim": "groups",
        "claims_to_headers": {"scope": "x-token-scope", "client_id": "x-client-id"}
    }))
    .await;
    let response = gw
        .send(
            "GET",
            "/anything",
            &[
                ("authorization", "Bearer good"),
                // Forged identity headers are replaced, never passed on.
                ("x-consumer-id", "mallory"),
                ("x-consumer-groups", "root"),
                ("x-token-scope", "everything"),
            ],
            b"",
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = &response.json()["headers"];
    assert_eq!(seen["x-consumer-id"], "alice");
    assert_eq!(seen["x-consumer-groups"], "admin,ops");
    assert_eq!(seen["x-token-scope"], "read write");
    assert_eq!(seen["x-client-id"], "app");
    assert_eq!(seen["authorization"], "Bearer good");

    // The introspection request, as RFC 7662 §2.1 has it.
    let requests = gw.upstream("idp").requests();
    assert_eq!(requests.len(), 1);
    let call = &requests[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.uri, "/oauth2/introspect");
    assert_eq!(call.header("authorization"), Some(CLIENT_AUTH));
    assert_eq!(call.header("accept"), Some("application/json"));
    assert_eq!(
        String::from_utf8_lossy(&call.body),
        "token=good&token_type_hint=access_token"
    );
}

#[tokio::test]
async fn answers_are_cached_per_token() {
    let gw = gateway(json!({})).await;
    for _ in 0..3 {
        assert_eq!(get(&gw, "Bearer good").await.status, 200);
    }
    assert_eq!(calls(&gw), 1, "the same token is introspected once");
    assert_eq!(get(&gw, "Bearer reader").await.status, 200);
    assert_eq!(calls(&gw), 2, "another token is introspected");

    // Inactive answers are cached too (negative_cache_ttl).
    for _ in 0..3 {
        get(&gw, "Bearer unknown")
            .await
            .assert_problem(401, "invalid-token");
    }
    assert_eq!(calls(&gw), 3);

    // Without caching, every request asks.
    let gw = gateway(json!({"cache_ttl": 0, "negative_cache_ttl": 0})).await;
    for _ in 0..2 {
        assert_eq!(get(&gw, "Bearer good").await.status, 200);
        assert_eq!(get(&gw, "Bearer unknown").await.status, 401);
    }
    assert_eq!(calls(&gw), 4);
}

#[tokio::test]
async fn a_cached_answer_never_outlives_the_tokens_exp() {
    let gw = gateway(json!({"cache_ttl": 3600})).await;
    // Set once the gateway runs: starting it may take a while on a busy machine.
    SHORT_EXP.store(now() + 3, Ordering::SeqCst);
    assert_eq!(get(&gw, "Bearer short").await.status, 200);
    assert_eq!(get(&gw, "Bearer short").await.status, 200);
    assert_eq!(calls(&gw), 1);
    // Generously past exp.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let response = get(&gw, "Bearer short").await;
    response.assert_problem(401, "invalid-token");
    assert_eq!(calls(&gw), 2, "the expired entry was not used");
}

#[tokio::test]
async fn inactive_and_expired_tokens_are_401_invalid_token() {
    let gw = gateway(json!({})).await;
    let response = get(&gw, "Bearer unknown").await;
    let doc = response.assert_problem(401, "invalid-token");
    assert_eq!(doc["detail"], "the token is not active");
    assert_eq!(
        response.header("www-authenticate"),
        Some(
            r#"Bearer realm="api", error="invalid_token", error_description="the token is not active""#
        )
    );
    // Active but past its exp: the gateway does not take the server's word over the clock.
    let response = get(&gw, "Bearer expired").await;
    let doc = response.assert_problem(401, "invalid-token");
    assert_eq!(doc["detail"], "the token has expired");
    assert!(gw.upstream("echo").requests().is_empty());
}

#[tokio::test]
async fn a_missing_scope_is_403_insufficient_scope() {
    let gw = gateway(json!({"required_scopes": ["read", "write"]})).await;
    let response = get(&gw, "Bearer reader").await;
    let doc = response.assert_problem(403, "insufficient-scope");
    assert_eq!(doc["detail"], "the token lacks the scope(s): write");
    assert_eq!(
        response.header("www-authenticate"),
        Some(
            r#"Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required scope", scope="read write""#
        )
    );
    assert_eq!(get(&gw, "Bearer good").await.status, 200);
    // A client acting for itself: its client_id is the consumer.
    let gw = gateway(json!({"required_scopes": ["write"]})).await;
    let response = get(&gw, "Bearer service").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["headers"]["x-consumer-id"], "batch-job");
}

#[tokio::test]
async fn requests_without_a_usable_token_never_reach_the_server() {
    let gw = gateway(json!({})).await;
    let response = gw.get("/anything").await;
    response.assert_problem(401, "unauthorized");
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer realm="api""#)
    );
    let response = get(&gw, "Basic dXNlcjpwYXNz").await;
    response.assert_problem(401, "unauthorized");
    for malformed in ["Bearer", "Bearer a b", "Bearer tok\"en", "Bearer =abc"] {
        let response = get(&gw, malformed).await;
        response.assert_problem(400, "invalid-request");
        assert!(
            response
                .header("www-authenticate")
                .unwrap()
                .contains(r#"error="invalid_request""#)
        );
    }
    let long = format!("Bearer {}", "a".repeat(9000));
    get(&gw, &long).await.assert_problem(400, "invalid-request");
    assert_eq!(calls(&gw), 0);
}

#[tokio::test]
async fn hide_credentials_removes_the_token_upstream() {
    let gw = gateway(json!({"hide_credentials": true})).await;
    let response = get(&gw, "Bearer good").await;
    assert_eq!(response.status, 200);
    assert!(response.json()["headers"].get("authorization").is_none());
}

#[tokio::test]
async fn an_unusable_answer_fails_closed_with_503_and_is_not_cached() {
    let gw = gateway(json!({})).await;
    for token in ["boom", "garbage", "no-active"] {
        for _ in 0..2 {
            let response = get(&gw, &format!("Bearer {token}")).await;
            response.assert_problem(503, "introspection-unavailable");
            assert_eq!(response.header("www-authenticate"), None, "{token}");
        }
    }
    assert_eq!(calls(&gw), 6, "failures are asked again every time");
    assert!(gw.upstream("echo").requests().is_empty());

    // Credentials the server refuses: its 401 is the gateway's trouble, not the client's.
    let gw = TestGateway::builder()
        .upstream("idp", introspection_server)
        .plugin(
            "oauth2-introspection",
            &build_plugin(crate_dir()),
            config(json!({"client_secret": "wrong"})),
        )
        .start()
        .await;
    get(&gw, "Bearer good")
        .await
        .assert_problem(503, "introspection-unavailable");
}

#[tokio::test]
async fn an_unreachable_server_fails_closed_with_503() {
    // Nothing listens there.
    let gw = TestGateway::builder()
        .closed_upstream("idp")
        .plugin(
            "oauth2-introspection",
            &build_plugin(crate_dir()),
            config(json!({})),
        )
        .start()
        .await;
    get(&gw, "Bearer good")
        .await
        .assert_problem(503, "introspection-unavailable");
    // An upstream the spec does not declare: the host refuses the call.
    let gw = TestGateway::builder()
        .plugin(
            "oauth2-introspection",
            &build_plugin(crate_dir()),
            config(json!({"upstream": "nowhere"})),
        )
        .start()
        .await;
    get(&gw, "Bearer good")
        .await
        .assert_problem(503, "introspection-unavailable");
    assert!(gw.upstream("echo").requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_times_out_and_fails_closed() {
    let gw = gateway(json!({"timeout_ms": 200})).await;
    // The server does answer, `active: true`, after 1.5 s: a 503 means the plugin gave up at
    // its timeout instead of waiting for that answer (no wall-time assertion needed).
    get(&gw, "Bearer slow")
        .await
        .assert_problem(503, "introspection-unavailable");
}

/// A token the server below answers with some odd JSON.
fn random_token(rng: &mut Random) -> String {
    const ALPHABET: &[u8] = b"abcXYZ019-._~+/";
    let len = 1 + rng.below(40);
    let mut token: String = (0..len)
        .map(|_| ALPHABET[rng.below(ALPHABET.len())] as char)
        .collect();
    token.push_str(&"=".repeat(rng.below(3)));
    token
}

/// An introspection server whose answers are odd but decided by the token, so that cached and
/// fresh answers agree.
fn odd_server(request: TestRequest) -> TestResponse {
    let seed = request.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = Random::new(seed | 1);
    let odd_values = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1e300),
        json!("a\r\nx-evil: 1"),
        json!(""),
        json!([1, "two", null, {"three": 3}]),
        json!({"nested": {"deep": ["x"]}}),
        json!("read write admin"),
        json!(i64::MAX),
        json!("\u{0}\u{7f}é"),
    ];
    let shape = rng.below(8);
    let status = [200, 200, 200, 200, 200, 500, 404, 204][rng.below(8)];
    let mut pick = || odd_values[rng.below(odd_values.len())].clone();
    let body = match shape {
        0 => String::from("not json"),
        1 => String::new(),
        2 => json!({"active": pick()}).to_string(),
        3 => json!({"active": false, "sub": pick()}).to_string(),
        _ => json!({
            "active": true, "sub": pick(), "username": pick(), "client_id": pick(),
            "scope": pick(), "groups": pick(), "exp": pick(), "nbf": pick(), "x": pick()
        })
        .to_string(),
    };
    TestResponse::new(status).with_body(body)
}

#[tokio::test]
async fn random_requests_and_answers_never_make_the_plugin_trap() {
    let gw = TestGateway::builder()
        .upstream("idp", odd_server)
        .plugin(
            "oauth2-introspection",
            &build_plugin(crate_dir()),
            json!({
                "upstream": "idp", "path": "/i", "bearer_token": "gw",
                "groups_claim": "groups", "required_scopes": ["read"],
                "claims_to_headers": {"sub": "x-sub", "x": "x-x", "groups": "x-groups"},
                "cache_max_entries": 8
            }),
        )
        .start()
        .await;
    let mut rng = Random::new(0x0a07_2025_dead_beef);
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..300 {
        let authorization = match rng.below(6) {
            0 => rng.text(80),
            1 => format!("Bearer {}", rng.text(60)),
            2 => format!(
                "{} {}",
                ["bearer", "BEARER", "Basic", "Token", ""][rng.below(5)],
                random_token(&mut rng)
            ),
            _ => format!("Bearer {}", random_token(&mut rng)),
        };
        let headers = [
            ("authorization", authorization.as_str()),
            ("x-consumer-id", "forged"),
        ];
        let chosen = &headers[..rng.below(3)];
        let response = gw
            .send("POST", "/anything", chosen, rng.text(50).as_bytes())
            .await;
        assert!(
            matches!(response.status, 200 | 400 | 401 | 403 | 503),
            "request {i} {chosen:?}: {} {}",
            response.status,
            response.text()
        );
        if response.status == 503 {
            // Ours (fail closed), never the gateway's answer to a plugin that trapped (500).
            response.assert_problem(503, "introspection-unavailable");
        }
        if response.status == 200 {
            let forwarded = &response.json()["headers"];
            assert_ne!(forwarded["x-consumer-id"], "forged");
            assert!(forwarded.get("x-evil").is_none());
        }
        *seen.entry(response.status).or_insert(0) += 1;
    }
    // The run exercised more than one path.
    assert!(seen.len() >= 4, "{seen:?}");
}

#[tokio::test]
async fn a_bad_configuration_fails_the_build_with_the_plugins_reason() {
    let minimal = config(json!({}));
    let with = |extra: Value| {
        let mut c = minimal.clone();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    for (config, expected, schema_catches) in [
        (json!({}), "missing field `upstream`", true),
        (
            json!({"upstream": "idp", "path": "/i"}),
            "requires authorization (RFC 7662 §2.1)",
            true,
        ),
        (
            json!({"upstream": "idp", "path": "/i", "client_id": "gw"}),
            "at /client_secret",
            true,
        ),
        (with(json!({"bearer_token": "t"})), "at /bearer_token", true),
        (with(json!({"path": "introspect"})), "at /path", true),
        (with(json!({"timeout_ms": 0})), "at /timeout_ms", true),
        (
            with(json!({"required_scopes": ["read", "a b"]})),
            "at /required_scopes/1",
            true,
        ),
        (
            with(json!({"claims_to_headers": {"sub": "Host"}})),
            "at /claims_to_headers/sub",
            false,
        ),
        (with(json!({"cache_ttl": "1m"})), "at /cache_ttl", true),
    ] {
        assert_eq!(
            check_config(crate_dir(), &config).is_err(),
            schema_catches,
            "{config}"
        );
        let error = match TestGateway::builder()
            .upstream("idp", introspection_server)
            .plugin(
                "oauth2-introspection",
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
    assert_eq!(manifest.name, "oauth2-introspection");
    assert_eq!(manifest.kind, "auth");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    for example in [
        json!({"upstream": "idp", "path": "/introspect", "client_id": "gw", "client_secret": "s"}),
        json!({"upstream": "idp", "path": "/introspect", "bearer_token": "t"}),
        json!({
            "upstream": "keycloak",
            "path": "/realms/acme/protocol/openid-connect/token/introspect",
            "host": "sso.acme.example",
            "client_id": "gateway",
            "client_secret": "change-me",
            "token_type_hint": "access_token",
            "timeout_ms": 1500,
            "cache_ttl": 120,
            "negative_cache_ttl": 5,
            "cache_max_entries": 50000,
            "required_scopes": ["orders:read"],
            "groups_claim": "realm_access.roles",
            "claims_to_headers": {"sub": "x-user-id", "scope": "x-user-scope"},
            "hide_credentials": true,
            "realm": "orders api"
        }),
    ] {
        assert_eq!(check_config(crate_dir(), &example), Ok(()), "{example}");
    }
}

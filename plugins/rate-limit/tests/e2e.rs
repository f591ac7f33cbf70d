//! End-to-end: the plugin's `.wasm`, built from this crate, served by the real gateway in front
//! of an echo upstream (`barbacane_sdk::testing`), with several worker threads where sharing
//! the limit between replicas is the point.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane_sdk::testing::{
    Random, TestGateway, TestResponse, build_plugin, check_config, plugin_manifest,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn gateway(config: Value) -> TestGateway {
    TestGateway::builder()
        .plugin("rate-limit", &build_plugin(crate_dir()), config)
        .start()
        .await
}

/// `(name, parameters)` of a one-member RateLimit field such as `"default";r=2;t=20`.
fn parse_field(value: &str) -> (String, Vec<(String, u64)>) {
    let mut parts = value.split(';');
    let name = parts.next().unwrap();
    assert!(name.starts_with('"') && name.ends_with('"'), "{value}");
    let params = parts
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    (name.trim_matches('"').to_string(), params)
}

fn param(value: &str, key: &str) -> u64 {
    parse_field(value)
        .1
        .into_iter()
        .find_map(|(k, v)| (k == key).then_some(v))
        .unwrap_or_else(|| panic!("no {key} in {value}"))
}

fn from(ip: &str) -> [(&str, &str); 1] {
    [("x-forwarded-for", ip)]
}

// Shared data is process-wide and every test of this file runs in one process: each test names
// its own policy, so that no two share counters (the same configuration would, by design).

#[tokio::test]
async fn limit_requests_then_429_with_ratelimit_headers() {
    let gw = gateway(json!({"limit": 3, "window": 60, "policy_name": "first"})).await;
    for remaining in [2, 1, 0] {
        let response = gw.get("/anything").await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.header("x-upstream"), Some("echo"));
        assert_eq!(
            response.header("ratelimit-policy"),
            Some(r#""first";q=3;w=60"#)
        );
        let field = response.header("ratelimit").unwrap();
        assert_eq!(parse_field(field).0, "first");
        assert_eq!(param(field, "r"), remaining);
        // Full again when the tokens taken so far are back: 20 s each.
        let t = param(field, "t");
        let expected = 20 * (3 - remaining);
        assert!((expected - 1..=expected).contains(&t), "{field}");
    }
    let response = gw.get("/anything").await;
    let doc = response.assert_problem(429, "rate-limited");
    assert!(
        doc["detail"].as_str().unwrap().contains("3 per 60 s"),
        "{doc}"
    );
    let retry: u64 = response.header("retry-after").unwrap().parse().unwrap();
    assert!((19..=20).contains(&retry), "retry-after {retry}");
    assert_eq!(
        response.header("ratelimit-policy"),
        Some(r#""first";q=3;w=60"#)
    );
    let field = response.header("ratelimit").unwrap();
    assert_eq!(param(field, "r"), 0);
    assert!((59..=60).contains(&param(field, "t")), "{field}");
    assert_eq!(
        gw.upstream("echo").requests().len(),
        3,
        "a refused request never reaches the upstream"
    );
}

#[tokio::test]
async fn client_ips_behind_trusted_proxies_have_their_own_buckets() {
    let gw =
        gateway(json!({"limit": 1, "trusted_proxies": ["127.0.0.1"], "policy_name": "ips"})).await;
    let send = |ip: &'static str| {
        let gw = &gw;
        async move { gw.send("GET", "/anything", &from(ip), b"").await.status }
    };
    assert_eq!(send("203.0.113.1").await, 200);
    assert_eq!(send("203.0.113.1").await, 429);
    assert_eq!(send("203.0.113.2").await, 200);
    // A proxy chain: the rightmost untrusted entry is the client.
    assert_eq!(send("198.51.100.9, 203.0.113.2").await, 429);
    assert_eq!(send("203.0.113.2, 198.51.100.9").await, 200);

    // Without trusted proxies, x-forwarded-for is the client's own claim and is ignored: every
    // request comes from the peer, 127.0.0.1.
    let gw = gateway(json!({"limit": 1, "policy_name": "peer"})).await;
    let a = gw.send("GET", "/anything", &from("203.0.113.1"), b"").await;
    let b = gw.send("GET", "/anything", &from("203.0.113.2"), b"").await;
    assert_eq!((a.status, b.status), (200, 429));
}

#[tokio::test]
async fn header_values_have_their_own_buckets_and_a_missing_header_falls_back() {
    let gw = gateway(json!({"limit": 1, "limit_by": "header", "header_name": "X-Api-Key", "policy_name": "keys"})).await;
    let key = |k: &'static str| [("x-api-key", k)];
    assert_eq!(
        gw.send("GET", "/anything", &key("a"), b"").await.status,
        200
    );
    assert_eq!(
        gw.send("GET", "/anything", &key("a"), b"").await.status,
        429
    );
    assert_eq!(
        gw.send("GET", "/anything", &key("b"), b"").await.status,
        200
    );
    // No header: counted under the client's IP, a bucket of its own.
    assert_eq!(gw.get("/anything").await.status, 200);
    assert_eq!(gw.get("/anything").await.status, 429);
    // A header value that looks like that IP is still a header value.
    assert_eq!(
        gw.send("GET", "/anything", &key("127.0.0.1"), b"")
            .await
            .status,
        200
    );

    let gw = gateway(json!({
        "limit": 1, "limit_by": "header", "header_name": "x-api-key", "fallback": "refuse",
        "policy_name": "keys-refused"
    }))
    .await;
    let response = gw.get("/anything").await;
    let doc = response.assert_problem(400, "rate-limit-key-missing");
    assert!(doc["detail"].as_str().unwrap().contains("x-api-key"));
    assert!(gw.upstream("echo").requests().is_empty());
}

#[tokio::test]
async fn the_bucket_refills_as_time_passes() {
    // 2 per second: a token every half second.
    let gw = gateway(json!({"limit": 2, "window": 1, "policy_name": "refill"})).await;
    assert_eq!(gw.get("/anything").await.status, 200);
    assert_eq!(gw.get("/anything").await.status, 200);
    let refused = gw.get("/anything").await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Generously past a full refill (1 s), so a slow machine does not make this flaky.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(gw.get("/anything").await.status, 200);
    assert_eq!(gw.get("/anything").await.status, 200);
    assert_eq!(gw.get("/anything").await.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_on_every_worker_share_one_bucket() {
    const LIMIT: usize = 50;
    const REQUESTS: usize = 400;
    // Four worker threads, each with its own VM replica: the limit holds only if they update
    // the shared bucket atomically (CAS). A long window: no token comes back during the test.
    let gw = TestGateway::builder()
        .plugin(
            "rate-limit",
            &build_plugin(crate_dir()),
            json!({"limit": LIMIT, "window": 3600, "policy_name": "concurrent"}),
        )
        .workers(4)
        .start()
        .await;
    let gw = Arc::new(gw);
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { gw.get("/anything").await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (LIMIT, REQUESTS - LIMIT), "{statuses:?}");
    assert_eq!(gw.upstream("echo").requests().len(), LIMIT);
}

#[tokio::test]
async fn headers_can_be_turned_off_but_retry_after_stays() {
    let gw =
        gateway(json!({"limit": 1, "rate_limit_headers": false, "policy_name": "quiet"})).await;
    let ok = gw.get("/anything").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("ratelimit"), None);
    assert_eq!(ok.header("ratelimit-policy"), None);
    let refused = gw.get("/anything").await;
    refused.assert_problem(429, "rate-limited");
    assert!(refused.header("retry-after").is_some());
    assert_eq!(refused.header("ratelimit"), None);
}

fn introspection_dir() -> PathBuf {
    crate_dir().join("../oauth2-introspection")
}

/// An introspection server that knows two tokens, of two consumers of the same organisation.
fn introspect(request: barbacane_sdk::testing::TestRequest) -> TestResponse {
    let body = String::from_utf8_lossy(&request.body).into_owned();
    let answer = if body.contains("token=alice-token") {
        json!({"active": true, "sub": "alice", "org": "acme"})
    } else if body.contains("token=bob-token") {
        json!({"active": true, "sub": "bob", "org": "acme"})
    } else if body.contains("token=carol-token") {
        json!({"active": true, "sub": "carol", "org": "globex"})
    } else {
        json!({"active": false})
    };
    TestResponse::new(200)
        .with_header("content-type", "application/json")
        .with_body(answer.to_string())
}

async fn behind_introspection(config: Value) -> TestGateway {
    TestGateway::builder()
        .upstream("idp", introspect)
        .plugin(
            "oauth2-introspection",
            &build_plugin(&introspection_dir()),
            json!({"upstream": "idp", "path": "/introspect", "client_id": "gw", "client_secret": "s"}),
        )
        .plugin("rate-limit", &build_plugin(crate_dir()), config)
        .start()
        .await
}

fn bearer(token: &str) -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {token}"))]
}

async fn status(gw: &TestGateway, token: &str) -> u16 {
    let [(name, value)] = bearer(token);
    gw.send("GET", "/anything", &[(name, value.as_str())], b"")
        .await
        .status
}

#[tokio::test]
async fn consumers_and_claims_set_by_an_auth_plugin_are_partitions() {
    let gw = behind_introspection(
        json!({"limit": 1, "limit_by": "consumer", "policy_name": "consumers"}),
    )
    .await;
    assert_eq!(status(&gw, "alice-token").await, 200);
    assert_eq!(status(&gw, "alice-token").await, 429);
    assert_eq!(status(&gw, "bob-token").await, 200);

    // By organisation: alice and bob share acme's bucket, carol has globex's.
    let gw = behind_introspection(
        json!({"limit": 1, "limit_by": "claim", "claim": "org", "policy_name": "orgs"}),
    )
    .await;
    assert_eq!(status(&gw, "alice-token").await, 200);
    assert_eq!(status(&gw, "bob-token").await, 429);
    assert_eq!(status(&gw, "carol-token").await, 200);
}

#[tokio::test]
async fn without_a_consumer_the_fallback_applies() {
    // rate-limit alone: no auth plugin ran, so there is never a consumer.
    let gw = gateway(json!({"limit": 1, "limit_by": "consumer", "fallback": "refuse", "policy_name": "anon-refused"})).await;
    gw.get("/anything")
        .await
        .assert_problem(403, "rate-limit-key-missing");
    let gw =
        gateway(json!({"limit": 1, "limit_by": "claim", "claim": "org", "policy_name": "anon"}))
            .await;
    assert_eq!(gw.get("/anything").await.status, 200);
    assert_eq!(gw.get("/anything").await.status, 429);
}

/// Printable ASCII (what an HTTP client can send), biased towards the characters that
/// matter to the parsers involved.
fn random_text(rng: &mut Random, max: usize) -> String {
    const SPECIAL: &[u8] = b" ,.:[]%;=\"'\\/-_*0123456789abcdef";
    let len = rng.below(max + 1);
    (0..len)
        .map(|_| {
            if rng.below(2) == 0 {
                SPECIAL[rng.below(SPECIAL.len())] as char
            } else {
                (0x20 + rng.below(0x5f) as u8) as char
            }
        })
        .collect()
}

#[tokio::test]
async fn random_requests_never_make_the_plugin_trap() {
    let wasm = build_plugin(crate_dir());
    let configs = [
        json!({"limit": 5, "limit_by": "header", "header_name": "x-api-key", "trusted_proxies": ["127.0.0.1", "::1"]}),
        json!({"limit": 5, "limit_by": "claim", "claim": "a.b", "fallback": "refuse", "max_partitions": 16}),
        json!({"limit": 1000000000, "window": 1, "burst": 1, "trusted_proxies": ["0.0.0.0/0", "::/0"]}),
    ];
    let mut rng = Random::new(0x5eed_1234_abcd_0001);
    for config in configs {
        let gw = TestGateway::builder()
            .plugin("rate-limit", &wasm, config.clone())
            .start()
            .await;
        for i in 0..120 {
            let xff = match rng.below(4) {
                0 => random_text(&mut rng, 40),
                1 => format!(
                    "{}.{}.{}.{}",
                    rng.below(300),
                    rng.below(256),
                    rng.below(256),
                    rng.below(256)
                ),
                2 => format!(
                    "[{:x}::{:x}]:{}",
                    rng.next_u64() as u16,
                    rng.next_u64() as u16,
                    rng.below(70000)
                ),
                _ => "1.2.3.4, ".repeat(rng.below(50)),
            };
            let key = if rng.below(5) == 0 {
                "k".repeat(rng.below(20_000))
            } else {
                random_text(&mut rng, 60)
            };
            let consumer = random_text(&mut rng, 30);
            let headers = [
                ("x-forwarded-for", xff.as_str()),
                ("x-api-key", key.as_str()),
                // A client cannot forge the consumer: it is not a header.
                ("x-consumer-id", consumer.as_str()),
            ];
            let chosen = &headers[..rng.below(4)];
            let method = ["GET", "POST"][rng.below(2)];
            let response = gw
                .send(
                    method,
                    "/anything",
                    chosen,
                    random_text(&mut rng, 100).as_bytes(),
                )
                .await;
            assert!(
                matches!(response.status, 200 | 400 | 403 | 429 | 431),
                "{config} request {i} {chosen:?}: {} {}",
                response.status,
                response.text()
            );
        }
    }
}

#[tokio::test]
async fn a_bad_configuration_fails_the_build_with_the_plugins_reason() {
    for (config, expected, schema_catches) in [
        (json!({}), "missing field `limit`", true),
        (json!({"limit": 0}), "at /limit", true),
        (json!({"limit": 10, "window": "1m"}), "at /window", true),
        (
            json!({"limit": 10, "limit_by": "header"}),
            "at /header_name",
            false,
        ),
        (
            json!({"limit": 10, "header_name": "x-key"}),
            "at /header_name",
            false,
        ),
        (
            json!({"limit": 10, "limit_by": "claim"}),
            "at /claim",
            false,
        ),
        (
            json!({"limit": 10, "trusted_proxies": ["10.0.0.0/8", "proxy.local"]}),
            "at /trusted_proxies/1",
            false,
        ),
        (json!({"limit": 10, "burst": 0}), "at /burst", true),
        (
            json!({"limit": 10, "fallback": "allow"}),
            "at /fallback",
            true,
        ),
    ] {
        assert_eq!(
            check_config(crate_dir(), &config).is_err(),
            schema_catches,
            "{config}"
        );
        let error = match TestGateway::builder()
            .plugin("rate-limit", &build_plugin(crate_dir()), config.clone())
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
    assert_eq!(manifest.name, "rate-limit");
    assert_eq!(manifest.kind, "traffic");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    for example in [
        json!({"limit": 100}),
        json!({"limit": 100, "window": 60, "burst": 20, "trusted_proxies": ["10.0.0.0/8"]}),
        json!({"limit": 1000, "window": 3600, "limit_by": "header", "header_name": "x-api-key", "fallback": "refuse"}),
        json!({"limit": 50, "window": 1, "limit_by": "claim", "claim": "org.id", "policy_name": "per-org"}),
        json!({"limit": 10, "limit_by": "consumer", "rate_limit_headers": false, "max_partitions": 50000}),
    ] {
        assert_eq!(check_config(crate_dir(), &example), Ok(()), "{example}");
    }
}

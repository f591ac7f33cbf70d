//! End-to-end: the plugin's `.wasm`, built from this crate, served by the real gateway behind the
//! authentication plugins it is meant to follow (`apikey-auth`, `basic-auth`, and the
//! `fixtures/set-consumer` stand-in for token plugins), in one middleware chain: what `acl` reads
//! is what they stored in the request's filter state.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane_sdk::testing::{Random, TestGateway, build_plugin, check_config, plugin_manifest};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sibling(name: &str) -> PathBuf {
    crate_dir().join("..").join(name)
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

/// apikey-auth (alice: admins; bob: no groups; carol: admins and banned), then acl.
async fn apikey_then_acl(acl: Value) -> TestGateway {
    let keys = json!({"consumers": [
        {"id": "alice", "key_sha256": sha256sum("alice-key"), "groups": ["admins"]},
        {"id": "bob", "key_sha256": sha256sum("bob-key")},
        {"id": "carol", "key_sha256": sha256sum("carol-key"), "groups": ["admins", "banned"]}
    ]});
    TestGateway::builder()
        .plugin("apikey-auth", &build_plugin(&sibling("apikey-auth")), keys)
        .plugin("acl", &build_plugin(crate_dir()), acl)
        .start()
        .await
}

/// The stand-in for a token plugin (consumer and claims from test headers), then acl.
async fn claims_then_acl(acl: Value) -> TestGateway {
    TestGateway::builder()
        .plugin(
            "set-consumer",
            &build_plugin(&sibling("fixtures/set-consumer")),
            Value::Null,
        )
        .plugin("acl", &build_plugin(crate_dir()), acl)
        .start()
        .await
}

async fn get_with(
    gw: &TestGateway,
    headers: &[(&str, &str)],
) -> barbacane_sdk::testing::TestResponse {
    gw.send("GET", "/anything", headers, b"").await
}

#[tokio::test]
async fn groups_from_apikey_auth_decide_and_deny_wins() {
    let gw = apikey_then_acl(json!({"allow": ["admins"], "deny": ["banned"]})).await;

    let response = get_with(&gw, &[("x-api-key", "alice-key")]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let upstream = response.json();
    assert_eq!(upstream["headers"]["x-consumer-id"], "alice");
    assert_eq!(upstream["headers"]["x-consumer-groups"], "admins");

    let response = get_with(&gw, &[("x-api-key", "bob-key")]).await;
    let doc = response.assert_problem(403, "forbidden");
    assert_eq!(doc["detail"], "consumer 'bob' is not allowed here");
    assert_eq!(response.header("www-authenticate"), None);

    // In an allowed group and a denied one: denied.
    let response = get_with(&gw, &[("x-api-key", "carol-key")]).await;
    response.assert_problem(403, "forbidden");

    // Unauthenticated: apikey-auth answers before acl runs.
    let response = get_with(&gw, &[]).await;
    response.assert_problem(401, "unauthorized");
    assert_eq!(
        response.header("www-authenticate"),
        Some("ApiKey realm=\"api\"")
    );

    assert_eq!(
        gw.upstream("echo").requests().len(),
        1,
        "only alice got through"
    );
}

#[tokio::test]
async fn a_client_sent_groups_header_grants_nothing() {
    let gw = apikey_then_acl(json!({"allow": ["admins"]})).await;
    // bob claims to be an admin, in the header the upstream would read.
    let response = get_with(
        &gw,
        &[
            ("x-api-key", "bob-key"),
            ("x-consumer-groups", "admins"),
            ("x-consumer-id", "alice"),
        ],
    )
    .await;
    response.assert_problem(403, "forbidden");

    // Without any auth plugin, acl alone: the forged headers are not a consumer.
    let gw = TestGateway::builder()
        .plugin(
            "acl",
            &build_plugin(crate_dir()),
            json!({"allow": ["admins"]}),
        )
        .start()
        .await;
    let response = get_with(
        &gw,
        &[("x-consumer-id", "alice"), ("x-consumer-groups", "admins")],
    )
    .await;
    let doc = response.assert_problem(401, "unauthorized");
    assert_eq!(doc["detail"], acl_detail_no_consumer());
    assert!(gw.upstream("echo").requests().is_empty());
}

fn acl_detail_no_consumer() -> &'static str {
    "no authenticated consumer: acl needs an authentication plugin (apikey-auth, basic-auth, \
     jwt-auth, oauth2-introspection) before it in the middleware chain"
}

#[tokio::test]
async fn deny_lists_alone_let_everyone_else_in_and_groups_can_be_hidden() {
    let gw = apikey_then_acl(json!({"deny": ["banned"], "hide_groups_header": true})).await;
    let response = get_with(&gw, &[("x-api-key", "bob-key")]).await;
    assert_eq!(response.status, 200);
    let response = get_with(&gw, &[("x-api-key", "alice-key")]).await;
    assert_eq!(response.status, 200);
    let upstream = response.json();
    assert_eq!(upstream["headers"]["x-consumer-id"], "alice");
    assert_eq!(upstream["headers"].get("x-consumer-groups"), None);
    get_with(&gw, &[("x-api-key", "carol-key")])
        .await
        .assert_problem(403, "forbidden");
}

#[tokio::test]
async fn basic_auth_users_are_seen_too() {
    let output = Command::new("htpasswd")
        .args(["-nbB", "-C", "4", "dave", "pw"])
        .output()
        .expect("htpasswd is needed by these tests: apt-get install -y apache2-utils");
    let line = String::from_utf8(output.stdout).unwrap();
    let hash = line.trim().split_once(':').unwrap().1.to_string();
    let users = json!({"users": [
        {"username": "dave", "password_hash": hash, "groups": ["ops"]},
        {"username": "erin", "password_hash": hash}
    ]});
    let gw = TestGateway::builder()
        .plugin("basic-auth", &build_plugin(&sibling("basic-auth")), users)
        .plugin("acl", &build_plugin(crate_dir()), json!({"allow": ["ops"]}))
        .start()
        .await;
    // "dave:pw" and "erin:pw".
    let response = get_with(&gw, &[("authorization", "Basic ZGF2ZTpwdw==")]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["headers"]["x-consumer-id"], "dave");
    let response = get_with(&gw, &[("authorization", "Basic ZXJpbjpwdw==")]).await;
    response.assert_problem(403, "forbidden");
}

#[tokio::test]
async fn claim_rules_read_the_consumers_claims() {
    let gw = claims_then_acl(json!({
        "deny": ["suspended"],
        "claims": [
            {"claim": "scope", "any_of": ["orders:read", "orders:admin"]},
            {"claim": "realm_access.roles", "all_of": ["user", "verified"]},
            {"claim": "status", "none_of": ["locked"]}
        ]
    }))
    .await;
    let good = json!({
        "scope": "profile orders:read",
        "realm_access": {"roles": ["user", "verified"]},
        "status": "active"
    });
    let send = |claims: Value, groups: &'static str| {
        let claims = claims.to_string();
        let gw = &gw;
        async move {
            get_with(
                gw,
                &[
                    ("x-test-consumer", "alice"),
                    ("x-test-claims", &claims),
                    ("x-test-groups", groups),
                ],
            )
            .await
        }
    };
    assert_eq!(send(good.clone(), "").await.status, 200);

    let mut other_scope = good.clone();
    other_scope["scope"] = json!("profile");
    send(other_scope, "").await.assert_problem(403, "forbidden");

    let mut one_role = good.clone();
    one_role["realm_access"]["roles"] = json!(["user"]);
    send(one_role, "").await.assert_problem(403, "forbidden");

    let mut locked = good.clone();
    locked["status"] = json!("locked");
    send(locked, "").await.assert_problem(403, "forbidden");

    send(good.clone(), "suspended")
        .await
        .assert_problem(403, "forbidden");

    // No consumer at all (the fixture stores none without x-test-consumer).
    let response = get_with(&gw, &[("x-test-claims", &good.to_string())]).await;
    response.assert_problem(401, "unauthorized");
}

/// A random JSON value, sometimes deep, biased towards the names the rules use.
fn random_claim_value(rng: &mut Random, depth: usize) -> Value {
    match rng.below(if depth > 6 { 4 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.below(3) == 0),
        2 => json!(rng.next_u64() as i64),
        3 => json!(rng.pick(&["read", "write admin", "", "user verified", "x y z"])),
        4 | 5 => Value::Array(
            (0..rng.below(5))
                .map(|_| random_claim_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut object = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                let key = *rng.pick(&["scope", "roles", "realm_access", "status", "a.b", ""]);
                object.insert(key.to_string(), random_claim_value(rng, depth + 1));
            }
            Value::Object(object)
        }
    }
}

#[tokio::test]
async fn random_consumers_never_make_it_trap() {
    let gw = claims_then_acl(json!({
        "allow": ["admins", "ops"],
        "deny": ["banned"],
        "claims": [
            {"claim": "scope", "any_of": ["read"]},
            {"claim": "realm_access.roles", "none_of": ["locked"]}
        ]
    }))
    .await;
    let mut rng = Random::new(0xac10_5eed_0000_0001);
    for i in 0..300 {
        let mut headers: Vec<(&str, String)> = Vec::new();
        if rng.below(5) != 0 {
            headers.push((
                "x-test-consumer",
                rng.pick(&["alice", "", "bob", "a b"]).to_string(),
            ));
        }
        if rng.below(3) != 0 {
            let claims = match rng.below(4) {
                0 => rng.pick(&["not json", "[1,2]", "{", "null"]).to_string(),
                _ => random_claim_value(&mut rng, 0).to_string(),
            };
            headers.push(("x-test-claims", claims));
        }
        if rng.below(2) == 0 {
            let groups: Vec<&str> = (0..rng.below(4))
                .map(|_| *rng.pick(&["admins", "ops", "banned", "Admins", ""]))
                .collect();
            headers.push(("x-test-groups", groups.join(",")));
        }
        if rng.below(3) == 0 {
            headers.push(("x-consumer-groups", "admins".into()));
        }
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = get_with(&gw, &refs).await;
        match response.status {
            200 => {}
            401 => {
                response.assert_problem(401, "unauthorized");
                assert!(
                    !headers.iter().any(|(n, _)| *n == "x-test-consumer"),
                    "#{i} {headers:?}"
                );
            }
            403 => {
                response.assert_problem(403, "forbidden");
            }
            status => panic!("#{i} {headers:?}: {status} {}", response.text()),
        }
    }
}

#[tokio::test]
async fn a_bad_configuration_fails_the_build_with_the_plugins_reason() {
    for (config, expected) in [
        (
            json!({}),
            "invalid configuration: give at least one of allow, deny and claims",
        ),
        (
            json!({"allow": []}),
            "give at least one of allow, deny and claims",
        ),
        (json!({"allow": "admins"}), "at /allow:"),
        (
            json!({"deny": [""]}),
            "at /deny/0: a group name cannot be empty",
        ),
        (
            json!({"claims": [{"claim": "scope"}]}),
            "at /claims/0: give exactly one of",
        ),
        (
            json!({"claims": [{"claim": "scope", "any_of": ["a"], "all_of": ["b"]}]}),
            "at /claims/0: give exactly one of",
        ),
        (
            json!({"claims": [{"claim": "scope", "any_of": []}]}),
            "at /claims/0/any_of",
        ),
        (
            json!({"claims": [{"claim": "", "any_of": ["a"]}]}),
            "at /claims/0/claim",
        ),
        (
            json!({"allow": ["a"], "groups": ["b"]}),
            "unknown field `groups`",
        ),
    ] {
        assert!(check_config(crate_dir(), &config).is_err(), "{config}");
        let error = match TestGateway::builder()
            .plugin("acl", &build_plugin(crate_dir()), config.clone())
            .try_start()
            .await
        {
            Ok(_) => panic!("{config} was accepted"),
            Err(e) => e,
        };
        assert!(error.contains("E1061"), "{error}");
        assert!(error.contains(expected), "{config}: {error}");
    }
    // Only the plugin sees an empty segment in a dotted path.
    let config = json!({"claims": [{"claim": "a..b", "any_of": ["x"]}]});
    assert_eq!(check_config(crate_dir(), &config), Ok(()));
    let error = TestGateway::builder()
        .plugin("acl", &build_plugin(crate_dir()), config)
        .try_start()
        .await
        .err()
        .unwrap();
    assert!(error.contains("at /claims/0/claim"), "{error}");
}

#[test]
fn manifest_and_documented_examples() {
    let manifest = plugin_manifest(crate_dir());
    assert_eq!(manifest.name, "acl");
    assert_eq!(manifest.kind, "auth");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    for example in [
        json!({"allow": ["admins"]}),
        json!({"deny": ["banned"]}),
        json!({
            "allow": ["admins", "ops"],
            "deny": ["suspended"],
            "claims": [
                {"claim": "scope", "any_of": ["orders:read", "orders:write"]},
                {"claim": "realm_access.roles", "all_of": ["user"]},
                {"claim": "account_status", "none_of": ["locked"]}
            ],
            "hide_groups_header": true
        }),
    ] {
        assert_eq!(check_config(crate_dir(), &example), Ok(()), "{example}");
    }
}

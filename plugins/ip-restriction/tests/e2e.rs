//! End-to-end: the plugin's `.wasm`, built from this crate, served by the real gateway in front
//! of an echo upstream (`barbacane_sdk::testing`). The test client connects from 127.0.0.1, so
//! other client addresses arrive in `x-forwarded-for` through 127.0.0.1 as a trusted proxy.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane_plugin_ip_restriction::Config;
use barbacane_sdk::testing::{Random, TestGateway, build_plugin, check_config, plugin_manifest};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::path::Path;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn gateway(config: Value) -> TestGateway {
    TestGateway::builder()
        .plugin("ip-restriction", &build_plugin(crate_dir()), config)
        .start()
        .await
}

/// The status of `GET /anything` with these `x-forwarded-for` values (one header each).
async fn status_from(gw: &TestGateway, forwarded_for: &[&str]) -> u16 {
    let headers: Vec<(&str, &str)> = forwarded_for
        .iter()
        .map(|v| ("x-forwarded-for", *v))
        .collect();
    let response = gw.send("GET", "/anything", &headers, b"").await;
    match response.status {
        200 => {}
        403 => {
            response.assert_problem(403, "forbidden");
        }
        other => panic!("{forwarded_for:?}: {other} {}", response.text()),
    }
    response.status
}

#[tokio::test]
async fn the_peer_is_the_client_without_trusted_proxies() {
    let gw = gateway(json!({"allow": ["127.0.0.1"]})).await;
    let response = gw.get("/anything").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-upstream"), Some("echo"));

    let gw = gateway(json!({"deny": ["127.0.0.0/8"]})).await;
    let response = gw.get("/anything").await;
    let doc = response.assert_problem(403, "forbidden");
    assert_eq!(doc["detail"], "client address 127.0.0.1 is not allowed");
    assert!(gw.upstream("echo").requests().is_empty());

    // Deny wins over allow.
    let gw = gateway(json!({"allow": ["127.0.0.0/8"], "deny": ["127.0.0.1/32"]})).await;
    assert_eq!(status_from(&gw, &[]).await, 403);

    // An allow list without the peer.
    let gw = gateway(json!({"allow": ["10.0.0.0/8", "::1"]})).await;
    assert_eq!(status_from(&gw, &[]).await, 403);

    // Without trusted proxies, x-forwarded-for is the client's word: ignored.
    let gw = gateway(json!({"allow": ["203.0.113.0/24"]})).await;
    assert_eq!(status_from(&gw, &["203.0.113.5"]).await, 403);
    let gw = gateway(json!({"deny": ["203.0.113.0/24"]})).await;
    assert_eq!(status_from(&gw, &["127.0.0.1"]).await, 200);
    assert_eq!(status_from(&gw, &["203.0.113.5"]).await, 200);
}

#[tokio::test]
async fn behind_trusted_proxies_the_forwarded_client_decides() {
    let gw = gateway(json!({
        "allow": ["203.0.113.0/24", "2001:db8::/32"],
        "deny": ["203.0.113.66", "2001:db8:bad::/48"],
        "trusted_proxies": ["127.0.0.1/32", "10.0.0.0/8"]
    }))
    .await;
    for (forwarded_for, expected) in [
        // IPv4 and IPv6 clients, with or without ports and brackets.
        (&["203.0.113.5"][..], 200),
        (&["203.0.113.5:51000"], 200),
        (&["2001:db8::7"], 200),
        (&["[2001:db8::7]:443"], 200),
        (&["::ffff:203.0.113.5"], 200),
        (&["198.51.100.1"], 403),
        (&["2001:db9::1"], 403),
        // Deny wins.
        (&["203.0.113.66"], 403),
        (&["2001:db8:bad::1"], 403),
        // Through more trusted proxies: their own entries are skipped.
        (&["203.0.113.5, 10.1.2.3, 10.9.9.9"], 200),
        (&["198.51.100.1, 10.1.2.3"], 403),
        // Spoofing: the client wrote an allowed address, and the first untrusted hop appended
        // the real one, which is what counts.
        (&["203.0.113.5, 198.51.100.1"], 403),
        (&["203.0.113.5, 198.51.100.1, 10.0.0.1"], 403),
        (&["203.0.113.5", "198.51.100.1"], 403),
        // A denied client cannot hide behind an allowed address it writes before its own.
        (&["203.0.113.5, 203.0.113.66"], 403),
        // The entries left of the first untrusted one are never believed, whatever they say.
        (&["198.51.100.1, 203.0.113.5"], 200),
        // Garbage stops the walk at the last good hop, here the peer (not allowed).
        (&["bogus"], 403),
        (&["203.0.113.5, unknown"], 403),
        (&[""], 403),
        // No header: the peer itself.
        (&[], 403),
    ] {
        assert_eq!(
            status_from(&gw, forwarded_for).await,
            expected,
            "{forwarded_for:?}"
        );
    }
}

#[tokio::test]
async fn a_trusted_peer_alone_is_still_the_client() {
    let gw = gateway(json!({"allow": ["127.0.0.1"], "trusted_proxies": ["127.0.0.1"]})).await;
    assert_eq!(status_from(&gw, &[]).await, 200);
    // Every hop trusted: the leftmost is the client.
    assert_eq!(status_from(&gw, &["127.0.0.1"]).await, 200);
    assert_eq!(status_from(&gw, &["203.0.113.5"]).await, 403);
}

#[tokio::test]
async fn non_utf8_forwarded_for_is_refused_not_a_trap() {
    let gw = gateway(json!({"allow": ["203.0.113.0/24"], "trusted_proxies": ["127.0.0.1"]})).await;
    let request = b"GET /anything HTTP/1.1\r\nhost: test\r\nconnection: close\r\nx-forwarded-for: 203.0.113.5, \xff\xfe\r\nx-other: \xc3\x28\r\n\r\n".to_vec();
    let response = gw.raw(&request).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.contains("client address 127.0.0.1 is not allowed"),
        "{response}"
    );
}

/// An `x-forwarded-for` entry: addresses in and out of the configured ranges, IPv4, IPv6,
/// mapped, with ports, and garbage.
fn forwarded_entry(rng: &mut Random) -> String {
    let octet = |r: &mut Random| r.below(256);
    match rng.below(10) {
        0 => format!("203.0.113.{}", octet(rng)),
        1 => format!("10.{}.{}.{}", octet(rng), octet(rng), octet(rng)),
        2 => format!(
            "{}.{}.{}.{}",
            octet(rng),
            octet(rng),
            octet(rng),
            octet(rng)
        ),
        3 => format!("2001:db8:{:x}::{:x}", rng.below(65536), rng.below(65536)),
        4 => format!("[2001:db8::{:x}]:{}", rng.below(65536), rng.below(65536)),
        5 => format!("::ffff:203.0.113.{}", octet(rng)),
        6 => String::from("127.0.0.1"),
        7 => format!("{:x}::{:x}", rng.below(65536), rng.below(65536)),
        8 => String::from(["unknown", "", " ", "1.2.3", "::g", "[::1", "1.2.3.4:x"][rng.below(7)]),
        _ => (0..rng.below(20))
            .map(|_| char::from(0x21 + rng.below(94) as u8))
            .collect(),
    }
}

#[tokio::test]
async fn random_forwarded_for_chains_match_the_model_and_never_trap() {
    let config = json!({
        "allow": ["203.0.113.0/24", "2001:db8::/32", "10.0.0.0/8"],
        "deny": ["203.0.113.128/25", "2001:db8:0:1::/64"],
        "trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]
    });
    // The model: the plugin's own pure functions (unit-tested) over the same inputs. What this
    // adds is the gateway path: headers as the plugin receives them, the peer property, replies.
    let model = Config::from_json(Some(config.to_string().into_bytes())).unwrap();
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let gw = gateway(config).await;
    let mut rng = Random::new(0x1b_5eed_2024_0001);
    let (mut allowed, mut refused) = (0, 0);
    for i in 0..400 {
        let mut values: Vec<String> = Vec::new();
        for _ in 0..rng.below(3) {
            let entries: Vec<String> = (0..1 + rng.below(4))
                .map(|_| forwarded_entry(&mut rng))
                .collect();
            values.push(entries.join(if rng.below(2) == 0 { ", " } else { "," }));
        }
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let raw: Vec<Vec<u8>> = values
            .iter()
            .map(|v| v.trim().as_bytes().to_vec())
            .collect();
        let expected = if model.allows(model.client_ip(peer, &raw)) {
            200
        } else {
            403
        };
        let status = status_from(&gw, &refs).await;
        assert_eq!(status, expected, "#{i} {values:?}");
        if status == 200 {
            allowed += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        allowed > 40 && refused > 40,
        "{allowed} allowed, {refused} refused"
    );
}

#[tokio::test]
async fn a_bad_configuration_fails_the_build_with_the_plugins_reason() {
    // (configuration, the compiler's message, whether the schema refuses it too: `barbacane
    // compile` then reports E1062 first for the built-in plugin).
    for (config, expected, schema_refuses) in [
        (
            json!({}),
            "invalid configuration: give at least one of allow and deny",
            true,
        ),
        (
            json!({"allow": []}),
            "give at least one of allow and deny",
            true,
        ),
        (json!({"deny": ["1.2.3.4/"]}), "at /deny/0", true),
        (
            json!({"deny": ["::1"], "trusted_proxies": ["lb.internal"]}),
            "at /trusted_proxies/0",
            true,
        ),
        (json!({"deny": "10.0.0.0/8"}), "at /deny:", true),
        (
            json!({"deny": ["::1"], "status": 404}),
            "unknown field `status`",
            true,
        ),
        // The schema's pattern lets these through; the plugin parses them.
        (
            json!({"allow": ["10.0.0.0/8", "10.0.0.0/33"]}),
            "at /allow/1: '10.0.0.0/33' is not",
            false,
        ),
        (json!({"allow": ["1.2.3.4.5"]}), "at /allow/0", false),
        (json!({"allow": ["::/129"]}), "at /allow/0", false),
    ] {
        assert_eq!(
            check_config(crate_dir(), &config).is_err(),
            schema_refuses,
            "{config}"
        );
        let error = match TestGateway::builder()
            .plugin("ip-restriction", &build_plugin(crate_dir()), config.clone())
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

/// The configuration of `docs/plugins/ip-restriction.md` and its `spec-examples` project.
fn documented() -> Value {
    json!({
        "allow": ["127.0.0.1", "::1", "203.0.113.0/24", "2001:db8::/32"],
        "deny": ["203.0.113.66"],
        "trusted_proxies": ["127.0.0.1", "::1"]
    })
}

#[tokio::test]
async fn the_documented_example_answers_as_documented() {
    let gw = gateway(documented()).await;
    for (forwarded_for, expected) in [
        (&[][..], 200),
        (&["203.0.113.7"], 200),
        (&["2001:db8::42"], 200),
        (&["203.0.113.66"], 403),
        (&["198.51.100.9"], 403),
        (&["203.0.113.7, 198.51.100.9"], 403),
    ] {
        assert_eq!(
            status_from(&gw, forwarded_for).await,
            expected,
            "{forwarded_for:?}"
        );
    }
}

#[test]
fn manifest_and_documented_examples() {
    let manifest = plugin_manifest(crate_dir());
    assert_eq!(manifest.name, "ip-restriction");
    assert_eq!(manifest.kind, "auth");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    for example in [
        documented(),
        json!({"allow": ["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"]}),
        json!({"deny": ["198.51.100.0/24", "2001:db8:bad::/48"]}),
        json!({
            "allow": ["203.0.113.0/24"],
            "deny": ["203.0.113.66"],
            "trusted_proxies": ["10.0.0.0/8", "::1"]
        }),
    ] {
        assert_eq!(check_config(crate_dir(), &example), Ok(()), "{example}");
    }
}

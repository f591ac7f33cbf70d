//! End-to-end: the plugin's `.wasm`, built from this crate, served by the real gateway in front
//! of an echo upstream (`barbacane_sdk::testing`). Password hashes are made by tools outside
//! this repository: `htpasswd` (Debian `apache2-utils`) for bcrypt and the `argon2` CLI (Debian
//! `argon2`) for argon2, with low costs because every request pays one verification.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane_sdk::testing::{Random, TestGateway, build_plugin, check_config, plugin_manifest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const CHALLENGE: &str = "Basic realm=\"api\", charset=\"UTF-8\"";

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `htpasswd -nbB -C cost user password`'s hash.
fn htpasswd(user: &str, password: &str, cost: u32) -> String {
    let output = Command::new("htpasswd")
        .args(["-nbB", "-C", &cost.to_string(), user, password])
        .output()
        .expect("htpasswd is needed by these tests: apt-get install -y apache2-utils");
    assert!(output.status.success(), "{output:?}");
    let line = String::from_utf8(output.stdout).unwrap();
    let (_, hash) = line.trim().split_once(':').unwrap();
    hash.to_string()
}

/// The `argon2` CLI's encoded hash of `password` (`variant` is `-id` or `-i`).
fn argon2_cli(password: &str, variant: &str, time: u32, kib: u32, lanes: u32) -> String {
    let mut child = Command::new("argon2")
        .args(["saltsaltsalt", variant, "-e"])
        .args(["-t", &time.to_string(), "-k", &kib.to_string()])
        .args(["-p", &lanes.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the argon2 CLI is needed by these tests: apt-get install -y argon2");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// alice (bcrypt, admins), bob (argon2id), carol (argon2i, UTF-8 password), made once.
fn users() -> Value {
    static USERS: OnceLock<Value> = OnceLock::new();
    USERS
        .get_or_init(|| {
            json!([
                {"username": "alice", "password_hash": htpasswd("alice", "alice:pw", 4), "groups": ["admins", "ops"]},
                {"username": "bob", "password_hash": argon2_cli("bob-pw", "-id", 1, 1024, 1)},
                {"username": "carol", "password_hash": argon2_cli("crème brûlée", "-i", 2, 256, 2)}
            ])
        })
        .clone()
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

async fn gateway(config: Value) -> TestGateway {
    TestGateway::builder()
        .plugin("basic-auth", &build_plugin(crate_dir()), config)
        .start()
        .await
}

#[tokio::test]
async fn valid_credentials_name_the_consumer_upstream() {
    let gw = gateway(json!({"users": users()})).await;
    for (user, password, groups) in [
        ("alice", "alice:pw", Some("admins, ops")),
        ("bob", "bob-pw", None),
        ("carol", "crème brûlée", None),
    ] {
        let authorization = basic(user, password);
        let response = gw
            .send(
                "GET",
                "/anything",
                &[
                    ("authorization", &authorization),
                    ("x-consumer-id", "root"),
                    ("x-consumer-groups", "superusers"),
                ],
                b"",
            )
            .await;
        assert_eq!(response.status, 200, "{user}: {}", response.text());
        let upstream = response.json();
        assert_eq!(upstream["headers"]["x-consumer-id"], user);
        assert_eq!(
            upstream["headers"]
                .get("x-consumer-groups")
                .and_then(Value::as_str),
            groups
        );
        assert_eq!(
            upstream["headers"].get("authorization"),
            None,
            "hidden by default"
        );
    }
    // The scheme is case-insensitive, and padding optional.
    let unpadded = format!(
        "basic {}",
        STANDARD.encode("bob:bob-pw").trim_end_matches('=')
    );
    let response = gw
        .send("GET", "/anything", &[("authorization", &unpadded)], b"")
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn credentials_can_be_kept_for_the_upstream() {
    let gw = gateway(json!({"users": users(), "hide_credentials": false})).await;
    let authorization = basic("bob", "bob-pw");
    let response = gw
        .send(
            "GET",
            "/anything",
            &[("authorization", &authorization)],
            b"",
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["headers"]["authorization"], authorization);
}

#[tokio::test]
async fn refusals_are_401_problems_with_a_basic_challenge() {
    let gw = gateway(json!({"users": users(), "realm": "orders"})).await;
    let challenge = "Basic realm=\"orders\", charset=\"UTF-8\"";
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![], "no Basic credentials in the Authorization header"),
        (
            vec![("authorization", "Bearer abc.def.ghi".into())],
            "no Basic credentials in the Authorization header",
        ),
        (
            vec![("authorization", "Basic".into())],
            "empty Basic credentials",
        ),
        (
            vec![("authorization", "Basic @@@".into())],
            "Basic credentials are not valid base64",
        ),
        (
            vec![(
                "authorization",
                format!("Basic {}", STANDARD.encode([0xff, b':', 0xfe])),
            )],
            "Basic credentials are not UTF-8",
        ),
        (
            vec![(
                "authorization",
                format!("Basic {}", STANDARD.encode("alice")),
            )],
            "Basic credentials have no ':' between user-id and password",
        ),
        (
            vec![("authorization", basic("alice", "wrong"))],
            "invalid username or password",
        ),
        (
            vec![("authorization", basic("mallory", "alice:pw"))],
            "invalid username or password",
        ),
        (
            vec![("authorization", basic("ALICE", "alice:pw"))],
            "invalid username or password",
        ),
        (
            vec![
                ("authorization", basic("alice", "alice:pw")),
                ("authorization", basic("bob", "bob-pw")),
            ],
            "several different Authorization headers",
        ),
        (
            vec![
                ("x-consumer-id", "alice".into()),
                ("x-consumer-groups", "admins".into()),
            ],
            "no Basic credentials in the Authorization header",
        ),
    ];
    for (headers, detail) in cases {
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = gw.send("GET", "/anything", &refs, b"").await;
        let doc = response.assert_problem(401, "unauthorized");
        assert_eq!(doc["detail"], detail, "{headers:?}");
        assert_eq!(response.header("www-authenticate"), Some(challenge));
    }
    assert!(gw.upstream("echo").requests().is_empty());
}

#[tokio::test]
async fn non_utf8_header_bytes_are_refused_not_a_trap() {
    let gw = gateway(json!({"users": users()})).await;
    let mut request =
        b"GET /anything HTTP/1.1\r\nhost: test\r\nconnection: close\r\nauthorization: Basic \xff\xfe"
            .to_vec();
    request.extend_from_slice(b"\r\nx-other: \xc3\x28\r\n\r\n");
    let response = gw.raw(&request).await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(response.contains("not valid base64"), "{response}");

    let request = format!(
        "GET /anything HTTP/1.1\r\nhost: test\r\nconnection: close\r\nauthorization: {}\r\n",
        basic("bob", "bob-pw")
    );
    let mut request = request.into_bytes();
    request.extend_from_slice(b"x-other: \xff\r\n\r\n");
    let response = gw.raw(&request).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""x-consumer-id":"bob""#), "{response}");
}

/// The time one refused request with `authorization` takes.
async fn refusal_time(gw: &TestGateway, authorization: &str) -> Duration {
    let start = Instant::now();
    let response = gw
        .send("GET", "/anything", &[("authorization", authorization)], b"")
        .await;
    let elapsed = start.elapsed();
    response.assert_problem(401, "unauthorized");
    elapsed
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::test]
async fn unknown_users_cost_a_verification_too() {
    // Cost 10, so that a bcrypt verification (about 0.1 s) dwarfs everything else.
    let gw = gateway(json!({"users": [
        {"username": "alice", "password_hash": htpasswd("alice", "pw", 10)}
    ]}))
    .await;
    // Interleaved, so that load from other tests hits both alike.
    let (mut wrong_password, mut unknown_user, mut malformed) = (vec![], vec![], vec![]);
    for _ in 0..7 {
        wrong_password.push(refusal_time(&gw, &basic("alice", "nope")).await);
        unknown_user.push(refusal_time(&gw, &basic("mallory", "nope")).await);
        malformed.push(refusal_time(&gw, "Basic YWJj").await);
    }
    let (wrong_password, unknown_user, malformed) = (
        median(wrong_password),
        median(unknown_user),
        median(malformed),
    );
    eprintln!(
        "median: wrong password {wrong_password:?}, unknown user {unknown_user:?}, malformed {malformed:?}"
    );
    // Without the dummy verification an unknown user would be answered as fast as malformed
    // credentials, a hundred times faster.
    assert!(
        unknown_user > malformed * 10,
        "{unknown_user:?} vs {malformed:?}"
    );
    assert!(
        unknown_user * 3 > wrong_password && wrong_password * 3 > unknown_user,
        "wrong password {wrong_password:?} vs unknown user {unknown_user:?}"
    );
}

#[tokio::test]
async fn the_most_expensive_accepted_hashes_fit_the_callback_deadline() {
    // The bounds: bcrypt cost 11; argon2 work m×t of 4 × 19 MiB, and memory of 32 MiB (the VM
    // has 64 MiB in all).
    let gw = gateway(json!({"users": [
        {"username": "bcrypt", "password_hash": htpasswd("bcrypt", "pw", 11)},
        {"username": "work", "password_hash": argon2_cli("pw", "-id", 4, 19 * 1024, 1)},
        {"username": "memory", "password_hash": argon2_cli("pw", "-id", 2, 32 * 1024, 4)}
    ]}))
    .await;
    for user in ["bcrypt", "work", "memory", "memory"] {
        let start = Instant::now();
        let response = gw
            .send(
                "GET",
                "/anything",
                &[("authorization", &basic(user, "pw"))],
                b"",
            )
            .await;
        eprintln!("{user}: {:?}", start.elapsed());
        assert_eq!(response.status, 200, "{user}: {}", response.text());
    }
}

fn random_bytes(rng: &mut Random) -> Vec<u8> {
    let len = if rng.below(8) == 0 {
        500 + rng.below(3000)
    } else {
        rng.below(40)
    };
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Printable ASCII (what the HTTP client lets through).
fn random_text(rng: &mut Random) -> String {
    let len = rng.below(60);
    (0..len)
        .map(|_| char::from(0x20 + rng.below(95) as u8))
        .collect::<String>()
        .trim()
        .to_string()
}

fn random_authorization(rng: &mut Random) -> String {
    match rng.below(6) {
        0 => {
            let user = *rng.pick(&["alice", "bob", "carol", "mallory", "", "alice:x"]);
            let password = match rng.below(3) {
                0 => rng
                    .pick(&["alice:pw", "bob-pw", "crème brûlée", ""])
                    .to_string(),
                _ => random_text(rng),
            };
            basic(user, &password)
        }
        1 => {
            let mut bytes = random_bytes(rng);
            if rng.below(2) == 0 && !bytes.is_empty() {
                let at = rng.below(bytes.len());
                bytes[at] = b':';
            }
            format!(
                "{} {}",
                rng.pick(&["Basic", "basic", "BASIC"]),
                STANDARD.encode(bytes)
            )
        }
        2 => format!("Basic {}", random_text(rng)),
        3 => format!(
            "{} {}",
            rng.pick(&["Bearer", "Digest", "Basic", ""]),
            random_text(rng)
        ),
        4 => random_text(rng),
        _ => {
            let encoded = STANDARD.encode(random_bytes(rng));
            let cut = rng.below(encoded.len() + 1);
            format!("Basic {}", &encoded[..cut])
        }
    }
}

#[tokio::test]
async fn random_requests_never_make_it_trap() {
    let gw = gateway(json!({"users": users()})).await;
    let mut rng = Random::new(0x0bad_cafe_f00d_1234);
    for i in 0..300 {
        let mut headers: Vec<(&str, String)> = Vec::new();
        for _ in 0..rng.below(3) {
            headers.push(("authorization", random_authorization(&mut rng)));
        }
        if rng.below(4) == 0 {
            headers.push((
                *rng.pick(&["x-consumer-id", "x-consumer-groups"]),
                random_text(&mut rng),
            ));
        }
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = gw.send("GET", "/anything", &refs, b"").await;
        match response.status {
            200 => {
                let id = response.json()["headers"]["x-consumer-id"].clone();
                assert!(
                    ["alice", "bob", "carol"].iter().any(|u| id == *u),
                    "#{i} {headers:?}: {id}"
                );
            }
            401 => {
                response.assert_problem(401, "unauthorized");
                assert_eq!(response.header("www-authenticate"), Some(CHALLENGE));
            }
            status => panic!("#{i} {headers:?}: {status} {}", response.text()),
        }
    }
}

#[tokio::test]
async fn a_bad_configuration_fails_the_build_with_the_plugins_reason() {
    let good = htpasswd("a", "pw", 4);
    // The schema catches these too (`barbacane compile` reports E1062 for a built-in plugin).
    let schema_errors = [
        (json!({}), "missing field `users`".to_string()),
        (json!({"users": []}), "at /users:".into()),
        (
            json!({"users": [{"username": "a:b", "password_hash": good}]}),
            "at /users/0/username".into(),
        ),
        (
            json!({"users": [{"username": "a", "password_hash": "pw"}]}),
            "at /users/0/password_hash: not a supported hash".into(),
        ),
        (
            json!({"users": [{"username": "a", "password_hash": good, "groups": ["x,y"]}]}),
            "at /users/0/groups/0".into(),
        ),
        (
            json!({"users": [{"username": "a", "password_hash": good}], "realm": "say \"hi\""}),
            "at /realm".into(),
        ),
        (
            json!({"users": [{"username": "a", "password": "pw"}]}),
            "unknown field `password`".into(),
        ),
        (
            json!({"users": [{"username": "a", "password_hash": argon2_cli("pw", "-d", 1, 1024, 1)}]}),
            "at /users/0/password_hash: not a supported hash".into(),
        ),
    ];
    // Only the plugin knows these.
    let plugin_errors = [
        (
            json!({"users": [{"username": "a", "password_hash": good}, {"username": "a", "password_hash": good}]}),
            "at /users/1/username: user 'a' is configured twice".to_string(),
        ),
        (
            json!({"users": [{"username": "a", "password_hash": htpasswd("a", "pw", 12)}]}),
            "at /users/0/password_hash: bcrypt cost 12 is outside 4..=11".into(),
        ),
        (
            json!({"users": [{"username": "a", "password_hash": argon2_cli("pw", "-id", 1, 65536, 4)}]}),
            "at /users/0/password_hash: argon2 memory m=65536 KiB is over 32768 KiB".into(),
        ),
        (
            json!({"users": [{"username": "a", "password_hash": argon2_cli("pw", "-id", 10, 19456, 1)}]}),
            "at /users/0/password_hash: argon2 work".into(),
        ),
        (
            json!({"users": [{"username": "a", "password_hash": format!("{}!", &good[..59])}]}),
            "at /users/0/password_hash: not a valid bcrypt hash".into(),
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
            .plugin("basic-auth", &build_plugin(crate_dir()), config.clone())
            .try_start()
            .await
        {
            Ok(_) => panic!("{config} was accepted"),
            Err(e) => e,
        };
        assert!(error.contains("E1061"), "{error}");
        assert!(error.contains(&expected), "{config}: {error}");
    }
}

/// The configuration of `docs/plugins/basic-auth.md` and `spec-examples/plugins/basic-auth`.
fn documented() -> Value {
    json!({
        "users": [
            {"username": "alice", "password_hash": "$2y$10$yjrorGRck8M5.eaqkT1HbuR5.6I854HAdc/OPNQQWm1pZumSf5lu.", "groups": ["admins"]},
            {"username": "bob", "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$ZDJyZG9ER3BXNDI2TmRKbg$1Q8Jok8qQmuFloZ5RwHa2LOaYGNFNOqFL7E6WBFroIY"}
        ],
        "realm": "reports",
        "hide_credentials": true
    })
}

#[tokio::test]
async fn the_documented_users_log_in_with_the_documented_passwords() {
    let gw = gateway(documented()).await;
    for (user, password) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        let response = gw
            .send(
                "GET",
                "/anything",
                &[("authorization", &basic(user, password))],
                b"",
            )
            .await;
        assert_eq!(response.status, 200, "{user}: {}", response.text());
    }
    let response = gw.get("/anything").await;
    response.assert_problem(401, "unauthorized");
    assert_eq!(
        response.header("www-authenticate"),
        Some("Basic realm=\"reports\", charset=\"UTF-8\"")
    );
}

#[test]
fn manifest_and_documented_examples() {
    let manifest = plugin_manifest(crate_dir());
    assert_eq!(manifest.name, "basic-auth");
    assert_eq!(manifest.kind, "auth");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    for example in [json!({"users": users()}), documented()] {
        assert_eq!(check_config(crate_dir(), &example), Ok(()), "{example}");
    }
}

//! End-to-end: the plugin's `.wasm`, built from this crate, served by the real gateway in front
//! of an echo upstream (`barbacane_sdk::testing`), with a JWKS upstream answered by a closure.
//!
//! Every key and every signature is made outside this repository by the `openssl` command line:
//! the tests generate RSA, EC and Ed25519 keys, sign tokens with `openssl dgst` / `openssl
//! pkeyutl`, and build JWKS documents from what `openssl` prints about the public keys.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane_sdk::testing::{
    Random, TestGateway, TestResponse, build_plugin, check_config, plugin_manifest,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn wasm() -> Vec<u8> {
    build_plugin(crate_dir())
}

// ---------------------------------------------------------------------------------------------
// openssl: keys, signatures, JWKs
// ---------------------------------------------------------------------------------------------

/// HMAC secrets (printable, so that `openssl dgst -hmac` takes them as is), one per size.
const HS256_SECRET: &str = "hs256-secret-made-for-the-e2e-tests-0123";
const HS384_SECRET: &str = "hs384-secret-made-for-the-e2e-tests-0123456789abcdef";
const HS512_SECRET: &str = "hs512-secret-made-for-the-e2e-tests-0123456789abcdef0123456789abcdef";

/// Runs `openssl` with `args` in the key directory; panics with its stderr on failure.
fn openssl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A directory of this test binary's keys, under the target directory (`cargo clean` removes it).
fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("jwt-auth-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// The private keys, generated once per test binary: `rsa`, `rsa2`, `ec256`, `ec384`, `ed`.
fn keys() {
    static KEYS: OnceLock<()> = OnceLock::new();
    KEYS.get_or_init(|| {
        for (name, args) in [
            (
                "rsa",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            ),
            (
                "rsa2",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            ),
            (
                "ec256",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
            ),
            (
                "ec384",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
            ),
            ("ed", &["-algorithm", "ED25519"][..]),
        ] {
            let private = format!("{name}.pem");
            let mut all = vec!["genpkey"];
            all.extend_from_slice(args);
            all.extend_from_slice(&["-out", &private]);
            openssl(&all);
            openssl(&[
                "pkey",
                "-in",
                &private,
                "-pubout",
                "-out",
                &format!("{name}.pub.pem"),
            ]);
        }
    });
}

/// The PEM public key of `name`.
fn public_pem(name: &str) -> String {
    keys();
    std::fs::read_to_string(dir().join(format!("{name}.pub.pem"))).unwrap()
}

/// The DER SubjectPublicKeyInfo of `name`.
fn public_der(name: &str) -> Vec<u8> {
    keys();
    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        &format!("{name}.pub.pem"),
        "-outform",
        "DER",
    ])
}

fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The JWK of public key `name` (kid and alg given), from what openssl says about it.
fn jwk(name: &str, kid: &str, alg: Option<&str>) -> Value {
    let mut jwk = if name.starts_with("rsa") {
        keys();
        let pubfile = format!("{name}.pub.pem");
        let modulus = String::from_utf8(openssl(&[
            "rsa", "-pubin", "-in", &pubfile, "-noout", "-modulus",
        ]))
        .unwrap();
        let hex = modulus.trim().strip_prefix("Modulus=").unwrap();
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let text = String::from_utf8(openssl(&[
            "rsa", "-pubin", "-in", &pubfile, "-noout", "-text",
        ]))
        .unwrap();
        let exponent: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Exponent: "))
            .and_then(|e| e.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        let e: Vec<u8> = exponent
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        json!({"kty": "RSA", "n": b64url(n), "e": b64url(e)})
    } else if name.starts_with("ec") {
        // The SPKI ends with the uncompressed point 04 || x || y.
        let der = public_der(name);
        let size = if name == "ec256" { 32 } else { 48 };
        let point = &der[der.len() - (2 * size + 1)..];
        assert_eq!(point[0], 4);
        let crv = if size == 32 { "P-256" } else { "P-384" };
        json!({"kty": "EC", "crv": crv, "x": b64url(&point[1..=size]), "y": b64url(&point[size + 1..])})
    } else {
        // Ed25519: the SPKI ends with the 32-byte key.
        let der = public_der(name);
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(&der[der.len() - 32..])})
    };
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    if let Some(alg) = alg {
        jwk["alg"] = json!(alg);
    }
    jwk
}

/// A DER ECDSA signature (SEQUENCE of INTEGER r, INTEGER s) as JWS's raw `r || s`.
fn der_to_raw(der: &[u8], size: usize) -> Vec<u8> {
    assert_eq!(der[0], 0x30);
    // The sequence length is one byte, or 0x81 and one byte (P-384 signatures can pass 127).
    let mut i = if der[1] == 0x81 { 3 } else { 2 };
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int: Vec<u8> = int.iter().copied().skip_while(|b| *b == 0).collect();
        out.extend(std::iter::repeat_n(0u8, size - int.len()));
        out.extend(int);
        i += 2 + len;
    }
    out
}

/// Signs `input` with `alg` using openssl; `key` names the private key (ignored for HS*).
fn openssl_sign(alg: &str, key: &str, input: &str) -> Vec<u8> {
    keys();
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let file = format!("input-{}", COUNTER.fetch_add(1, Ordering::Relaxed));
    std::fs::write(dir().join(&file), input).unwrap();
    let private = format!("{key}.pem");
    let bits = &alg[2..];
    let digest = format!("-sha{bits}");
    let signature = match &alg[..2] {
        "HS" => {
            let secret = match bits {
                "256" => HS256_SECRET,
                "384" => HS384_SECRET,
                _ => HS512_SECRET,
            };
            openssl(&["dgst", &digest, "-hmac", secret, "-binary", &file])
        }
        "RS" => openssl(&["dgst", &digest, "-sign", &private, "-binary", &file]),
        "PS" => {
            let salt = format!("rsa_pss_saltlen:{}", bits.parse::<usize>().unwrap() / 8);
            openssl(&[
                "dgst",
                &digest,
                "-sign",
                &private,
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                &salt,
                "-binary",
                &file,
            ])
        }
        "ES" => {
            let der = openssl(&["dgst", &digest, "-sign", &private, "-binary", &file]);
            der_to_raw(&der, if bits == "256" { 32 } else { 48 })
        }
        "Ed" => openssl(&[
            "pkeyutl", "-sign", "-inkey", &private, "-rawin", "-in", &file,
        ]),
        other => panic!("no signer for {other}"),
    };
    let _ = std::fs::remove_file(dir().join(&file));
    signature
}

/// The private key that signs `alg` by default.
fn default_key(alg: &str) -> &'static str {
    match alg {
        "ES256" => "ec256",
        "ES384" => "ec384",
        "EdDSA" => "ed",
        _ => "rsa",
    }
}

/// A signed token: `header` (JSON object) and `claims`.
fn sign_with(alg: &str, key: &str, header: Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string()),
        b64url(claims.to_string())
    );
    let signature = openssl_sign(alg, key, &input);
    format!("{input}.{}", b64url(signature))
}

/// A token signed with `alg` by its default key, with `kid` (if any).
fn sign(alg: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": alg, "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    sign_with(alg, default_key(alg), header, claims)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims valid for the next hour.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iat": now(), "exp": now() + 3600})
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

const ALGS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// Inline keys for every algorithm, `kid` = the algorithm's name in lowercase.
fn inline_keys() -> Value {
    let keys: Vec<Value> = ALGS
        .iter()
        .map(|alg| {
            let kid = alg.to_ascii_lowercase();
            match *alg {
                "HS256" => json!({"kid": kid, "alg": alg, "secret": HS256_SECRET}),
                // The same secret, base64: both spellings of a secret work.
                "HS384" => {
                    json!({"kid": kid, "alg": alg, "secret_base64": STANDARD.encode(HS384_SECRET)})
                }
                "HS512" => json!({"kid": kid, "alg": alg, "secret": HS512_SECRET}),
                _ => json!({"kid": kid, "alg": alg, "pem": public_pem(default_key(alg))}),
            }
        })
        .collect();
    Value::Array(keys)
}

/// A JWKS for every asymmetric algorithm (`kid` = `jwks-<alg>`) plus the three HMAC secrets
/// as `oct` keys.
fn full_jwks() -> Value {
    let mut keys: Vec<Value> = ALGS
        .iter()
        .filter(|a| !a.starts_with("HS"))
        .map(|alg| {
            jwk(
                default_key(alg),
                &format!("jwks-{}", alg.to_ascii_lowercase()),
                Some(alg),
            )
        })
        .collect();
    for (alg, secret) in [
        ("HS256", HS256_SECRET),
        ("HS384", HS384_SECRET),
        ("HS512", HS512_SECRET),
    ] {
        keys.push(json!({"kty": "oct", "kid": format!("jwks-{}", alg.to_ascii_lowercase()), "alg": alg, "k": b64url(secret)}));
    }
    json!({ "keys": keys })
}

// ---------------------------------------------------------------------------------------------
// gateways
// ---------------------------------------------------------------------------------------------

async fn gateway(config: Value) -> TestGateway {
    TestGateway::builder()
        .plugin("jwt-auth", &wasm(), config)
        .start()
        .await
}

/// What the upstream of a JWKS test answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
enum Idp {
    /// 200 with the first JWKS.
    First = 0,
    /// 500.
    Down = 1,
    /// 200 with a body that is not a JWKS.
    Garbage = 2,
    /// 200 with the second JWKS (a rotation).
    Second = 3,
}

/// Switches what the JWKS upstream answers.
struct IdpControl {
    mode: AtomicUsize,
}

impl IdpControl {
    fn set(&self, idp: Idp) {
        self.mode.store(idp as usize, Ordering::SeqCst);
    }
}

/// A gateway whose `idp` upstream serves `first`, then what the control says.
async fn jwks_gateway(
    remote: Value,
    extra: Value,
    first: Value,
    second: Value,
    initial: Idp,
    delay: Duration,
) -> (TestGateway, Arc<IdpControl>) {
    let control = Arc::new(IdpControl {
        mode: AtomicUsize::new(initial as usize),
    });
    let handler_control = control.clone();
    let mut config = json!({"jwks_upstream": remote});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let gw = TestGateway::builder()
        .plugin("jwt-auth", &wasm(), config)
        .upstream("idp", move |request| {
            std::thread::sleep(delay);
            let _ = request;
            match handler_control.mode.load(Ordering::SeqCst) {
                0 => TestResponse::new(200)
                    .with_header("content-type", "application/json")
                    .with_body(first.to_string()),
                1 => TestResponse::new(500).with_body("down"),
                2 => TestResponse::new(200).with_body("<html>not a jwks</html>"),
                _ => TestResponse::new(200)
                    .with_header("content-type", "application/json")
                    .with_body(second.to_string()),
            }
        })
        .start()
        .await;
    (gw, control)
}

async fn get_with(gw: &TestGateway, token: &str) -> TestResponse {
    gw.send(
        "GET",
        "/anything",
        &[("authorization", &bearer(token))],
        b"",
    )
    .await
}

/// Polls `condition` every 100 ms for up to `limit`.
async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    condition()
}

/// Asserts a 401 `invalid_token` whose description contains `why`.
fn assert_invalid(response: &TestResponse, why: &str) {
    let doc = response.assert_problem(401, "invalid-token");
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge
            .starts_with("Bearer realm=\"api\", error=\"invalid_token\", error_description=\""),
        "{challenge}"
    );
    assert!(
        doc["detail"].as_str().unwrap().contains(why),
        "expected '{why}' in {doc}"
    );
    assert!(challenge.contains(why), "expected '{why}' in {challenge}");
}

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_algorithm_with_inline_keys() {
    let gw = gateway(json!({"keys": inline_keys()})).await;
    for alg in ALGS {
        let kid = alg.to_ascii_lowercase();
        let token = sign(alg, Some(&kid), &claims(&format!("user-{kid}")));
        let response = get_with(&gw, &token).await;
        assert_eq!(response.status, 200, "{alg}: {}", response.text());
        let echoed = response.json();
        assert_eq!(
            echoed["headers"]["x-consumer-id"],
            format!("user-{kid}"),
            "{alg}"
        );
        // The token is forwarded by default.
        assert_eq!(echoed["headers"]["authorization"], bearer(&token));

        // Any change to what is signed, or to the signature, is refused.
        let (input, signature) = token.rsplit_once('.').unwrap();
        let mut forged = URL_SAFE_NO_PAD.decode(signature).unwrap();
        forged[0] ^= 1;
        let response = get_with(&gw, &format!("{input}.{}", b64url(&forged))).await;
        assert_invalid(&response, "signature is invalid");
        let other_claims = b64url(claims("mallory").to_string());
        let header = input.split('.').next().unwrap();
        let swapped = format!("{header}.{other_claims}.{signature}");
        assert_invalid(&get_with(&gw, &swapped).await, "signature is invalid");
    }
    assert_eq!(gw.upstream("echo").requests().len(), ALGS.len());
}

#[tokio::test]
async fn every_algorithm_with_an_inline_jwks() {
    let gw = gateway(json!({"jwks": full_jwks()})).await;
    for alg in ALGS {
        let kid = format!("jwks-{}", alg.to_ascii_lowercase());
        let response = get_with(&gw, &sign(alg, Some(&kid), &claims("alice"))).await;
        assert_eq!(response.status, 200, "{alg}: {}", response.text());
        // Without a kid, every key of the algorithm is tried.
        let response = get_with(&gw, &sign(alg, None, &claims("alice"))).await;
        assert_eq!(
            response.status,
            200,
            "{alg} without kid: {}",
            response.text()
        );
    }
    // A JWK without alg verifies its whole family: RS* and PS* for an RSA key.
    let gw = gateway(json!({"jwks": {"keys": [jwk("rsa", "r", None)]}})).await;
    for alg in ["RS256", "RS512", "PS256", "PS384"] {
        let response = get_with(&gw, &sign(alg, Some("r"), &claims("bob"))).await;
        assert_eq!(response.status, 200, "{alg}: {}", response.text());
    }
    assert_invalid(
        &get_with(&gw, &sign("ES256", Some("r"), &claims("bob"))).await,
        "key 'r' is for RSA key, not ES256",
    );
}

#[tokio::test]
async fn alg_none_and_algorithm_confusion_are_refused() {
    let rsa_pem = public_pem("rsa");
    let gw = gateway(json!({
        "keys": [{"kid": "rsa", "alg": "RS256", "pem": rsa_pem}],
        "jwks": {"keys": [jwk("rsa2", "rsa2", None)]}
    }))
    .await;
    // alg none, whatever the case, with or without a signature.
    for alg in ["none", "None", "NONE"] {
        let input = format!(
            "{}.{}",
            b64url(json!({"alg": alg, "kid": "rsa"}).to_string()),
            b64url(claims("mallory").to_string())
        );
        assert_invalid(&get_with(&gw, &format!("{input}.")).await, "alg none");
        assert_invalid(&get_with(&gw, &format!("{input}.c2ln")).await, "alg none");
    }
    // HS256 "signed" with the RSA public key's PEM text as the HMAC secret (the classic
    // confusion attack): public keys are never HMAC secrets.
    let forge = |kid: Option<&str>| {
        let mut header = json!({"alg": "HS256", "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let input = format!(
            "{}.{}",
            b64url(header.to_string()),
            b64url(claims("mallory").to_string())
        );
        std::fs::write(dir().join("confusion"), &input).unwrap();
        let hex: String = rsa_pem.bytes().map(|b| format!("{b:02x}")).collect();
        let mac = openssl(&[
            "dgst",
            "-sha256",
            "-mac",
            "HMAC",
            "-macopt",
            &format!("hexkey:{hex}"),
            "-binary",
            "confusion",
        ]);
        format!("{input}.{}", b64url(mac))
    };
    assert_invalid(
        &get_with(&gw, &forge(Some("rsa"))).await,
        "key 'rsa' is for RS256, not HS256",
    );
    assert_invalid(
        &get_with(&gw, &forge(Some("rsa2"))).await,
        "key 'rsa2' is for RSA key, not HS256",
    );
    assert_invalid(
        &get_with(&gw, &forge(None)).await,
        "no key verifies HS256 tokens",
    );
    // The key's algorithm must be the token's: a PS256 signature by the RS256 key's private key.
    assert_invalid(
        &get_with(&gw, &sign("PS256", Some("rsa"), &claims("bob"))).await,
        "key 'rsa' is for RS256, not PS256",
    );
    // An algorithms allow-list narrows further.
    let gw =
        gateway(json!({"jwks": {"keys": [jwk("rsa", "r", None)]}, "algorithms": ["PS256"]})).await;
    assert_invalid(
        &get_with(&gw, &sign("RS256", Some("r"), &claims("bob"))).await,
        "algorithm RS256 is not accepted",
    );
    assert_eq!(
        get_with(&gw, &sign("PS256", Some("r"), &claims("bob")))
            .await
            .status,
        200
    );
    assert!(gw.upstream("echo").requests().len() == 1);
}

#[tokio::test]
async fn missing_and_malformed_tokens_get_rfc6750_challenges() {
    let gw = gateway(json!({"keys": inline_keys(), "realm": "orders"})).await;
    for headers in [
        &[][..],
        &[("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")][..],
        &[("authorization", "Bearer ")][..],
        &[("x-token", "a.b.c")][..],
    ] {
        let response = gw.send("GET", "/anything", headers, b"").await;
        let doc = response.assert_problem(401, "unauthorized");
        assert_eq!(doc["title"], "Unauthorized");
        // No error attribute when no token was sent (RFC 6750 §3.1).
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer realm=\"orders\""),
            "{headers:?}"
        );
    }
    for (token, why) in [
        ("abc", "three dot-separated parts"),
        ("a.b.c.d.e", "JWE"),
        ("e30.e30.", "no alg"),
        ("!!.e30.AA", "header is not base64url"),
        (
            "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.AA",
            "payload is not a JSON object",
        ),
        (
            "eyJhbGciOiJFUzUxMiJ9.e30.AA",
            "unsupported algorithm 'ES512'",
        ),
    ] {
        let response = get_with(&gw, token).await;
        response.assert_problem(401, "invalid-token");
        let challenge = response.header("www-authenticate").unwrap();
        assert!(
            challenge.starts_with(
                "Bearer realm=\"orders\", error=\"invalid_token\", error_description=\""
            ),
            "{challenge}"
        );
        assert!(challenge.contains(why), "{token}: {challenge}");
    }
    let expired = sign(
        "HS256",
        Some("hs256"),
        &json!({"sub": "a", "exp": now() - 3600}),
    );
    let response = get_with(&gw, &expired).await;
    response.assert_problem(401, "invalid-token");
    assert!(
        response
            .header("www-authenticate")
            .unwrap()
            .contains("the token expired at")
    );
    assert!(gw.upstream("echo").requests().is_empty());
}

#[tokio::test]
async fn expiry_and_not_before_honour_the_leeway() {
    let gw = gateway(json!({"keys": inline_keys(), "leeway": 30})).await;
    let t = now();
    for (claims, ok) in [
        (json!({"sub": "a", "exp": t - 10}), true),
        (json!({"sub": "a", "exp": t - 90}), false),
        (json!({"sub": "a", "nbf": t + 10}), true),
        (json!({"sub": "a", "nbf": t + 120}), false),
        (json!({"sub": "a", "nbf": t - 10, "exp": t + 10}), true),
        (json!({"sub": "a", "exp": "tomorrow"}), false),
        (json!({"sub": "a"}), true),
    ] {
        let response = get_with(&gw, &sign("ES256", Some("es256"), &claims)).await;
        if ok {
            assert_eq!(response.status, 200, "{claims}: {}", response.text());
        } else {
            response.assert_problem(401, "invalid-token");
        }
    }
    let gw = gateway(json!({"keys": inline_keys(), "leeway": 0})).await;
    let response = get_with(
        &gw,
        &sign("ES256", Some("es256"), &json!({"sub": "a", "exp": t - 10})),
    )
    .await;
    assert_invalid(&response, "the token expired at");
    let response = get_with(
        &gw,
        &sign("ES256", Some("es256"), &json!({"sub": "a", "nbf": t + 60})),
    )
    .await;
    assert_invalid(&response, "not valid before");
}

#[tokio::test]
async fn issuer_audience_and_required_claims_are_403() {
    let gw = gateway(json!({
        "keys": inline_keys(),
        "issuers": ["https://idp.example"],
        "audiences": ["orders", "billing"],
        "required_claims": ["scope", "tenant.id"]
    }))
    .await;
    let good = json!({
        "sub": "alice", "iss": "https://idp.example", "aud": ["other", "orders"],
        "scope": "read", "tenant": {"id": 7}, "exp": now() + 600
    });
    let response = get_with(&gw, &sign("RS256", Some("rs256"), &good)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let mut cases = Vec::new();
    let mut c = good.clone();
    c["iss"] = json!("https://evil.example");
    cases.push((c, "issuer 'https://evil.example' is not accepted"));
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("iss");
    cases.push((c, "no issuer"));
    let mut c = good.clone();
    c["aud"] = json!("shipping");
    cases.push((c, "audience is not accepted"));
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("aud");
    cases.push((c, "audience is not accepted"));
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("scope");
    cases.push((c, "required claim 'scope'"));
    let mut c = good.clone();
    c["tenant"] = json!({"name": "x"});
    cases.push((c, "required claim 'tenant.id'"));
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("sub");
    cases.push((c, "no 'sub' claim"));
    for (claims, why) in cases {
        let response = get_with(&gw, &sign("RS256", Some("rs256"), &claims)).await;
        let doc = response.assert_problem(403, "forbidden");
        assert!(
            doc["detail"].as_str().unwrap().contains(why),
            "{claims}: {doc}"
        );
        let challenge = response.header("www-authenticate").unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"api\", error=\"insufficient_scope\""),
            "{challenge}"
        );
    }
    // An expired token is a 401 even when its claims would also be refused.
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    expired["iss"] = json!("https://evil.example");
    get_with(&gw, &sign("RS256", Some("rs256"), &expired))
        .await
        .assert_problem(401, "invalid-token");
    assert_eq!(gw.upstream("echo").requests().len(), 1);
}

#[tokio::test]
async fn claims_reach_the_upstream_as_headers() {
    let gw = gateway(json!({
        "keys": inline_keys(),
        "claims_to_headers": {
            "sub": "x-user",
            "email": "x-email",
            "realm_access.roles": "x-roles",
            "https://example.com/tier": "x-tier",
            "missing": "x-missing"
        },
        "groups_claim": "realm_access.roles"
    }))
    .await;
    let token = sign(
        "EdDSA",
        Some("eddsa"),
        &json!({
            "sub": "alice", "email": "alice@example.com", "exp": now() + 60,
            "realm_access": {"roles": ["admin", "dev"]}, "https://example.com/tier": 3
        }),
    );
    let spoofed = [
        ("authorization", bearer(&token)),
        ("x-user", String::from("mallory")),
        ("x-missing", String::from("spoofed")),
        ("x-consumer-id", String::from("mallory")),
        ("x-consumer-groups", String::from("root")),
    ];
    let headers: Vec<(&str, &str)> = spoofed.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let response = gw.send("POST", "/anything", &headers, b"payload").await;
    assert_eq!(response.status, 200, "{}", response.text());
    let echoed = response.json();
    let h = &echoed["headers"];
    assert_eq!(h["x-user"], "alice");
    assert_eq!(h["x-email"], "alice@example.com");
    assert_eq!(h["x-roles"], "admin,dev");
    assert_eq!(h["x-tier"], "3");
    assert_eq!(h["x-consumer-id"], "alice");
    assert_eq!(h["x-consumer-groups"], "admin,dev");
    assert!(
        h.get("x-missing").is_none(),
        "client values are removed: {h}"
    );
    assert_eq!(echoed["body"], "payload");
}

#[tokio::test]
async fn tokens_from_other_places_and_stripping() {
    let gw = gateway(json!({
        "keys": inline_keys(),
        "from_headers": [{"name": "x-api-token"}, {"name": "authorization", "prefix": "JWT "}],
        "from_query": ["access_token"],
        "from_cookies": ["session"],
        "strip_token": true
    }))
    .await;
    let token = sign("HS256", Some("hs256"), &claims("carol"));

    let response = gw
        .send("GET", "/anything", &[("x-api-token", &token)], b"")
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.json()["headers"].get("x-api-token").is_none());

    let response = gw
        .send(
            "GET",
            "/anything",
            &[("authorization", &format!("jwt {token}"))],
            b"",
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.json()["headers"].get("authorization").is_none());

    let response = gw
        .get(&format!("/anything?a=1&access_token={token}&b=2"))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["uri"], "/anything?a=1&b=2");

    let cookie = format!("theme=dark; session={token}; lang=en");
    let response = gw
        .send("GET", "/anything", &[("cookie", &cookie)], b"")
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["headers"]["cookie"], "theme=dark; lang=en");

    // Bearer is not a configured source here.
    let response = gw
        .send(
            "GET",
            "/anything",
            &[("authorization", &bearer(&token))],
            b"",
        )
        .await;
    response.assert_problem(401, "unauthorized");

    // allow_missing: no token passes (without identity headers); a bad token still does not.
    let gw = gateway(json!({"keys": inline_keys(), "allow_missing": true, "claims_to_headers": {"sub": "x-user"}})).await;
    let response = gw
        .send(
            "GET",
            "/anything",
            &[("x-user", "mallory"), ("x-consumer-id", "mallory")],
            b"",
        )
        .await;
    assert_eq!(response.status, 200);
    let h = &response.json()["headers"];
    assert!(
        h.get("x-user").is_none() && h.get("x-consumer-id").is_none(),
        "{h}"
    );
    get_with(&gw, "a.b.c")
        .await
        .assert_problem(401, "invalid-token");
}

/// A token seen again comes from the cache of verified tokens, whose claims are still checked on
/// every request: the same token is refused once it expires (the cache is on by default).
#[tokio::test]
async fn a_cached_token_is_refused_once_it_expires() {
    let gw = gateway(json!({"keys": inline_keys(), "leeway": 0})).await;
    let expires = now() + 2;
    let token = sign("ES256", Some("es256"), &json!({"sub": "a", "exp": expires}));
    for _ in 0..3 {
        let response = get_with(&gw, &token).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    while now() <= expires {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_invalid(&get_with(&gw, &token).await, "the token expired at");
    // With the cache off, the same holds.
    let gw = gateway(json!({"keys": inline_keys(), "leeway": 0, "cache_size": 0})).await;
    let fresh = sign(
        "ES256",
        Some("es256"),
        &json!({"sub": "a", "exp": now() + 60}),
    );
    assert_eq!(get_with(&gw, &fresh).await.status, 200);
    assert_eq!(get_with(&gw, &fresh).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_jwks_is_refreshed_and_the_last_good_set_kept() {
    let first = json!({"keys": [jwk("rsa", "k1", Some("RS256")), jwk("ec256", "e1", None)]});
    let second = json!({"keys": [jwk("rsa2", "k2", Some("RS256"))]});
    let (gw, idp) = jwks_gateway(
        json!({"upstream": "idp", "path": "/keys", "refresh_interval": 1, "retry_interval": 1, "refetch_on_unknown_kid": false}),
        json!({}),
        first,
        second,
        Idp::First,
        Duration::ZERO,
    )
    .await;
    let token1 = sign("RS256", Some("k1"), &claims("alice"));
    let token2 = sign_with(
        "RS256",
        "rsa2",
        json!({"alg": "RS256", "kid": "k2"}),
        &claims("bob"),
    );
    let response = get_with(&gw, &token1).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let fetches = gw.upstream("idp").requests();
    assert_eq!(fetches[0].uri, "/keys");
    assert_eq!(fetches[0].header("host"), Some("idp"));
    assert_eq!(
        get_with(&gw, &sign("ES256", Some("e1"), &claims("a")))
            .await
            .status,
        200
    );

    // Refreshes that fail, or bring garbage, keep the last good key set.
    for failure in [Idp::Down, Idp::Garbage] {
        idp.set(failure);
        let before = gw.upstream("idp").requests().len();
        assert!(
            eventually(Duration::from_secs(6), || gw
                .upstream("idp")
                .requests()
                .len()
                >= before + 2)
            .await,
            "{failure:?}: the JWKS is fetched again"
        );
        let response = get_with(&gw, &token1).await;
        assert_eq!(response.status, 200, "{failure:?}: {}", response.text());
    }
    assert_invalid(&get_with(&gw, &token2).await, "no key with kid 'k2'");

    // A rotation: the new set replaces the old one.
    idp.set(Idp::Second);
    let mut rotated = false;
    let start = Instant::now();
    while !rotated && start.elapsed() < Duration::from_secs(6) {
        rotated = get_with(&gw, &token2).await.status == 200;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        rotated,
        "the rotated key is picked up by the periodic refresh"
    );
    assert_invalid(&get_with(&gw, &token1).await, "no key with kid 'k1'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_wait_for_the_first_jwks_fetch() {
    let jwks = json!({"keys": [jwk("ed", "ed", Some("EdDSA"))]});
    let (gw, _idp) = jwks_gateway(
        json!({"upstream": "idp", "timeout_ms": 5000}),
        json!({"claims_to_headers": {"sub": "x-user"}}),
        jwks.clone(),
        jwks,
        Idp::First,
        Duration::from_millis(700),
    )
    .await;
    let token = sign("EdDSA", Some("ed"), &claims("dave"));
    let auth = bearer(&token);
    // Only the JWKS the identity provider serves after 700 ms verifies this token: a 200 means
    // the request waited for the keys (no wall-time assertion needed).
    let response = gw
        .send(
            "POST",
            "/anything",
            &[("authorization", &auth)],
            b"{\"order\": 1}",
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let echoed = response.json();
    assert_eq!(echoed["headers"]["x-user"], "dave");
    assert_eq!(echoed["body"], "{\"order\": 1}");
    assert_eq!(gw.upstream("idp").requests().len(), 1, "one fetch at start");
    // Later requests are answered from the loaded set.
    assert_eq!(get_with(&gw, &token).await.status, 200);
    assert_eq!(gw.upstream("idp").requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_upstream_down_from_the_start_fails_closed() {
    let jwks = json!({"keys": [jwk("ec384", "p384", None)]});
    let (gw, idp) = jwks_gateway(
        json!({"upstream": "idp", "retry_interval": 1}),
        json!({}),
        jwks.clone(),
        jwks,
        Idp::Down,
        Duration::ZERO,
    )
    .await;
    let token = sign("ES384", Some("p384"), &claims("erin"));
    for _ in 0..3 {
        let response = get_with(&gw, &token).await;
        let doc = response.assert_problem(503, "jwks-unavailable");
        assert!(
            doc["detail"].as_str().unwrap().contains("not available"),
            "{doc}"
        );
        let retry: u32 = response.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=5).contains(&retry));
    }
    // Still no token is a 401, and a malformed one too: they need no keys.
    gw.get("/anything")
        .await
        .assert_problem(401, "unauthorized");
    get_with(&gw, "x.y.z")
        .await
        .assert_problem(401, "invalid-token");
    assert!(gw.upstream("echo").requests().is_empty());

    // The upstream recovers: the retry loads the keys.
    idp.set(Idp::First);
    let mut recovered = false;
    let start = Instant::now();
    while !recovered && start.elapsed() < Duration::from_secs(6) {
        recovered = get_with(&gw, &token).await.status == 200;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered);
}

#[tokio::test]
async fn an_unreachable_jwks_upstream_fails_closed() {
    let token = sign("RS256", Some("k"), &claims("frank"));
    // Nothing listens: the fetch fails to connect.
    let gw = TestGateway::builder()
        .plugin(
            "jwt-auth",
            &wasm(),
            json!({"jwks_upstream": {"upstream": "idp"}}),
        )
        .closed_upstream("idp")
        .start()
        .await;
    let doc = get_with(&gw, &token)
        .await
        .assert_problem(503, "jwks-unavailable");
    assert!(
        doc["detail"].as_str().unwrap().contains("answered 503"),
        "{doc}"
    );
    assert!(gw.upstream("echo").requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_upstream_slower_than_the_timeout_fails_closed() {
    let token = sign("RS256", Some("k"), &claims("frank"));
    // Answers after the fetch's timeout: the host gives up (504); the request waited for it.
    let jwks = json!({"keys": [jwk("rsa", "k", None)]});
    let (gw, _idp) = jwks_gateway(
        json!({"upstream": "idp", "timeout_ms": 300}),
        json!({}),
        jwks.clone(),
        jwks,
        Idp::First,
        Duration::from_millis(1500),
    )
    .await;
    let doc = get_with(&gw, &token)
        .await
        .assert_problem(503, "jwks-unavailable");
    assert!(
        doc["detail"].as_str().unwrap().contains("answered 504"),
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_fetches_the_jwks_at_start() {
    let jwks = json!({"keys": [jwk("ec256", "e", None)]});
    let served = jwks.to_string();
    let gw = TestGateway::builder()
        .plugin(
            "jwt-auth",
            &wasm(),
            json!({"jwks_upstream": {"upstream": "idp"}}),
        )
        .upstream("idp", move |_| {
            TestResponse::new(200).with_body(served.clone())
        })
        .workers(2)
        .start()
        .await;
    // One fetch per worker's replica (the harness may also have started, then dropped, a probe
    // worker in the test's runtime, which fetched too).
    assert!(
        eventually(Duration::from_secs(5), || gw
            .upstream("idp")
            .requests()
            .len()
            >= 2)
        .await,
        "one fetch per worker"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fetches = gw.upstream("idp").requests().len();
    assert!((2..=3).contains(&fetches), "{fetches}");
    let token = sign("ES256", Some("e"), &claims("gina"));
    for _ in 0..6 {
        assert_eq!(get_with(&gw, &token).await.status, 200);
    }
    assert_eq!(
        gw.upstream("idp").requests().len(),
        fetches,
        "no fetch per request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_triggers_a_rate_limited_refetch() {
    let first = json!({"keys": [jwk("rsa", "old", Some("RS256"))]});
    let second =
        json!({"keys": [jwk("rsa", "old", Some("RS256")), jwk("rsa2", "new", Some("PS256"))]});
    let (gw, idp) = jwks_gateway(
        json!({"upstream": "idp", "refresh_interval": 3600, "min_refetch_interval": 1}),
        json!({}),
        first,
        second,
        Idp::First,
        Duration::ZERO,
    )
    .await;
    let old = sign("RS256", Some("old"), &claims("a"));
    assert_eq!(get_with(&gw, &old).await.status, 200);
    assert_eq!(gw.upstream("idp").requests().len(), 1);
    // The identity provider rotates in a new key; the plugin has not seen it yet.
    idp.set(Idp::Second);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = sign_with(
        "PS256",
        "rsa2",
        json!({"alg": "PS256", "kid": "new"}),
        &claims("b"),
    );
    let response = get_with(&gw, &new).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        gw.upstream("idp").requests().len(),
        2,
        "one refetch for the unknown kid"
    );
    // Another unknown kid right after: refused without a fetch (rate limit).
    let forged = sign_with(
        "PS256",
        "rsa2",
        json!({"alg": "PS256", "kid": "nope"}),
        &claims("c"),
    );
    assert_invalid(&get_with(&gw, &forged).await, "no key with kid 'nope'");
    assert_eq!(gw.upstream("idp").requests().len(), 2);
}

#[tokio::test]
async fn bad_configurations_are_refused_at_compile_time() {
    let rsa_pem = public_pem("rsa");
    let ec_pem = public_pem("ec256");
    // (config, whether the schema refuses it too, what the plugin's diagnostic says; for schema
    // cases it ends with the JSON pointer the schema names)
    let cases = [
        (json!({}), true, "no keys: configure keys"),
        (
            json!({"keys": [{"alg": "HS999", "secret": HS256_SECRET}]}),
            true,
            "invalid configuration at /keys/0/alg",
        ),
        (
            json!({"keys": [{"alg": "none", "secret": HS256_SECRET}]}),
            true,
            "invalid configuration at /keys/0/alg",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret": HS256_SECRET, "pem": rsa_pem}]}),
            true,
            "invalid configuration at /keys/0",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret": "too-short"}]}),
            false,
            "invalid configuration at /keys/0/secret: a HS256 secret needs at least 32 bytes",
        ),
        (
            json!({"keys": [{"alg": "RS256", "pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}]}),
            false,
            "invalid configuration at /keys/0/pem: not a SubjectPublicKeyInfo",
        ),
        (
            json!({"keys": [{"alg": "RS256", "pem": ec_pem}]}),
            false,
            "invalid configuration at /keys/0/pem: a P-256 key cannot verify RS256",
        ),
        (
            json!({"keys": [{"alg": "HS256", "pem": rsa_pem}]}),
            false,
            "invalid configuration at /keys/0/pem: a RSA key cannot verify HS256",
        ),
        (
            json!({"jwks": {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}}),
            false,
            "invalid configuration at /jwks/keys/0: the RSA key has 17 bits",
        ),
        (
            json!({"jwks_upstream": {"upstream": "nowhere"}}),
            false,
            "invalid configuration at /jwks_upstream/upstream: 'nowhere' is not an upstream",
        ),
        (
            json!({"jwks_upstream": {"upstream": "idp", "refresh_interval": 0}}),
            true,
            "invalid configuration at /jwks_upstream/refresh_interval",
        ),
        (
            json!({"keys": inline_keys(), "claims_to_headers": {"sub": "x user"}}),
            true,
            "invalid configuration at /claims_to_headers/sub",
        ),
        (
            json!({"keys": inline_keys(), "realm": "a\"b"}),
            true,
            "invalid configuration at /realm",
        ),
    ];
    for (config, by_schema, expected) in cases {
        // The schema (checked by `barbacane compile` for built-in plugins) and the plugin's own
        // checks in on_configure (all the harness's `file:` plugin gets) agree.
        match check_config(crate_dir(), &config) {
            Ok(()) => assert!(!by_schema, "the schema accepts {config}"),
            Err(errors) => {
                assert!(by_schema, "the schema refuses {config}: {errors:?}");
                let pointer = expected.split_whitespace().last().unwrap();
                assert!(
                    errors
                        .iter()
                        .any(|e| e.starts_with(pointer) || pointer == "keys"),
                    "{config}: {errors:?}"
                );
            }
        }
        let error = match TestGateway::builder()
            .plugin("jwt-auth", &wasm(), config.clone())
            .upstream("idp", |_| TestResponse::new(500))
            .try_start()
            .await
        {
            Ok(_) => panic!("{config} was accepted"),
            Err(e) => e,
        };
        assert!(error.contains("E1061"), "{config}: {error}");
        assert!(
            error.contains("plugin 'jwt-auth' rejected its configuration"),
            "{error}"
        );
        assert!(error.contains(expected), "{config}: {error}");
    }
}

#[test]
fn manifest_and_documented_examples() {
    let manifest = plugin_manifest(crate_dir());
    assert_eq!(manifest.name, "jwt-auth");
    assert_eq!(manifest.kind, "auth");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    for example in [
        json!({"jwks_upstream": {"upstream": "idp"}}),
        json!({
            "jwks_upstream": {
                "upstream": "keycloak",
                "authority": "sso.example.com",
                "path": "/realms/shop/protocol/openid-connect/certs",
                "timeout_ms": 2000,
                "refresh_interval": 600,
                "retry_interval": 5,
                "refetch_on_unknown_kid": true,
                "min_refetch_interval": 30
            },
            "issuers": ["https://sso.example.com/realms/shop"],
            "audiences": ["orders-api"],
            "required_claims": ["scope"],
            "leeway": 30,
            "claims_to_headers": {"sub": "x-user-id", "email": "x-user-email"},
            "groups_claim": "realm_access.roles",
            "strip_token": true
        }),
        // docs/plugins/jwt-auth.md
        json!({
            "keys": [{"kid": "2024-06", "alg": "HS256", "secret_base64": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0="}],
            "from_headers": [{"name": "x-service-token", "prefix": ""}],
            "from_cookies": ["session"]
        }),
        // spec-examples/plugins/jwt-auth/api.yaml
        json!({
            "realm": "orders",
            "jwks_upstream": {"upstream": "idp", "path": "/jwks.json", "timeout_ms": 2000, "refresh_interval": 300, "retry_interval": 2},
            "algorithms": ["EdDSA", "ES256", "RS256"],
            "issuers": ["https://idp.example"],
            "audiences": ["orders"],
            "required_claims": ["scope"],
            "leeway": 30,
            "claims_to_headers": {"sub": "x-user-id", "scope": "x-user-scope"},
            "groups_claim": "scope",
            "strip_token": true
        }),
        json!({"keys": [{"alg": "ES256", "pem": public_pem("ec256")}], "from_query": ["access_token"], "allow_missing": true}),
    ] {
        assert_eq!(check_config(crate_dir(), &example), Ok(()), "{example}");
    }
    assert!(
        check_config(
            crate_dir(),
            &json!({"jwks_upstream": {"upstream": "idp"}, "extra": 1})
        )
        .is_err()
    );
}

/// A token-like string: random parts, real headers with odd payloads, mutated real tokens.
fn garbage_token(rng: &mut Random, real: &[String]) -> String {
    let headers = [
        json!({"alg": "HS256"}),
        json!({"alg": "RS256", "kid": "rs256"}),
        json!({"alg": "ES256", "kid": ["x"]}),
        json!({"alg": "EdDSA", "kid": "eddsa", "crit": []}),
        json!({"alg": "none"}),
        json!({"alg": "PS512", "kid": "\u{0}\r\n\"'"}),
        json!({"alg": "HS512", "kid": "hs512"}),
        json!({"alg": "ES384", "kid": "es384"}),
        json!("string"),
        json!(null),
    ];
    let payloads = [
        json!({"sub": "x", "exp": "soon"}),
        json!({"sub": 7, "exp": 1e308, "nbf": -1e308}),
        json!({"sub": {"a": [1, 2]}, "exp": u64::MAX}),
        json!({"iss": null, "aud": [null, 1, {"x": 1}]}),
        json!([1, 2, 3]),
        json!({"sub": "\u{7}\r\nx-evil: 1"}),
    ];
    match rng.below(6) {
        0 => b64url(rng.bytes(40)),
        1 => format!(
            "{}.{}.{}",
            b64url(rng.bytes(30)),
            b64url(rng.bytes(60)),
            b64url(rng.bytes(300))
        ),
        2 => format!(
            "{}.{}.{}",
            b64url(rng.pick(&headers).to_string()),
            b64url(rng.pick(&payloads).to_string()),
            b64url(rng.bytes(600))
        ),
        3 => {
            // A real token with a few characters changed, dropped or inserted.
            let mut token: Vec<u8> = rng.pick(real).clone().into_bytes();
            for _ in 0..=rng.below(4) {
                let i = rng.below(token.len());
                match rng.below(3) {
                    0 => token[i] = b"AZaz09-_.=+/!~"[rng.below(14)],
                    1 => {
                        token.remove(i);
                    }
                    _ => token.insert(i, b'.'),
                }
            }
            String::from_utf8_lossy(&token).into_owned()
        }
        4 => {
            let real = rng.pick(real).clone();
            let cut = rng.below(real.len());
            real[..cut].to_string()
        }
        _ => rng.text(200),
    }
}

#[tokio::test]
async fn garbage_never_traps_the_plugin() {
    let gw = gateway(json!({
        "keys": inline_keys(),
        "jwks": full_jwks(),
        "issuers": ["https://idp.example"],
        "from_query": ["access_token"],
        "from_cookies": ["session"],
        "claims_to_headers": {"sub": "x-user", "a.b.c": "x-abc"},
        "groups_claim": "groups",
        "strip_token": true
    }))
    .await;
    let real: Vec<String> = ["HS256", "RS256", "ES256", "ES384", "EdDSA", "PS256"]
        .iter()
        .map(|alg| {
            sign(
                alg,
                Some(&alg.to_ascii_lowercase()),
                &json!({"sub": "r", "iss": "https://idp.example", "groups": "a b"}),
            )
        })
        .collect();
    let mut rng = Random::new(0x5EED_1234_ABCD_0001);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..400 {
        let token = garbage_token(&mut rng, &real);
        let response = match i % 4 {
            0 | 1 => {
                let prefix =
                    *rng.pick(&["Bearer ", "bearer ", "Bearer  ", "Basic ", "", "Bearer\t"]);
                gw.send(
                    "GET",
                    "/anything",
                    &[("authorization", &format!("{prefix}{token}"))],
                    b"",
                )
                .await
            }
            2 => {
                let cookie = format!(
                    "{}={token}; {}",
                    rng.pick(&["session", "other", ""]),
                    rng.text(20).replace(';', "")
                );
                gw.send("POST", "/anything", &[("cookie", &cookie)], &rng.bytes(64))
                    .await
            }
            _ => {
                let encoded: String = token
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                gw.get(&format!("/anything?access_token={encoded}&x=%FF%00"))
                    .await
            }
        };
        assert!(
            matches!(response.status, 200 | 401 | 403),
            "request {i} ({token:?}): {} {}",
            response.status,
            response.text()
        );
        if response.status != 200 {
            assert_eq!(
                response.header("content-type"),
                Some("application/problem+json")
            );
        }
        *statuses.entry(response.status).or_insert(0) += 1;
    }
    assert!(
        statuses.get(&401).copied().unwrap_or(0) > 200,
        "{statuses:?}"
    );

    // Bytes that are not UTF-8 in the token's header and cookie, over a raw connection.
    for header in [
        &b"authorization: Bearer \xff\xfe.\x80.\xc3"[..],
        b"authorization: \xffBearer x",
        b"cookie: session=\xff\xff; a=\x80",
        b"x-user: \xff",
    ] {
        let mut stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        let mut request = b"GET /anything HTTP/1.1\r\nhost: test\r\nconnection: close\r\n".to_vec();
        request.extend_from_slice(header);
        request.extend_from_slice(b"\r\n\r\n");
        stream.write_all(&request).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
        read.await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&answer);
        // The gateway passes such bytes on (obs-text); the plugin reads them without trapping.
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }

    // The VM is still the one that started: valid tokens still pass.
    for token in &real {
        assert_eq!(get_with(&gw, token).await.status, 200);
    }
    // And the gateway counted no plugin failure (a trap replaces the VM and is counted).
    assert_eq!(gw.plugin_failures("jwt-auth").await, 0);
}

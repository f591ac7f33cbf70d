//! Bearer-token registries (Docker's token protocol, as Docker Hub, GHCR and Harbor use it),
//! against a real Distribution in token-auth mode and a real token server: the client answers
//! the `Bearer` challenge by fetching a token with its credentials, then pushes, signs, verifies
//! and resolves as with Basic auth; bad or missing credentials are `Unauthorized`.

#![allow(clippy::unwrap_used)]

mod common;

use barbacane_registry::{
    Credentials, ErrorKind, NoProgress, PluginRef, Registry, TrustPolicy, keygen,
};
use common::{Auth, TestRegistry, TokenServer, filter_wasm};

#[tokio::test]
async fn a_token_registry_is_used_through_the_bearer_challenge() {
    let tokens = TokenServer::start();
    let auth = Auth::Token(tokens);
    let reg = TestRegistry::start_with(&auth);
    let Auth::Token(tokens) = &auth else {
        unreachable!()
    };
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    let wasm = filter_wasm();
    let r = PluginRef::parse(&reg.oci("filters/headers:1")).unwrap();

    let pushed = client.push(&wasm, &r, None, &NoProgress).await.unwrap();
    assert!(tokens.issued() >= 1, "the push fetched a token");
    let key = keygen(b"pw").unwrap();
    client
        .sign(&r, key.private_pem.as_bytes(), b"pw")
        .await
        .unwrap();

    // A fresh client with its own cache: verify, then resolve (verify, pull by digest, check).
    let fresh_cache = tempfile::tempdir().unwrap();
    let fresh = reg.client(fresh_cache.path());
    let before = tokens.issued();
    let verified = fresh
        .verify(&r, std::slice::from_ref(&key.public_pem))
        .await
        .unwrap();
    assert_eq!(verified.manifest_digest, pushed.manifest_digest);
    let trust = TrustPolicy {
        keys: vec![key.public_pem.clone()],
        allow_unsigned: false,
    };
    let resolved = fresh
        .resolve(&r.to_string(), &trust, None, false, &NoProgress)
        .await
        .unwrap();
    assert_eq!(resolved.bytes, wasm);
    assert!(
        tokens.issued() > before,
        "the fresh client fetched its own token"
    );

    // The token server refuses a wrong password: the registry answers 401.
    let mut options = reg.options(cache.path());
    options
        .credentials
        .insert(reg.host(), Credentials::basic(common::USER, "wrong"));
    let e = Registry::new(options)
        .pull(&r, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");

    // No credentials: no token, 401.
    let mut options = reg.options(cache.path());
    options.credentials.clear();
    let e = Registry::new(options)
        .pull(&r, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
}

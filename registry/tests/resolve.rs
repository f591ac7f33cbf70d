//! The compiler's step, `Registry::resolve`, against a real registry: the lock's digest wins
//! over a moved tag, `update` re-resolves, a pinned digest deleted from the registry, an
//! unreachable registry, wrong credentials, unsigned plugins with and without `allow_unsigned`,
//! and nothing written on refusal.

#![allow(clippy::unwrap_used)]

mod common;

use barbacane_registry::{
    Credentials, ErrorKind, Lockfile, NoProgress, PluginRef, Registry, TrustPolicy, keygen,
};
use common::{TestRegistry, files_under, filter_wasm, filter_wasm_variant, free_port};

#[tokio::test]
async fn pinned_digest_survives_a_moved_tag_until_update() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    let source = reg.oci("filters/headers:1.2.0");
    let r = PluginRef::parse(&source).unwrap();
    let alice = keygen(b"pw").unwrap();
    let v1 = filter_wasm();
    let p1 = client.push(&v1, &r, None, &NoProgress).await.unwrap();
    client
        .sign(&r, alice.private_pem.as_bytes(), b"pw")
        .await
        .unwrap();

    let keys_dir = tempfile::tempdir().unwrap();
    let key_file = keys_dir.path().join("cosign.pub");
    std::fs::write(&key_file, &alice.public_pem).unwrap();
    let trust = TrustPolicy::from_key_files(&[&key_file], false).unwrap();

    // First compile: resolve the tag, verify, pin.
    let first = client
        .resolve(&source, &trust, None, false, &NoProgress)
        .await
        .unwrap();
    assert_eq!(first.bytes, v1);
    assert_eq!(first.entry.manifest_digest, p1.manifest_digest);
    assert_eq!(first.entry.layer_digest, p1.layer_digest);
    assert_eq!(first.entry.media_type, "application/wasm");
    assert_eq!(
        first.entry.signer.as_deref(),
        Some(alice.fingerprint.as_str())
    );
    let lock_path = keys_dir.path().join("barbacane.lock");
    let mut lock = Lockfile::read(&lock_path).unwrap();
    lock.insert(first.entry.clone());
    lock.write(&lock_path).unwrap();

    // The tag moves to new (signed) bytes.
    let v2 = filter_wasm_variant("v2");
    let p2 = client.push(&v2, &r, None, &NoProgress).await.unwrap();
    client
        .sign(&r, alice.private_pem.as_bytes(), b"pw")
        .await
        .unwrap();

    // With the lock: still the pinned bytes.
    let lock = Lockfile::read(&lock_path).unwrap();
    let pinned = client
        .resolve(&source, &trust, lock.get(&source), false, &NoProgress)
        .await
        .unwrap();
    assert_eq!(pinned.bytes, v1);
    assert_eq!(pinned.entry.manifest_digest, p1.manifest_digest);

    // With update: the new digest.
    let updated = client
        .resolve(&source, &trust, lock.get(&source), true, &NoProgress)
        .await
        .unwrap();
    assert_eq!(updated.bytes, v2);
    assert_eq!(updated.entry.manifest_digest, p2.manifest_digest);

    // The pinned digest is deleted from the registry: the distinct error.
    assert_eq!(
        reg.delete_manifest("filters/headers", &p1.manifest_digest),
        202
    );
    let e = client
        .resolve(&source, &trust, lock.get(&source), false, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PinnedDigestMissing, "{e}");
    assert!(e.to_string().contains(&p1.manifest_digest), "{e}");

    // A source that pins a digest itself.
    let by_digest = format!("{source}@{}", p2.manifest_digest);
    let r2 = client
        .resolve(&by_digest, &trust, None, false, &NoProgress)
        .await
        .unwrap();
    assert_eq!(r2.bytes, v2);
    let gone = format!("{source}@{}", p1.manifest_digest);
    let e = client
        .resolve(&gone, &trust, None, false, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn trust_policy_unsigned_and_untrusted() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    let source = reg.oci("filters/headers:1");
    let r = PluginRef::parse(&source).unwrap();
    client
        .push(&filter_wasm(), &r, None, &NoProgress)
        .await
        .unwrap();
    let alice = keygen(b"pw").unwrap();
    let trust = TrustPolicy {
        keys: vec![alice.public_pem.clone()],
        allow_unsigned: false,
    };

    let fresh = tempfile::tempdir().unwrap();
    let resolver = reg.client(fresh.path());
    let e = resolver
        .resolve(&source, &trust, None, false, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsigned, "{e}");
    assert!(
        files_under(fresh.path()).is_empty(),
        "nothing cached on refusal"
    );

    let mallory = keygen(b"m").unwrap();
    client
        .sign(&r, mallory.private_pem.as_bytes(), b"m")
        .await
        .unwrap();
    let e = resolver
        .resolve(&source, &trust, None, false, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UntrustedKey, "{e}");
    assert!(
        files_under(fresh.path()).is_empty(),
        "nothing cached on refusal"
    );

    let open = TrustPolicy {
        keys: vec![],
        allow_unsigned: true,
    };
    let ok = resolver
        .resolve(&source, &open, None, false, &NoProgress)
        .await
        .unwrap();
    assert_eq!(ok.entry.signer, None);
    assert_eq!(ok.bytes, filter_wasm());
    assert_eq!(files_under(fresh.path()).len(), 1);
}

#[tokio::test]
async fn unreachable_and_unauthorized_registries() {
    let reg = TestRegistry::start();
    let trust = TrustPolicy {
        keys: vec![],
        allow_unsigned: true,
    };
    let cache = tempfile::tempdir().unwrap();

    // Nothing listens on this port.
    let closed = free_port();
    let client = Registry::new(barbacane_registry::Options {
        docker_config: barbacane_registry::DockerConfig::Disabled,
        cache: Some(barbacane_registry::Cache::new(cache.path())),
        ..Default::default()
    });
    let e = client
        .resolve(
            &format!("oci://127.0.0.1:{closed}/filters/x:1"),
            &trust,
            None,
            false,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");

    // Wrong password.
    let mut options = reg.options(cache.path());
    options
        .credentials
        .insert(reg.host(), Credentials::basic("testuser", "wrong"));
    let e = Registry::new(options)
        .resolve(
            &reg.oci("filters/headers:1"),
            &trust,
            None,
            false,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(e.hint().contains("docker login"));

    // No credentials at all.
    let e = client
        .resolve(
            &reg.oci("filters/headers:1"),
            &trust,
            None,
            false,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");

    // Credentials from a Docker config file.
    let docker = tempfile::tempdir().unwrap();
    let cfg = docker.path().join("config.json");
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("testuser:testpass");
    std::fs::write(
        &cfg,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let from_docker = Registry::new(barbacane_registry::Options {
        docker_config: barbacane_registry::DockerConfig::File(cfg),
        cache: Some(barbacane_registry::Cache::new(cache.path())),
        ..Default::default()
    });
    let r = PluginRef::parse(&reg.oci("filters/headers:1")).unwrap();
    from_docker
        .push(&filter_wasm(), &r, None, &NoProgress)
        .await
        .unwrap();
    // A tag that does not exist.
    let e = from_docker
        .resolve(
            &reg.oci("filters/headers:nope"),
            &trust,
            None,
            false,
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // A garbage source.
    let e = from_docker
        .resolve("oci://not a ref", &trust, None, false, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadReference, "{e}");
    // Plain HTTP is not used for a non-loopback host unless it is listed as insecure.
    assert!(
        !PluginRef::parse("oci://registry.internal:5000/a:1")
            .unwrap()
            .plain_http(&[])
    );
}

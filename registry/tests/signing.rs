//! cosign-compatible signing against a real registry: keygen → sign → verify, untrusted keys,
//! unsigned digests, a tag moved after signing, several signers merged into one `.sig`, and
//! signature manifests altered by hand.

#![allow(clippy::unwrap_used)]

mod common;

use barbacane_registry::{ErrorKind, NoProgress, PluginRef, Registry, keygen};
use common::{TestRegistry, filter_wasm, filter_wasm_variant};

const SIG_MT: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const OCI_MT: &str = "application/vnd.oci.image.manifest.v1+json";

async fn pushed(reg: &TestRegistry, client: &Registry, tag: &str) -> (PluginRef, String) {
    let r = PluginRef::parse(&reg.oci(&format!("filters/headers:{tag}"))).unwrap();
    let p = client
        .push(&filter_wasm(), &r, None, &NoProgress)
        .await
        .unwrap();
    (r, p.manifest_digest)
}

#[tokio::test]
async fn sign_then_verify_and_refusals() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    let (r, digest) = pushed(&reg, &client, "1").await;
    let alice = keygen(b"alice-pw").unwrap();
    let mallory = keygen(b"m").unwrap();

    // Unsigned first.
    let e = client
        .verify(&r, std::slice::from_ref(&alice.public_pem))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsigned, "{e}");

    // Wrong password.
    let e = client
        .sign(&r, alice.private_pem.as_bytes(), b"nope")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadKey, "{e}");

    let signed = client
        .sign(&r, alice.private_pem.as_bytes(), b"alice-pw")
        .await
        .unwrap();
    assert_eq!(signed.manifest_digest, digest);
    assert!(signed.added);
    assert_eq!(signed.key_fingerprint, alice.fingerprint);
    assert_eq!(
        signed.signature_ref.tag(),
        Some(format!("sha256-{}.sig", &digest[7..]).as_str())
    );

    // A fresh client (no shared state) verifies by tag and by digest.
    let fresh = tempfile::tempdir().unwrap();
    let verifier = reg.client(fresh.path());
    let v = verifier
        .verify(&r, std::slice::from_ref(&alice.public_pem))
        .await
        .unwrap();
    assert_eq!(v.manifest_digest, digest);
    assert_eq!(v.key_fingerprint, alice.fingerprint);
    let v = verifier
        .verify(
            &r.with_digest(&digest),
            &[mallory.public_pem.clone(), alice.public_pem.clone()],
        )
        .await
        .unwrap();
    assert_eq!(v.key_fingerprint, alice.fingerprint);

    // Another key only: signed, but untrusted.
    let e = verifier
        .verify(&r, std::slice::from_ref(&mallory.public_pem))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UntrustedKey, "{e}");

    // The signature layer is the documented cosign shape.
    let sig: serde_json::Value = serde_json::from_slice(
        &reg.manifest("filters/headers", &format!("sha256-{}.sig", &digest[7..])),
    )
    .unwrap();
    assert_eq!(sig["mediaType"], OCI_MT);
    assert_eq!(
        sig["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(sig["layers"][0]["mediaType"], SIG_MT);
    assert!(sig["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"].is_string());
}

#[tokio::test]
async fn a_tag_moved_after_signing_is_unsigned() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    let (r, old) = pushed(&reg, &client, "1").await;
    let alice = keygen(b"pw").unwrap();
    client
        .sign(&r, alice.private_pem.as_bytes(), b"pw")
        .await
        .unwrap();

    let moved = client
        .push(&filter_wasm_variant("evil"), &r, None, &NoProgress)
        .await
        .unwrap();
    assert_ne!(moved.manifest_digest, old);
    let e = client
        .verify(&r, std::slice::from_ref(&alice.public_pem))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsigned, "{e}");
    assert!(e.to_string().contains(&moved.manifest_digest), "{e}");
    // The old digest still verifies.
    client
        .verify(
            &r.with_digest(&old),
            std::slice::from_ref(&alice.public_pem),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn two_signers_are_merged_not_overwritten() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    let (r, digest) = pushed(&reg, &client, "1").await;
    let alice = keygen(b"a").unwrap();
    let bob = keygen(b"b").unwrap();
    let s1 = client
        .sign(&r, alice.private_pem.as_bytes(), b"a")
        .await
        .unwrap();
    let s2 = client
        .sign(&r, bob.private_pem.as_bytes(), b"b")
        .await
        .unwrap();
    assert_eq!((s1.signatures, s2.signatures), (1, 2));
    // Signing again with the same key adds nothing.
    let s3 = client
        .sign(&r, alice.private_pem.as_bytes(), b"a")
        .await
        .unwrap();
    assert!(!s3.added);
    assert_eq!(s3.signatures, 2);
    let sig: serde_json::Value = serde_json::from_slice(
        &reg.manifest("filters/headers", &format!("sha256-{}.sig", &digest[7..])),
    )
    .unwrap();
    assert_eq!(sig["layers"].as_array().unwrap().len(), 2);

    for (pair, name) in [(&alice, "alice"), (&bob, "bob")] {
        let v = client
            .verify(&r, std::slice::from_ref(&pair.public_pem))
            .await
            .unwrap();
        assert_eq!(v.key_fingerprint, pair.fingerprint, "{name}");
    }
}

/// Rewrites the `.sig` manifest of `digest` with `edit` applied to its first layer (and its
/// payload when `payload` is given).
fn tamper(
    reg: &TestRegistry,
    digest: &str,
    payload: Option<&dyn Fn(&str) -> String>,
    edit: &dyn Fn(&mut serde_json::Value),
) {
    let tag = format!("sha256-{}.sig", &digest[7..]);
    let mut m: serde_json::Value =
        serde_json::from_slice(&reg.manifest("filters/headers", &tag)).unwrap();
    if let Some(f) = payload {
        let layer_digest = m["layers"][0]["digest"].as_str().unwrap().to_string();
        let blob = reg
            .http(
                "GET",
                &format!("/v2/filters/headers/blobs/{layer_digest}"),
                &[],
                b"",
            )
            .body;
        let new = f(std::str::from_utf8(&blob).unwrap());
        let d = reg.put_blob("filters/headers", new.as_bytes());
        m["layers"][0]["digest"] = d.into();
        m["layers"][0]["size"] = new.len().into();
    }
    edit(&mut m["layers"][0]);
    assert_eq!(
        reg.put_manifest(
            "filters/headers",
            &tag,
            OCI_MT,
            &serde_json::to_vec(&m).unwrap()
        ),
        201
    );
}

#[tokio::test]
async fn altered_signatures_are_refused() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    let alice = keygen(b"a").unwrap();
    let keys = std::slice::from_ref(&alice.public_pem);

    // 1. The payload names another digest (signature kept): tampered.
    let (r, digest) = pushed(&reg, &client, "1").await;
    client
        .sign(&r, alice.private_pem.as_bytes(), b"a")
        .await
        .unwrap();
    let other = format!("sha256:{}", "e".repeat(64));
    tamper(
        &reg,
        &digest,
        Some(&|p: &str| p.replace(&digest, &other)),
        &|_| {},
    );
    let e = client.verify(&r, keys).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tampered, "{e}");
    assert!(e.to_string().contains("changed after signing"), "{e}");

    // 2. The payload is otherwise altered (same digest, extra claim): no trusted signature.
    let r2 = PluginRef::parse(&reg.oci("filters/headers:2")).unwrap();
    let d2 = client
        .push(&filter_wasm_variant("two"), &r2, None, &NoProgress)
        .await
        .unwrap()
        .manifest_digest;
    client
        .sign(&r2, alice.private_pem.as_bytes(), b"a")
        .await
        .unwrap();
    tamper(
        &reg,
        &d2,
        Some(&|p: &str| p.replace("\"optional\":null", "\"optional\":{\"evil\":\"1\"}")),
        &|_| {},
    );
    let e = client.verify(&r2, keys).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UntrustedKey, "{e}");

    // 3. The signature annotation is replaced with another well-formed signature.
    let r3 = PluginRef::parse(&reg.oci("filters/headers:3")).unwrap();
    let d3 = client
        .push(&filter_wasm_variant("three"), &r3, None, &NoProgress)
        .await
        .unwrap()
        .manifest_digest;
    client
        .sign(&r3, alice.private_pem.as_bytes(), b"a")
        .await
        .unwrap();
    tamper(&reg, &d3, None, &|layer| {
        let sig = layer["annotations"]["dev.cosignproject.cosign/signature"]
            .as_str()
            .unwrap()
            .to_string();
        // Flip one character inside the base64 body.
        let mut chars: Vec<char> = sig.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        layer["annotations"]["dev.cosignproject.cosign/signature"] =
            chars.into_iter().collect::<String>().into();
    });
    let e = client.verify(&r3, keys).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UntrustedKey, "{e}");

    // 4. The layer descriptor lies about the blob size: tampered.
    let r4 = PluginRef::parse(&reg.oci("filters/headers:4")).unwrap();
    let d4 = client
        .push(&filter_wasm_variant("four"), &r4, None, &NoProgress)
        .await
        .unwrap()
        .manifest_digest;
    client
        .sign(&r4, alice.private_pem.as_bytes(), b"a")
        .await
        .unwrap();
    tamper(&reg, &d4, None, &|layer| {
        let size = layer["size"].as_u64().unwrap();
        layer["size"] = (size - 1).into();
    });
    let e = client.verify(&r4, keys).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tampered, "{e}");

    // 5. A .sig manifest with no signature layers: unsigned.
    let r5 = PluginRef::parse(&reg.oci("filters/headers:5")).unwrap();
    let d5 = client
        .push(&filter_wasm_variant("five"), &r5, None, &NoProgress)
        .await
        .unwrap()
        .manifest_digest;
    client
        .sign(&r5, alice.private_pem.as_bytes(), b"a")
        .await
        .unwrap();
    tamper(&reg, &d5, None, &|layer| {
        layer["mediaType"] = "application/octet-stream".into();
    });
    let e = client.verify(&r5, keys).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsigned, "{e}");
}

//! cosign-compatible, key-based, offline signatures ("simple signing"; no Fulcio, Rekor or TUF).
//!
//! * Keys: ECDSA P-256 (cosign's default). [`keygen`] writes the private key as
//!   `ENCRYPTED SIGSTORE PRIVATE KEY` (scrypt + NaCl secretbox, what cosign ≥ 2 and sigstore-rs
//!   write; `ENCRYPTED COSIGN PRIVATE KEY` and unencrypted PKCS#8 `PRIVATE KEY` are read too) and
//!   the public key as SPKI `PUBLIC KEY`. A key's fingerprint is the hex sha256 of its SPKI DER.
//! * Location: tag `sha256-<hex>.sig` in the plugin's repository, where `sha256:<hex>` is the
//!   signed manifest digest; an OCI manifest with config `{}` and one layer per signature.
//! * Layer: `application/vnd.dev.cosign.simplesigning.v1+json`, blob = the payload
//!   `{"critical":{"identity":{"docker-reference":…},"image":{"docker-manifest-digest":…},"type":"cosign container image signature"},"optional":null}`,
//!   annotation `dev.cosignproject.cosign/signature` = base64 of the ASN.1 DER ECDSA-SHA256
//!   signature over the exact blob bytes.
//! * [`Registry::sign`] merges: existing signature layers are kept and the new one appended
//!   (unless this key already signed that digest). Concurrent signers can still race.
//! * [`Registry::verify`] requires one layer whose blob matches its descriptor, whose payload
//!   names the resolved digest, and whose signature verifies with one trusted key, all on the
//!   same layer. Failures are told apart: no signature ([`Error::Unsigned`]), signatures that no
//!   trusted key verifies ([`Error::UntrustedKey`]), and a payload naming another digest or a
//!   layer that does not match its descriptor ([`Error::Tampered`]).

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};

use crate::client::{Conn, Registry};
use crate::error::{Error, Result};
use crate::layout::{DOCKER_MANIFEST, Descriptor, Manifest, OCI_MANIFEST};
use crate::module::{hex, sha256_digest};
use crate::progress::NoProgress;
use crate::reference::PluginRef;

/// Layer media type of a simple-signing signature.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload's `critical.type`.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// Config media type of the signature manifest.
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// A generated key pair, PEM-encoded.
#[derive(Clone)]
pub struct KeyPair {
    /// `ENCRYPTED SIGSTORE PRIVATE KEY` PEM (cosign.key).
    pub private_pem: String,
    /// `PUBLIC KEY` PEM (cosign.pub).
    pub public_pem: String,
    /// Hex sha256 of the public key's SPKI DER.
    pub fingerprint: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_pem", &self.public_pem)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// What [`Registry::sign`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The signed manifest digest.
    pub manifest_digest: String,
    /// The signature reference (`…:sha256-<hex>.sig`).
    pub signature_ref: PluginRef,
    /// Fingerprint of the signing key.
    pub key_fingerprint: String,
    /// Signature layers now in the signature manifest.
    pub signatures: usize,
    /// False when this key had already signed the digest (nothing was pushed).
    pub added: bool,
}

/// What [`Registry::verify`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The reference, pinned to the verified digest.
    pub reference: PluginRef,
    /// The verified manifest digest.
    pub manifest_digest: String,
    /// Fingerprint (hex sha256 of SPKI DER) of the trusted key that verified it.
    pub key_fingerprint: String,
}

/// Generates an ECDSA P-256 key pair; the private key is encrypted with `password`.
pub fn keygen(password: &[u8]) -> Result<KeyPair> {
    let bad = |e: sigstore::errors::SigstoreError| Error::BadKey {
        reason: e.to_string(),
    };
    let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .map_err(bad)?;
    let pair = signer.to_sigstore_keypair().map_err(bad)?;
    let private_pem = pair
        .private_key_to_encrypted_pem(password)
        .map_err(bad)?
        .to_string();
    let public_pem = pair.public_key_to_pem().map_err(bad)?;
    let fingerprint = key_fingerprint(&public_pem)?;
    Ok(KeyPair {
        private_pem,
        public_pem,
        fingerprint,
    })
}

/// Hex sha256 of the SPKI DER inside a `PUBLIC KEY` PEM.
pub fn key_fingerprint(public_pem: &str) -> Result<String> {
    let parsed = pem::parse(public_pem.trim()).map_err(|e| Error::BadKey {
        reason: format!("not a PEM public key: {e}"),
    })?;
    if parsed.tag() != "PUBLIC KEY" {
        return Err(Error::BadKey {
            reason: format!("expected a `PUBLIC KEY` PEM, found `{}`", parsed.tag()),
        });
    }
    Ok(hex(&Sha256::digest(parsed.contents())))
}

/// The signature tag for a manifest digest: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The simple-signing payload for `digest` in repository `docker_reference`.
pub fn payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    let value = json!({
        "critical": {
            "identity": { "docker-reference": docker_reference },
            "image": { "docker-manifest-digest": digest },
            "type": SIGNATURE_TYPE,
        },
        "optional": null,
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

struct TrustedKey {
    key: CosignVerificationKey,
    fingerprint: String,
}

fn trusted_keys(pems: &[String]) -> Result<Vec<TrustedKey>> {
    pems.iter()
        .map(|pem| {
            let key = CosignVerificationKey::try_from_pem(pem.trim().as_bytes()).map_err(|e| {
                Error::BadKey {
                    reason: format!("cannot read trusted public key: {e}"),
                }
            })?;
            Ok(TrustedKey {
                key,
                fingerprint: key_fingerprint(pem)?,
            })
        })
        .collect()
}

fn load_private_key(pem: &[u8], password: &[u8]) -> Result<(SigStoreKeyPair, String)> {
    let text = String::from_utf8_lossy(pem);
    let pair = if text.contains("BEGIN PRIVATE KEY") && password.is_empty() {
        SigStoreKeyPair::from_pem(pem)
    } else {
        SigStoreKeyPair::from_encrypted_pem(pem, password)
    }
    .map_err(|e| Error::BadKey {
        reason: format!("cannot read the private key (wrong password?): {e}"),
    })?;
    let public_pem = pair.public_key_to_pem().map_err(|e| Error::BadKey {
        reason: e.to_string(),
    })?;
    Ok((pair, public_pem))
}

/// Decrypts `private_key_pem` with `password` and returns its public key's fingerprint: lets a
/// caller refuse a wrong password before doing anything else (e.g. before a push it will sign).
pub fn check_private_key(private_key_pem: &[u8], password: &[u8]) -> Result<String> {
    let (_, public_pem) = load_private_key(private_key_pem, password)?;
    key_fingerprint(&public_pem)
}

impl Registry {
    /// Signs the manifest `reference` resolves to with `private_key_pem` (decrypted with
    /// `password`), adding a layer to its `sha256-<hex>.sig` manifest.
    pub async fn sign(
        &self,
        reference: &PluginRef,
        private_key_pem: &[u8],
        password: &[u8],
    ) -> Result<Signed> {
        let (pair, public_pem) = load_private_key(private_key_pem, password)?;
        let signer = [
            SigningScheme::ECDSA_P256_SHA256_ASN1,
            SigningScheme::ECDSA_P384_SHA384_ASN1,
            SigningScheme::ED25519,
        ]
        .iter()
        .find_map(|s| pair.to_sigstore_signer(s).ok())
        .ok_or_else(|| Error::BadKey {
            reason: "unsupported key type (use ECDSA P-256, P-384 or Ed25519)".to_string(),
        })?;
        let verifier = signer.to_verification_key().map_err(|e| Error::BadKey {
            reason: e.to_string(),
        })?;
        let fingerprint = key_fingerprint(&public_pem)?;

        let conn = self.conn(reference).await?;
        let digest = self.resolve_digest(reference).await?;
        let body = payload(&reference.repository_ref(), &digest);
        let signature = signer.sign(&body).map_err(|e| Error::BadKey {
            reason: format!("signing failed: {e}"),
        })?;
        let signature_b64 = base64::engine::general_purpose::STANDARD.encode(signature);
        let sig_ref = reference.with_tag(&signature_tag(&digest));

        let mut layers = match self.fetch_signature_manifest(&conn, &sig_ref).await? {
            Some((m, _)) => m.layers,
            None => Vec::new(),
        };
        // Already signed by this key for this digest? Then there is nothing to add.
        for layer in &layers {
            if layer.media_type != SIMPLE_SIGNING {
                continue;
            }
            let Some(sig) = layer
                .annotations
                .as_ref()
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
            else {
                continue;
            };
            let Ok(blob) = self
                .fetch_blob(
                    &conn,
                    &sig_ref,
                    layer,
                    self.options.limits.max_signature_bytes,
                    "signature",
                    &NoProgress,
                )
                .await
            else {
                continue;
            };
            if verifier
                .verify_signature(Signature::Base64Encoded(sig.as_bytes()), &blob)
                .is_ok()
                && payload_digest(&blob).as_deref() == Some(digest.as_str())
            {
                return Ok(Signed {
                    manifest_digest: digest,
                    signature_ref: sig_ref,
                    key_fingerprint: fingerprint,
                    signatures: layers.len(),
                    added: false,
                });
            }
        }

        layers.push(Descriptor {
            media_type: SIMPLE_SIGNING.to_string(),
            digest: sha256_digest(&body),
            size: body.len() as u64,
            annotations: Some(BTreeMap::from([(
                SIGNATURE_ANNOTATION.to_string(),
                signature_b64,
            )])),
        });
        let config = b"{}".to_vec();
        self.push_blob(&conn, &sig_ref, &body, "signature", &NoProgress)
            .await?;
        self.push_blob(&conn, &sig_ref, &config, "config", &NoProgress)
            .await?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_string()),
            artifact_type: None,
            config: Descriptor {
                media_type: CONFIG_MEDIA_TYPE.to_string(),
                digest: sha256_digest(&config),
                size: config.len() as u64,
                annotations: None,
            },
            layers,
            subject: None,
            annotations: None,
        };
        let signatures = manifest.layers.len();
        let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Registry {
            registry: conn.registry.clone(),
            detail: e.to_string(),
        })?;
        self.push_manifest(&conn, &sig_ref, bytes, OCI_MANIFEST)
            .await?;
        Ok(Signed {
            manifest_digest: digest,
            signature_ref: sig_ref,
            key_fingerprint: fingerprint,
            signatures,
            added: true,
        })
    }

    /// Verifies that the manifest `reference` resolves to is signed by one of `trusted_keys`
    /// (`PUBLIC KEY` PEMs).
    pub async fn verify(&self, reference: &PluginRef, trusted_keys: &[String]) -> Result<Verified> {
        let conn = self.conn(reference).await?;
        let digest = self.resolve_digest(reference).await?;
        self.verify_digest(&conn, reference, &digest, trusted_keys)
            .await
    }

    async fn fetch_signature_manifest(
        &self,
        conn: &Conn,
        sig_ref: &PluginRef,
    ) -> Result<Option<(Manifest, String)>> {
        match self
            .fetch_manifest(conn, sig_ref, &[OCI_MANIFEST, DOCKER_MANIFEST])
            .await
        {
            Ok((bytes, digest)) => {
                let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Tampered {
                    reference: sig_ref.to_string(),
                    what: format!("the signature manifest is malformed: {e}"),
                })?;
                Ok(Some((m, digest)))
            }
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Verifies the signatures of manifest `digest` in `reference`'s repository.
    pub(crate) async fn verify_digest(
        &self,
        conn: &Conn,
        reference: &PluginRef,
        digest: &str,
        trusted: &[String],
    ) -> Result<Verified> {
        let keys = trusted_keys(trusted)?;
        if keys.is_empty() {
            return Err(Error::BadKey {
                reason: "no trusted public keys: add keys to `trust.keys`, or set `trust.allow_unsigned: true`".to_string(),
            });
        }
        let shown = reference.with_digest(digest).to_string();
        let sig_ref = reference.with_tag(&signature_tag(digest));
        let unsigned = || Error::Unsigned {
            reference: reference.to_string(),
            digest: digest.to_string(),
        };
        let Some((manifest, _)) = self.fetch_signature_manifest(conn, &sig_ref).await? else {
            return Err(unsigned());
        };
        let layers: Vec<&Descriptor> = manifest
            .layers
            .iter()
            .filter(|l| l.media_type == SIMPLE_SIGNING)
            .filter(|l| {
                l.annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(SIGNATURE_ANNOTATION))
            })
            .collect();
        if layers.is_empty() {
            return Err(unsigned());
        }
        let mut tampered: Option<String> = None;
        for layer in &layers {
            let blob = match self
                .fetch_blob(
                    conn,
                    &sig_ref,
                    layer,
                    self.options.limits.max_signature_bytes,
                    "signature payload",
                    &NoProgress,
                )
                .await
            {
                Ok(b) => b,
                Err(Error::Tampered { what, .. }) => {
                    tampered.get_or_insert(what);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(payload_digest) = payload_digest(&blob) else {
                tampered.get_or_insert("a signature payload is malformed".to_string());
                continue;
            };
            if payload_digest != digest {
                tampered.get_or_insert(format!(
                    "a signature payload names {payload_digest}, but the manifest is {digest}: it changed after signing, or the signature was moved"
                ));
                continue;
            }
            let sig = layer
                .annotations
                .as_ref()
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                .map(String::as_str)
                .unwrap_or_default();
            for key in &keys {
                if key
                    .key
                    .verify_signature(Signature::Base64Encoded(sig.as_bytes()), &blob)
                    .is_ok()
                {
                    return Ok(Verified {
                        reference: reference.with_digest(digest),
                        manifest_digest: digest.to_string(),
                        key_fingerprint: key.fingerprint.clone(),
                    });
                }
            }
        }
        if let Some(what) = tampered {
            return Err(Error::Tampered {
                reference: shown,
                what,
            });
        }
        Err(Error::UntrustedKey {
            reference: reference.to_string(),
            digest: digest.to_string(),
            signatures: layers.len(),
        })
    }
}

/// The `docker-manifest-digest` of a well-formed payload of the cosign type.
fn payload_digest(blob: &[u8]) -> Option<String> {
    let p: Payload = serde_json::from_slice(blob).ok()?;
    (p.critical.kind == SIGNATURE_TYPE).then_some(p.critical.image.docker_manifest_digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_sign_and_verify_locally() {
        let pair = keygen(b"pw").unwrap();
        assert!(pair.private_pem.contains("ENCRYPTED SIGSTORE PRIVATE KEY"));
        assert!(pair.public_pem.contains("BEGIN PUBLIC KEY"));
        assert_eq!(pair.fingerprint.len(), 64);
        assert!(load_private_key(pair.private_pem.as_bytes(), b"wrong").is_err());
        let (loaded, public) = load_private_key(pair.private_pem.as_bytes(), b"pw").unwrap();
        assert_eq!(public, pair.public_pem);
        let signer = loaded
            .to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1)
            .unwrap();
        let body = payload("h/r", "sha256:00");
        let sig = base64::engine::general_purpose::STANDARD.encode(signer.sign(&body).unwrap());
        let keys = trusted_keys(std::slice::from_ref(&pair.public_pem)).unwrap();
        assert!(
            keys[0]
                .key
                .verify_signature(Signature::Base64Encoded(sig.as_bytes()), &body)
                .is_ok()
        );
        assert_eq!(payload_digest(&body).as_deref(), Some("sha256:00"));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"h/r"},"image":{"docker-manifest-digest":"sha256:00"},"type":"cosign container image signature"},"optional":null}"#
        );
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
    }
}

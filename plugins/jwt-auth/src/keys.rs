//! Verification keys: the JWS algorithms (RFC 7518), the key material each needs, where it comes
//! from (an HMAC secret, a PEM public key, a JWK) and the signature check itself.
//!
//! A key is bound to its algorithm family by its type — an RSA key only ever verifies `RS*`/`PS*`
//! signatures, an HMAC secret only `HS*` — and, when the key names one, to a single algorithm.
//! That binding is what defeats algorithm confusion: an `HS256` token is never checked with the
//! bytes of an RSA public key, because public keys are never HMAC secrets here.

use base64::Engine;
use hmac::Mac;
use rsa::pkcs1::der::Decode;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The smallest RSA modulus accepted (RFC 7518 §3.3: 2048 bits or larger).
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted: verification cost grows with it.
const MAX_RSA_BITS: usize = 16384;
/// The most keys a JWKS may hold; the rest are ignored.
pub const MAX_JWKS_KEYS: usize = 100;

/// A JWS signature algorithm (the token header's `alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256 (salt of 32 bytes).
    Ps256,
    /// RSASSA-PSS with SHA-384 (salt of 48 bytes).
    Ps384,
    /// RSASSA-PSS with SHA-512 (salt of 64 bytes).
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// EdDSA (Ed25519).
    EdDsa,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 12] = [
        Alg::Hs256,
        Alg::Hs384,
        Alg::Hs512,
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Ps384,
        Alg::Ps512,
        Alg::Es256,
        Alg::Es384,
        Alg::EdDsa,
    ];

    /// The `alg` name (case-sensitive, as RFC 7518 registers it).
    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// The algorithm named `name`; `None` for `none` and anything unsupported.
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The smallest HMAC secret for this algorithm (RFC 7518 §3.2: the hash's size); 0 for
    /// the others.
    pub fn min_secret_len(self) -> usize {
        match self {
            Alg::Hs256 => 32,
            Alg::Hs384 => 48,
            Alg::Hs512 => 64,
            _ => 0,
        }
    }
}

/// The public key (or shared secret) material.
#[derive(Clone)]
pub enum Material {
    /// An HMAC secret.
    Hmac(Vec<u8>),
    /// An RSA public key.
    Rsa(rsa::RsaPublicKey),
    /// A P-256 public key.
    P256(p256::ecdsa::VerifyingKey),
    /// A P-384 public key.
    P384(p384::ecdsa::VerifyingKey),
    /// An Ed25519 public key.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl std::fmt::Debug for Material {
    // Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.type_name())
    }
}

impl Material {
    /// What kind of key this is, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Material::Hmac(_) => "HMAC secret",
            Material::Rsa(_) => "RSA key",
            Material::P256(_) => "P-256 key",
            Material::P384(_) => "P-384 key",
            Material::Ed25519(_) => "Ed25519 key",
        }
    }

    /// Whether this material can verify `alg` at all (its family).
    pub fn supports(&self, alg: Alg) -> bool {
        use Alg::*;
        match self {
            Material::Hmac(_) => matches!(alg, Hs256 | Hs384 | Hs512),
            Material::Rsa(_) => matches!(alg, Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512),
            Material::P256(_) => alg == Es256,
            Material::P384(_) => alg == Es384,
            Material::Ed25519(_) => alg == EdDsa,
        }
    }
}

/// A verification key.
#[derive(Debug, Clone)]
pub struct Key {
    /// Its key id; a key without one is a candidate for any token of its algorithm.
    pub kid: Option<String>,
    /// The one algorithm it is for, when known (inline keys always, JWKs when they say `alg`).
    pub alg: Option<Alg>,
    /// The material.
    pub material: Material,
}

impl Key {
    /// Whether this key may verify a token signed with `alg`: the right type, the key's own
    /// algorithm if it names one, and for HMAC a secret at least as long as the hash (a 32-byte
    /// `oct` JWK without `alg` verifies HS256, not HS512).
    pub fn accepts(&self, alg: Alg) -> bool {
        let long_enough = match &self.material {
            Material::Hmac(secret) => secret.len() >= alg.min_secret_len(),
            _ => true,
        };
        self.material.supports(alg) && self.alg.is_none_or(|a| a == alg) && long_enough
    }

    /// Checks `signature` over `message` for `alg`. False for a wrong signature, a signature of
    /// the wrong shape, or an algorithm this key is not for.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        if !self.accepts(alg) {
            return false;
        }
        match (&self.material, alg) {
            (Material::Hmac(secret), Alg::Hs256) => {
                hmac_ok::<hmac::Hmac<Sha256>>(secret, message, signature)
            }
            (Material::Hmac(secret), Alg::Hs384) => {
                hmac_ok::<hmac::Hmac<Sha384>>(secret, message, signature)
            }
            (Material::Hmac(secret), Alg::Hs512) => {
                hmac_ok::<hmac::Hmac<Sha512>>(secret, message, signature)
            }
            (Material::Rsa(key), Alg::Rs256) => {
                let scheme = rsa::Pkcs1v15Sign::new::<Sha256>();
                key.verify(scheme, &Sha256::digest(message), signature)
                    .is_ok()
            }
            (Material::Rsa(key), Alg::Rs384) => {
                let scheme = rsa::Pkcs1v15Sign::new::<Sha384>();
                key.verify(scheme, &Sha384::digest(message), signature)
                    .is_ok()
            }
            (Material::Rsa(key), Alg::Rs512) => {
                let scheme = rsa::Pkcs1v15Sign::new::<Sha512>();
                key.verify(scheme, &Sha512::digest(message), signature)
                    .is_ok()
            }
            // `Pss::new` uses a salt as long as the hash, as RFC 7518 §3.5 requires.
            (Material::Rsa(key), Alg::Ps256) => key
                .verify(
                    rsa::Pss::new::<Sha256>(),
                    &Sha256::digest(message),
                    signature,
                )
                .is_ok(),
            (Material::Rsa(key), Alg::Ps384) => key
                .verify(
                    rsa::Pss::new::<Sha384>(),
                    &Sha384::digest(message),
                    signature,
                )
                .is_ok(),
            (Material::Rsa(key), Alg::Ps512) => key
                .verify(
                    rsa::Pss::new::<Sha512>(),
                    &Sha512::digest(message),
                    signature,
                )
                .is_ok(),
            // JWS ECDSA signatures are the raw `r || s` (RFC 7518 §3.4), not DER.
            (Material::P256(key), Alg::Es256) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| p256::ecdsa::signature::Verifier::verify(key, message, &s).is_ok()),
            (Material::P384(key), Alg::Es384) => p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| p384::ecdsa::signature::Verifier::verify(key, message, &s).is_ok()),
            (Material::Ed25519(key), Alg::EdDsa) => {
                ed25519_dalek::Signature::from_slice(signature).is_ok_and(|s| {
                    // Strict: no small-order keys, no malleable signatures.
                    key.verify_strict(message, &s).is_ok()
                })
            }
            _ => false,
        }
    }
}

/// HMAC check (`verify_slice` compares in constant time).
fn hmac_ok<M: Mac + hmac::digest::KeyInit>(
    secret: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(message);
    mac.verify_slice(signature).is_ok()
}

/// base64url, with or without padding (RFC 7515 forbids padding, some issuers add it anyway;
/// the signature covers the text as sent, so accepting it changes nothing).
pub fn base64url(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(text).ok()
}

/// Standard base64 (RFC 4648 §4), padding optional, whitespace ignored (secrets pasted from a
/// terminal or folded in YAML).
pub fn base64_standard(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    ENGINE.decode(compact).ok()
}

/// Parses a PEM public key: `PUBLIC KEY` (SubjectPublicKeyInfo: RSA, P-256, P-384, Ed25519) or
/// `RSA PUBLIC KEY` (PKCS#1). Lenient about layout (line breaks, indentation, CRLF), strict
/// about content.
pub fn parse_pem(pem: &str) -> Result<Material, String> {
    let begin = pem
        .find("-----BEGIN ")
        .ok_or("not a PEM document (no -----BEGIN line)")?;
    let rest = &pem[begin + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or("malformed PEM BEGIN line")?;
    let label = rest[..label_end].trim();
    let body = &rest[label_end + "-----".len()..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body
        .find(&end_marker)
        .ok_or_else(|| format!("no '{end_marker}' line"))?;
    let der = base64_standard(&body[..body_end]).ok_or("the PEM body is not valid base64")?;
    match label {
        "PUBLIC KEY" => parse_spki(&der),
        "RSA PUBLIC KEY" => parse_pkcs1(&der),
        "CERTIFICATE" => Err(String::from(
            "certificates are not supported: give the PUBLIC KEY (openssl x509 -pubkey -noout)",
        )),
        other if other.contains("PRIVATE") => Err(String::from(
            "this is a private key: give the PUBLIC KEY (openssl pkey -pubout)",
        )),
        other => Err(format!(
            "unsupported PEM type '{other}' (expected PUBLIC KEY or RSA PUBLIC KEY)"
        )),
    }
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";

/// A DER SubjectPublicKeyInfo.
fn parse_spki(der: &[u8]) -> Result<Material, String> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or("the public key bit string is not whole bytes")?;
    let oid = spki.algorithm.oid.to_string();
    match oid.as_str() {
        OID_RSA => parse_pkcs1(key),
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|_| "an EC key without its named curve")?
                .to_string();
            match curve.as_str() {
                OID_P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
                    .map(Material::P256)
                    .map_err(|_| String::from("not a valid P-256 point")),
                OID_P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(key)
                    .map(Material::P384)
                    .map_err(|_| String::from("not a valid P-384 point")),
                other => Err(format!(
                    "unsupported EC curve {other} (P-256 and P-384 are)"
                )),
            }
        }
        OID_ED25519 => ed25519(key),
        other => Err(format!("unsupported public key algorithm {other}")),
    }
}

/// A DER PKCS#1 RSAPublicKey.
fn parse_pkcs1(der: &[u8]) -> Result<Material, String> {
    let key = rsa::pkcs1::RsaPublicKey::from_der(der)
        .map_err(|e| format!("not an RSA public key: {e}"))?;
    rsa_key(key.modulus.as_bytes(), key.public_exponent.as_bytes())
}

/// An RSA key from its big-endian modulus and exponent, at least [`MIN_RSA_BITS`].
fn rsa_key(n: &[u8], e: &[u8]) -> Result<Material, String> {
    let n = rsa::BigUint::from_bytes_be(n);
    let bits = n.bits();
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    rsa::RsaPublicKey::new_with_max_size(n, rsa::BigUint::from_bytes_be(e), MAX_RSA_BITS)
        .map(Material::Rsa)
        .map_err(|e| format!("not a valid RSA public key: {e}"))
}

fn ed25519(key: &[u8]) -> Result<Material, String> {
    let bytes: &[u8; 32] = key.try_into().map_err(|_| "an Ed25519 key is 32 bytes")?;
    ed25519_dalek::VerifyingKey::from_bytes(bytes)
        .map(Material::Ed25519)
        .map_err(|_| String::from("not a valid Ed25519 key"))
}

/// Parses one JWK (RFC 7517) into a key. `Ok(None)`: a well-formed key that is not for
/// signature verification (`use: enc`, `key_ops` without `verify`), skipped.
pub fn parse_jwk(jwk: &Value) -> Result<Option<Key>, String> {
    let Some(object) = jwk.as_object() else {
        return Err(String::from("a JWK is a JSON object"));
    };
    let text = |name: &str| -> Result<Option<&str>, String> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("'{name}' is not a string")),
        }
    };
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let value = text(name)?.ok_or_else(|| format!("'{name}' is missing"))?;
        base64url(value).ok_or_else(|| format!("'{name}' is not base64url"))
    };
    if text("use")?.is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = object.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Ok(None);
        }
    }
    let kid = text("kid")?.map(String::from);
    let alg = match text("alg")? {
        None => None,
        Some(name) => {
            Some(Alg::from_name(name).ok_or_else(|| format!("unsupported alg '{name}'"))?)
        }
    };
    let kty = text("kty")?.ok_or("'kty' is missing")?;
    let material = match kty {
        "RSA" => rsa_key(&bytes("n")?, &bytes("e")?)?,
        "EC" => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            let crv = text("crv")?.ok_or("'crv' is missing")?;
            let size = match crv {
                "P-256" => 32,
                "P-384" => 48,
                other => return Err(format!("unsupported curve '{other}'")),
            };
            if x.len() != size || y.len() != size {
                return Err(format!("{crv} coordinates are {size} bytes each"));
            }
            // The SEC1 uncompressed point: 0x04 || x || y.
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if crv == "P-256" {
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                    .map(Material::P256)
                    .map_err(|_| String::from("not a valid P-256 point"))?
            } else {
                p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                    .map(Material::P384)
                    .map_err(|_| String::from("not a valid P-384 point"))?
            }
        }
        "OKP" => match text("crv")? {
            Some("Ed25519") => ed25519(&bytes("x")?)?,
            Some(other) => return Err(format!("unsupported OKP curve '{other}'")),
            None => return Err(String::from("'crv' is missing")),
        },
        "oct" => {
            let secret = bytes("k")?;
            if let Some(alg) = alg
                && secret.len() < alg.min_secret_len()
            {
                return Err(format!(
                    "a {} secret needs at least {} bytes",
                    alg.name(),
                    alg.min_secret_len()
                ));
            }
            if secret.len() < Alg::Hs256.min_secret_len() {
                return Err(String::from("an HMAC secret needs at least 32 bytes"));
            }
            Material::Hmac(secret)
        }
        other => return Err(format!("unsupported kty '{other}'")),
    };
    if let Some(alg) = alg
        && !material.supports(alg)
    {
        return Err(format!(
            "alg {} does not go with a {}",
            alg.name(),
            material.type_name()
        ));
    }
    Ok(Some(Key { kid, alg, material }))
}

/// A parsed JWKS: its usable keys, and why the others were skipped (for the logs).
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    /// The keys that can verify signatures.
    pub keys: Vec<Key>,
    /// `(index, reason)` of each key skipped.
    pub skipped: Vec<(usize, String)>,
}

/// Parses a JWKS document (`{"keys": [...]}`). Keys that cannot be used are skipped, not fatal:
/// an identity provider may publish encryption keys or algorithms this plugin does not do.
pub fn parse_jwks(doc: &Value) -> Result<Jwks, String> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("a JWKS is an object with a 'keys' array")?;
    let mut jwks = Jwks::default();
    for (index, jwk) in keys.iter().enumerate() {
        if index >= MAX_JWKS_KEYS {
            jwks.skipped
                .push((index, format!("more than {MAX_JWKS_KEYS} keys")));
            continue;
        }
        match parse_jwk(jwk) {
            Ok(Some(key)) => jwks.keys.push(key),
            Ok(None) => jwks
                .skipped
                .push((index, String::from("not a signature key"))),
            Err(reason) => jwks.skipped.push((index, reason)),
        }
    }
    Ok(jwks)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use serde_json::json;

    const ED25519_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";

    #[test]
    fn algorithm_names() {
        for alg in Alg::ALL {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
        assert_eq!(Alg::from_name("none"), None);
        assert_eq!(Alg::from_name("hs256"), None);
        assert_eq!(Alg::from_name("ES512"), None);
    }

    #[test]
    fn pem_parsing_is_lenient_about_layout() {
        let material = parse_pem(ED25519_PEM).unwrap();
        assert!(matches!(material, Material::Ed25519(_)));
        let folded = "  -----BEGIN PUBLIC KEY-----\r\n  MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrB\r\n  Z9w7lshQhqowtrbLDFw4rXAxZuE=\r\n  -----END PUBLIC KEY-----";
        assert!(matches!(parse_pem(folded).unwrap(), Material::Ed25519(_)));
    }

    #[test]
    fn bad_pems_say_why() {
        assert!(parse_pem("hello").unwrap_err().contains("not a PEM"));
        assert!(
            parse_pem("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----")
                .unwrap_err()
                .contains("base64")
        );
        assert!(
            parse_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .unwrap_err()
                .contains("SubjectPublicKeyInfo")
        );
        assert!(
            parse_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .unwrap_err()
                .contains("private key")
        );
        assert!(
            parse_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n")
                .unwrap_err()
                .contains("-----END PUBLIC KEY-----")
        );
    }

    #[test]
    fn jwks_skip_what_they_cannot_use() {
        let doc = json!({"keys": [
            {"kty": "oct", "kid": "h", "alg": "HS256", "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32])},
            {"kty": "oct", "k": "c2hvcnQ"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "OKP", "crv": "Ed25519", "x": "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE", "alg": "EdDSA"},
            {"kty": "OKP", "crv": "Ed25519", "x": "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE", "alg": "RS256"},
            "nope",
            {"kty": "oct", "k": 3},
        ]});
        let jwks = parse_jwks(&doc).unwrap();
        assert_eq!(jwks.keys.len(), 2);
        assert_eq!(jwks.keys[0].kid.as_deref(), Some("h"));
        assert!(jwks.keys[1].accepts(Alg::EdDsa));
        let reasons: Vec<&str> = jwks.skipped.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "an HMAC secret needs at least 32 bytes",
                "not a signature key",
                "the RSA key has 17 bits; at least 2048 are required",
                "unsupported curve 'P-521'",
                "alg RS256 does not go with a Ed25519 key",
                "a JWK is a JSON object",
                "'k' is not a string",
            ]
        );
        assert!(parse_jwks(&json!({"nokeys": []})).is_err());
        assert!(parse_jwks(&json!([1])).is_err());
    }

    #[test]
    fn keys_only_verify_their_family() {
        let key = Key {
            kid: None,
            alg: None,
            material: Material::Hmac(vec![1; 32]),
        };
        assert!(key.accepts(Alg::Hs256));
        assert!(
            !key.accepts(Alg::Hs512),
            "a 32-byte secret is too short for HS512"
        );
        assert!(!key.accepts(Alg::Rs256));
        let bound = Key {
            alg: Some(Alg::Hs256),
            ..key.clone()
        };
        assert!(!bound.accepts(Alg::Hs384));
        // Garbage signatures are just wrong, never a panic.
        for alg in Alg::ALL {
            assert!(!key.verify(alg, b"a.b", &[]));
            assert!(!key.verify(alg, b"a.b", &[0; 600]));
        }
        let ed = Key {
            kid: None,
            alg: None,
            material: parse_pem(ED25519_PEM).unwrap(),
        };
        assert!(!ed.verify(Alg::EdDsa, b"a.b", &[0; 64]));
        assert!(!ed.verify(Alg::EdDsa, b"a.b", &[0; 63]));
    }
}

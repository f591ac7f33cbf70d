//! Password hashes: bcrypt (`$2y$`, `$2b$`, `$2a$`, as `htpasswd -B` writes them) and argon2
//! PHC strings (`$argon2id$`, `$argon2i$`), checked when the configuration is loaded so that a
//! request never meets a hash that cannot be verified, and bounded so that verifying one fits
//! in the gateway's per-VM memory and per-callback time. Both libraries compare the computed
//! hash with the stored one in constant time.

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordVerifier};
use std::str::FromStr;

/// The highest bcrypt cost accepted. Each step doubles the work, and a verification must finish
/// within the gateway's 1 s callback deadline with room to spare: measured in the Wasm VM on a
/// loaded 2-core machine, cost 10 took 0.07–0.13 s, 11 0.14–0.4 s, 12 up to 0.63 s.
pub const MAX_BCRYPT_COST: u32 = 11;

/// The most memory (KiB) an argon2 hash may ask for: a plugin VM has 64 MiB of linear memory
/// in all. OWASP's argon2id recommendation (19 MiB) fits.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 32 * 1024;

/// The most argon2 work (memory KiB × passes) accepted, for the same deadline as bcrypt's cost:
/// 0.11–0.32 s in the Wasm VM at this bound (OWASP's m=19 MiB, with t=4), measured likewise.
pub const MAX_ARGON2_WORK: u64 = 4 * 19 * 1024;

/// A checked password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hash {
    /// A bcrypt hash string.
    Bcrypt(String),
    /// An argon2 PHC string.
    Argon2(String),
}

impl Hash {
    /// Checks `text`: a supported scheme, well-formed, and within the bounds above.
    pub fn parse(text: &str) -> Result<Hash, String> {
        if ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p)) {
            check_bcrypt(text)?;
            Ok(Hash::Bcrypt(text.to_string()))
        } else if text.starts_with("$argon2id$") || text.starts_with("$argon2i$") {
            check_argon2(text)?;
            Ok(Hash::Argon2(text.to_string()))
        } else {
            Err(String::from(
                "not a supported hash: expected bcrypt ($2y$, $2b$, $2a$) or argon2 ($argon2id$, \
                 $argon2i$)",
            ))
        }
    }

    /// Whether `password` is the one hashed. A hash that fails to verify for any reason (which
    /// [`Hash::parse`] rules out) counts as a mismatch.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            // bcrypt reads at most 72 bytes of the password, as every implementation does.
            Hash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Hash::Argon2(hash) => match PasswordHash::new(hash) {
                Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
                Err(_) => false,
            },
        }
    }
}

fn check_bcrypt(text: &str) -> Result<(), String> {
    let parts =
        bcrypt::HashParts::from_str(text).map_err(|e| format!("not a valid bcrypt hash ({e})"))?;
    // `$2y$10$` + 22 characters of salt + 31 of hash, and nothing the parser would skip over.
    let cost = parts.get_cost();
    if text.len() != 60 || text.as_bytes().get(6) != Some(&b'$') {
        return Err(String::from(
            "not a valid bcrypt hash (expected 60 characters: $2y$NN$ then 53 of salt and hash)",
        ));
    }
    if !(4..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(format!(
            "bcrypt cost {cost} is outside 4..={MAX_BCRYPT_COST}: each verification must fit \
             in the gateway's 1 s callback deadline"
        ));
    }
    // The salt and hash must decode: verifying the same salt and hash at the cheapest cost
    // (a millisecond) proves it without paying the real cost at start-up.
    let cheap = format!("$2b$04${}", text.get(7..).unwrap_or_default());
    bcrypt::verify(b"", &cheap)
        .map(|_| ())
        .map_err(|e| format!("not a valid bcrypt hash ({e})"))
}

fn check_argon2(text: &str) -> Result<(), String> {
    let hash =
        PasswordHash::new(text).map_err(|e| format!("not a valid argon2 PHC string ({e})"))?;
    // `$argon2d$` never gets here (it is not for passwords): the prefix chose argon2id or i.
    Algorithm::try_from(hash.algorithm)
        .map_err(|e| format!("not a valid argon2 PHC string ({e})"))?;
    let params = Params::try_from(&hash).map_err(|e| format!("invalid argon2 parameters ({e})"))?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(String::from(
            "not a valid argon2 PHC string (no salt or no hash)",
        ));
    }
    if !params.keyid().is_empty() {
        return Err(String::from(
            "argon2 hashes with a secret key (keyid) are not supported",
        ));
    }
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB {
        return Err(format!(
            "argon2 memory m={} KiB is over {MAX_ARGON2_MEMORY_KIB} KiB: a plugin has 64 MiB of \
             memory in all",
            params.m_cost()
        ));
    }
    let work = u64::from(params.m_cost()) * u64::from(params.t_cost());
    if work > MAX_ARGON2_WORK {
        return Err(format!(
            "argon2 work m×t = {work} is over {MAX_ARGON2_WORK}: each verification must fit in \
             the gateway's 1 s callback deadline"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    /// `htpasswd -nbB -C 4 alice s3cret`.
    const BCRYPT: &str = "$2y$04$AkJV1JNt3QwwjU92aaQBT.lH04rmhsp5ZSO.sSIWgKMvAynU5xP8G";
    /// `printf %s s3cret | argon2 somesaltsalt -id -t 1 -m 10 -p 1 -e`.
    const ARGON2ID: &str = "$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHRzYWx0$cvQNjV7LhvzD0iB7dhUv/uFxIX1nVZSWk4kBOCXpQQQ";
    /// `printf %s s3cret | argon2 somesaltsalt -i -t 1 -m 10 -p 2 -e`.
    const ARGON2I: &str =
        "$argon2i$v=19$m=1024,t=1,p=2$c29tZXNhbHRzYWx0$fuyFzCAkmFrwD5081EPfzKTmgJdiY9mhkEpNnoaSun8";

    #[test]
    fn verifies_hashes_made_elsewhere() {
        for text in [BCRYPT, ARGON2ID, ARGON2I] {
            let hash = Hash::parse(text).unwrap();
            assert!(hash.verify(b"s3cret"), "{text}");
            assert!(!hash.verify(b"s3cret "), "{text}");
            assert!(!hash.verify(b""), "{text}");
            assert!(!hash.verify(&[0xff; 200]), "{text}");
        }
        // $2b$ and $2a$ spell the same hash for ASCII passwords.
        let b = BCRYPT.replacen("$2y$", "$2b$", 1);
        assert!(Hash::parse(&b).unwrap().verify(b"s3cret"));
    }

    #[test]
    fn refuses_what_it_cannot_verify() {
        for (text, reason) in [
            ("s3cret", "not a supported hash"),
            ("$1$abc$def", "not a supported hash"),
            (
                "$2x$04$AkJV1JNt3QwwjU92aaQBT.lH04rmhsp5ZSO.sSIWgKMvAynU5xP8G",
                "not a supported",
            ),
            ("$2y$04$short", "not a valid bcrypt hash"),
            (
                "$2y$4$AkJV1JNt3QwwjU92aaQBT.lH04rmhsp5ZSO.sSIWgKMvAynU5xP8G",
                "not a valid bcrypt",
            ),
            (
                "$2y$12$AkJV1JNt3QwwjU92aaQBT.lH04rmhsp5ZSO.sSIWgKMvAynU5xP8G",
                "bcrypt cost 12",
            ),
            (
                "$2y$03$AkJV1JNt3QwwjU92aaQBT.lH04rmhsp5ZSO.sSIWgKMvAynU5xP8G",
                "bcrypt cost 3",
            ),
            (
                "$2y$04$AkJV1JNt3QwwjU92aaQBT!lH04rmhsp5ZSO.sSIWgKMvAynU5xP8G",
                "not a valid bcrypt",
            ),
            (
                "$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHRzYWx0",
                "no salt or no hash",
            ),
            (
                "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzYWx0$cvQNjV7LhvzD0iB7dhUv/uFxIX1nVZSWk4kBOCXpQQQ",
                "memory",
            ),
            (
                "$argon2id$v=19$m=19456,t=5,p=1$c29tZXNhbHRzYWx0$cvQNjV7LhvzD0iB7dhUv/uFxIX1nVZSWk4kBOCXpQQQ",
                "work",
            ),
            (
                "$argon2id$v=19$m=1024,t=1,p=1,x=2$c29tZXNhbHRzYWx0$cvQNjV7LhvzD0iB7dhUv/uFxIX1nVZSWk4kBOCXpQQQ",
                "invalid argon2 parameters",
            ),
            (
                "$argon2d$v=19$m=1024,t=1,p=1$c29tZXNhbHRzYWx0$cvQNjV7LhvzD0iB7dhUv/uFxIX1nVZSWk4kBOCXpQQQ",
                "not a supported",
            ),
            (
                "$argon2id$v=19$m=1024,t=1,p=1$c29t!!$cvQN",
                "not a valid argon2",
            ),
        ] {
            let error = Hash::parse(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }
}

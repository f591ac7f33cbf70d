//! Reading Basic credentials (RFC 7617) out of `Authorization` header values, which are bytes
//! from the client: anything malformed is a refusal with a reason, never a panic.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Standard base64, with or without the trailing `=`s (some clients drop them).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A user-id and password as the client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user-id (before the first `:`).
    pub username: String,
    /// The password (after it; may contain `:`).
    pub password: String,
}

/// Why no credentials could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// No `Authorization` header, or one with another scheme.
    Missing,
    /// Several different `Authorization` headers.
    Several,
    /// `Basic` with nothing after it.
    Empty,
    /// Not base64.
    NotBase64,
    /// Decoded, but not UTF-8 (the challenge announces `charset="UTF-8"`).
    NotUtf8,
    /// No `:` between user-id and password.
    NoColon,
}

impl Malformed {
    /// The problem detail for the client.
    pub fn detail(&self) -> &'static str {
        match self {
            Malformed::Missing => "no Basic credentials in the Authorization header",
            Malformed::Several => "several different Authorization headers",
            Malformed::Empty => "empty Basic credentials",
            Malformed::NotBase64 => "Basic credentials are not valid base64",
            Malformed::NotUtf8 => "Basic credentials are not UTF-8",
            Malformed::NoColon => "Basic credentials have no ':' between user-id and password",
        }
    }
}

/// The Basic credentials among the values of the `Authorization` header (raw bytes; repeated
/// identical values count once).
pub fn parse(values: &[Vec<u8>]) -> Result<Credentials, Malformed> {
    let values: Vec<&[u8]> = values
        .iter()
        .map(|v| v.trim_ascii())
        .filter(|v| !v.is_empty())
        .collect();
    let Some(first) = values.first() else {
        return Err(Malformed::Missing);
    };
    if values.iter().any(|v| v != first) {
        return Err(Malformed::Several);
    }
    let (scheme, rest) = match first.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(at) => (&first[..at], first[at..].trim_ascii()),
        None => (*first, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(Malformed::Missing);
    }
    if rest.is_empty() {
        return Err(Malformed::Empty);
    }
    let decoded = BASE64.decode(rest).map_err(|_| Malformed::NotBase64)?;
    let text = String::from_utf8(decoded).map_err(|_| Malformed::NotUtf8)?;
    let (username, password) = text.split_once(':').ok_or(Malformed::NoColon)?;
    Ok(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &[u8]) -> Result<Credentials, Malformed> {
        parse(&[value.to_vec()])
    }

    fn credentials(username: &str, password: &str) -> Result<Credentials, Malformed> {
        Ok(Credentials {
            username: username.into(),
            password: password.into(),
        })
    }

    #[test]
    fn well_formed() {
        // "Aladdin:open sesame", RFC 7617's example.
        assert_eq!(
            one(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            credentials("Aladdin", "open sesame")
        );
        assert_eq!(
            one(b"bAsIc   QWxhZGRpbjpvcGVuIHNlc2FtZQ"),
            credentials("Aladdin", "open sesame")
        );
        // "test:123£" in UTF-8, RFC 7617 section 2.1; the password keeps later colons.
        assert_eq!(one(b"Basic dGVzdDoxMjPCow=="), credentials("test", "123£"));
        assert_eq!(one(b"Basic YTpiOmM="), credentials("a", "b:c"));
        assert_eq!(one(b"Basic Og=="), credentials("", ""));
        let same = b"Basic YTpi".to_vec();
        assert_eq!(parse(&[same.clone(), same]), credentials("a", "b"));
    }

    #[test]
    fn malformed() {
        assert_eq!(parse(&[]), Err(Malformed::Missing));
        assert_eq!(one(b"  "), Err(Malformed::Missing));
        assert_eq!(one(b"Bearer abc"), Err(Malformed::Missing));
        assert_eq!(one(b"Basicx YTpi"), Err(Malformed::Missing));
        assert_eq!(one(b"Basic"), Err(Malformed::Empty));
        assert_eq!(one(b"Basic   "), Err(Malformed::Empty));
        assert_eq!(one(b"Basic !!!"), Err(Malformed::NotBase64));
        assert_eq!(one(b"Basic YTpi YTpi"), Err(Malformed::NotBase64));
        assert_eq!(one(b"Basic /w=="), Err(Malformed::NotUtf8)); // 0xff
        assert_eq!(one(b"Basic YWJj"), Err(Malformed::NoColon)); // "abc"
        assert_eq!(one(&[b'B', 0xff, b' ', b'x']), Err(Malformed::Missing));
        assert_eq!(
            parse(&[b"Basic YTpi".to_vec(), b"Basic YTpj".to_vec()]),
            Err(Malformed::Several)
        );
    }
}

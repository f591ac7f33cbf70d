//! Plugin references: `oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]`, or the same without `oci://`.
//!
//! The registry host is always explicit (no implicit Docker Hub): the first path component must
//! look like a host (contain a `.` or a `:`, be `localhost`, or be a bracketed IPv6 address).
//! Without a tag or a digest the tag is `latest`. Repository components follow the OCI
//! distribution grammar (lowercase alphanumerics separated by `.`, `_`, `__` or dashes), tags are
//! `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` and digests are `sha256:` plus 64 lowercase hex digits.
//!
//! Transport: a registry is spoken to over plain HTTP only when its host is loopback
//! (`127.0.0.0/8`, `::1`, `localhost`) or listed by the caller as insecure
//! ([`PluginRef::plain_http`]); everything else uses HTTPS.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use crate::error::{Error, Result};

/// A parsed plugin reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl PluginRef {
    /// Parses `oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]` or the bare form without `oci://`.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadReference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(bad("empty reference"));
        }
        let s = match s.split_once("://") {
            Some(("oci", rest)) => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "unsupported scheme `{scheme}://` (only oci:// or no scheme)"
                )));
            }
            None => s,
        };
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace or control characters"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((name, digest)) => {
                check_digest(digest).map_err(|r| bad(&r))?;
                (name, Some(digest.to_string()))
            }
            None => (s, None),
        };
        let Some((host, path)) = name.split_once('/') else {
            return Err(bad(
                "missing repository: expected HOST[:PORT]/REPO[:TAG][@sha256:HEX]",
            ));
        };
        check_host(host).map_err(|r| bad(&r))?;
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) => (repo, Some(tag)),
            None => (path, None),
        };
        check_repository(repository).map_err(|r| bad(&r))?;
        if let Some(tag) = tag {
            check_tag(tag).map_err(|r| bad(&r))?;
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(PluginRef {
            registry: host.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// `host[:port]` of the registry.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (`latest` when neither a tag nor a digest was written).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The same repository and tag, pinned to `digest` (`sha256:…`).
    pub fn with_digest(&self, digest: &str) -> Self {
        PluginRef {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        PluginRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// `host[:port]/repository` (cosign's `docker-reference`).
    pub fn repository_ref(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host without the port (IPv6 addresses without brackets).
    pub fn host(&self) -> &str {
        split_host_port(&self.registry).0
    }

    /// Whether the host is a loopback address or `localhost`.
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Whether this registry is spoken to over plain HTTP: loopback hosts, and hosts whose
    /// `host[:port]` (or bare host) appears in `insecure`.
    pub fn plain_http(&self, insecure: &[String]) -> bool {
        self.is_loopback()
            || insecure
                .iter()
                .any(|h| h == &self.registry || h == self.host())
    }

    /// The `oci-client` reference (digest wins over tag when both are present).
    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (_, Some(d)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            (Some(t), None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
            ),
            (None, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                "latest".to_string(),
            ),
        }
    }
}

impl FromStr for PluginRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        PluginRef::parse(s)
    }
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `(host, port)`; IPv6 brackets removed.
fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = registry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (registry, None),
        }
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    }
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("missing registry host".into());
    }
    let looks_like_host = host.contains('.')
        || host.contains(':')
        || host.starts_with('[')
        || host.eq_ignore_ascii_case("localhost");
    if !looks_like_host {
        return Err(format!(
            "`{host}` is not a registry host (write the host explicitly, e.g. ghcr.io/{host}/… or 127.0.0.1:5000/{host}/…)"
        ));
    }
    let (name, port) = split_host_port(host);
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("bad port `{port}`")),
        }
    }
    if host.starts_with('[') {
        if !host.contains(']') || name.parse::<Ipv6Addr>().is_err() {
            return Err(format!("bad IPv6 address `{host}`"));
        }
        return Ok(());
    }
    if name.is_empty() {
        return Err("missing registry host".into());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!("bad registry host `{name}`"));
    }
    Ok(())
}

fn check_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("missing repository".into());
    }
    if repo.len() > 255 {
        return Err("repository name longer than 255 characters".into());
    }
    for component in repo.split('/') {
        if !repository_component_ok(component) {
            return Err(format!(
                "bad repository component `{component}` (lowercase letters, digits, and single `.`/`_`/`__`/`-` separators)"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn repository_component_ok(c: &str) -> bool {
    let bytes = c.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            expect_alnum = false;
            i += 1;
            continue;
        }
        if expect_alnum {
            return false;
        }
        // A separator: `.`, `_`, `__` or one or more `-`.
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        expect_alnum = true;
    }
    !expect_alnum
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad tag `{tag}` (letters, digits, `_`, `.`, `-`; at most 128; not starting with `.` or `-`)"
        ))
    }
}

/// Checks `sha256:` + 64 lowercase hex digits.
pub(crate) fn check_digest(digest: &str) -> Result<(), String> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(format!("bad digest `{digest}` (expected sha256:<64 hex>)"));
    };
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "bad digest `{digest}` (expected sha256: and 64 lowercase hex digits)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_the_forms() {
        let r = PluginRef::parse("oci://127.0.0.1:5000/filters/waf:1.2.0").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "filters/waf");
        assert_eq!(r.tag(), Some("1.2.0"));
        assert_eq!(r.digest(), None);
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/filters/waf:1.2.0");

        let r = PluginRef::parse(&format!("ghcr.io/acme/waf@{D}")).unwrap();
        assert_eq!(r.registry(), "ghcr.io");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(D));
        assert!(!r.is_loopback());

        let r = PluginRef::parse(&format!("oci://localhost/a/b:v1@{D}")).unwrap();
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest(), Some(D));
        assert!(r.is_loopback());

        let r = PluginRef::parse("registry.example.com/waf").unwrap();
        assert_eq!(r.tag(), Some("latest"));

        let r = PluginRef::parse("[::1]:5000/w:1").unwrap();
        assert_eq!(r.host(), "::1");
        assert!(r.is_loopback());

        let r = PluginRef::parse("127.5.6.7:80/a__b/c--d.e:1").unwrap();
        assert!(r.is_loopback());
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "   ",
            "oci://",
            "https://ghcr.io/a/b:1",
            "waf:1.0",
            "acme/waf:1.0",
            "ghcr.io",
            "ghcr.io/",
            "ghcr.io/Acme/waf",
            "ghcr.io/acme//waf",
            "ghcr.io/acme/waf:",
            "ghcr.io/acme/waf:.x",
            "ghcr.io/acme/waf@sha256:1234",
            "ghcr.io/acme/waf@md5:0123456789abcdef0123456789abcdef",
            "ghcr.io:0/a",
            "ghcr.io:99999/a",
            "ghcr.io:port/a",
            "gh cr.io/a",
            "-bad.io/a",
            "[zz]:5/a",
            "ghcr.io/a_/b",
            "ghcr.io/a/b:c:d",
        ] {
            let err = PluginRef::parse(bad).expect_err(bad);
            assert_eq!(err.kind(), crate::ErrorKind::BadReference, "{bad}");
        }
    }

    #[test]
    fn plain_http_only_for_loopback_or_listed_hosts() {
        let r = PluginRef::parse("registry.internal:5000/a:1").unwrap();
        assert!(!r.plain_http(&[]));
        assert!(r.plain_http(&["registry.internal:5000".into()]));
        assert!(r.plain_http(&["registry.internal".into()]));
        assert!(!r.plain_http(&["registry.internal:6000".into()]));
        assert!(
            PluginRef::parse("localhost:5000/a")
                .unwrap()
                .plain_http(&[])
        );
        assert!(
            !PluginRef::parse("128.0.0.1:5000/a")
                .unwrap()
                .plain_http(&[])
        );
    }
}

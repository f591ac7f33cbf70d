//! The crate's one error type, [`Error`], and its classification, [`ErrorKind`].
//!
//! Every failure the CLI or the compiler can meet maps to one [`ErrorKind`], and each kind has a
//! distinct suggested process exit code ([`ErrorKind::exit_code`], 10..=24) and a one-line "what
//! to do" hint ([`ErrorKind::hint`]). The CLI prints the error's `Display` (one line), the hint,
//! and exits with the code.

use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation failed; see [`Error::kind`] for the class (and so the exit code).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plugin reference could not be parsed, or names a plain-HTTP host that is not allowed.
    #[error("bad plugin reference `{input}`: {reason}")]
    BadReference {
        /// What the user wrote.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// No signature exists for this manifest digest.
    #[error("{reference} ({digest}) is not signed")]
    Unsigned {
        /// The plugin reference.
        reference: String,
        /// The manifest digest that has no signature.
        digest: String,
    },
    /// Signatures exist for this digest, but none verifies with a trusted key.
    #[error(
        "{reference} ({digest}) is signed, but none of its {signatures} signature(s) verifies with a trusted key"
    )]
    UntrustedKey {
        /// The plugin reference.
        reference: String,
        /// The manifest digest.
        digest: String,
        /// How many signature layers were checked.
        signatures: usize,
    },
    /// Content does not match the digest that names or signs it: a layer, manifest or signature
    /// payload changed after it was published or signed.
    #[error("{reference}: {what}")]
    Tampered {
        /// The plugin reference.
        reference: String,
        /// What did not match.
        what: String,
    },
    /// The digest pinned in `barbacane.lock` is no longer in the registry.
    #[error(
        "{reference}: the digest pinned in barbacane.lock ({digest}) is not in the registry any more"
    )]
    PinnedDigestMissing {
        /// The plugin reference.
        reference: String,
        /// The pinned manifest digest.
        digest: String,
    },
    /// The tag, repository or digest does not exist.
    #[error("{reference}: not found in the registry ({detail})")]
    NotFound {
        /// The plugin reference.
        reference: String,
        /// The registry's answer.
        detail: String,
    },
    /// The registry could not be reached, or the connection broke during a transfer.
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable {
        /// `host[:port]`.
        registry: String,
        /// The network error.
        detail: String,
    },
    /// The registry refused the credentials (HTTP 401/403).
    #[error("registry {registry} refused access: {detail}")]
    Unauthorized {
        /// `host[:port]`.
        registry: String,
        /// The registry's answer.
        detail: String,
    },
    /// The bytes are not a WebAssembly module, or not a Proxy-Wasm one.
    #[error("{what} is not a Proxy-Wasm module: {reason}")]
    NotProxyWasm {
        /// Where the bytes came from.
        what: String,
        /// Why they were refused.
        reason: String,
    },
    /// A module, manifest or blob exceeds its size limit.
    #[error("{what} is too large: {size} bytes (limit {limit})")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its (announced or observed) size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The artifact is not in any layout this crate accepts.
    #[error("{reference}: unsupported artifact layout: {reason}")]
    BadLayout {
        /// The plugin reference.
        reference: String,
        /// What was found.
        reason: String,
    },
    /// Any other registry protocol error (5xx, spec violations, unexpected answers).
    #[error("registry {registry}: {detail}")]
    Registry {
        /// `host[:port]`.
        registry: String,
        /// The error.
        detail: String,
    },
    /// A key could not be read, decrypted or used.
    #[error("bad key: {reason}")]
    BadKey {
        /// Why.
        reason: String,
    },
    /// `barbacane.lock` or a plugin manifest (`plugin.toml`) is malformed.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A local file operation failed (cache, lockfile, key file).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The class of an [`Error`]: what the CLI maps to an exit code and a hint.
///
/// Suggested exit codes (the CLI owns the final mapping):
///
/// | kind | code |
/// |---|---|
/// | [`BadReference`](ErrorKind::BadReference) | 10 |
/// | [`Unsigned`](ErrorKind::Unsigned) | 11 |
/// | [`UntrustedKey`](ErrorKind::UntrustedKey) | 12 |
/// | [`Tampered`](ErrorKind::Tampered) | 13 |
/// | [`PinnedDigestMissing`](ErrorKind::PinnedDigestMissing) | 14 |
/// | [`Unreachable`](ErrorKind::Unreachable) | 15 |
/// | [`Unauthorized`](ErrorKind::Unauthorized) | 16 |
/// | [`NotProxyWasm`](ErrorKind::NotProxyWasm) | 17 |
/// | [`TooLarge`](ErrorKind::TooLarge) | 18 |
/// | [`BadLayout`](ErrorKind::BadLayout) | 19 |
/// | [`NotFound`](ErrorKind::NotFound) | 20 |
/// | [`Registry`](ErrorKind::Registry) | 21 |
/// | [`BadKey`](ErrorKind::BadKey) | 22 |
/// | [`BadFile`](ErrorKind::BadFile) | 23 |
/// | [`Io`](ErrorKind::Io) | 24 |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Exit 10: the reference does not parse, or plain HTTP to a non-loopback host.
    BadReference,
    /// Exit 11: no signature for the digest.
    Unsigned,
    /// Exit 12: signed, but not by a trusted key.
    UntrustedKey,
    /// Exit 13: content changed after it was published or signed (digest mismatch).
    Tampered,
    /// Exit 14: the digest pinned in `barbacane.lock` is gone from the registry.
    PinnedDigestMissing,
    /// Exit 15: the registry is unreachable or the connection broke.
    Unreachable,
    /// Exit 16: the registry answered 401/403.
    Unauthorized,
    /// Exit 17: not a WebAssembly module, or no Proxy-Wasm ABI marker export.
    NotProxyWasm,
    /// Exit 18: a size limit was exceeded.
    TooLarge,
    /// Exit 19: the artifact layout is not one this crate accepts.
    BadLayout,
    /// Exit 20: the tag, repository or digest does not exist.
    NotFound,
    /// Exit 21: another registry protocol error.
    Registry,
    /// Exit 22: a key cannot be read, decrypted or used.
    BadKey,
    /// Exit 23: `barbacane.lock` or `plugin.toml` is malformed.
    BadFile,
    /// Exit 24: a local I/O error.
    Io,
}

impl ErrorKind {
    /// The suggested process exit code for this kind (10..=24, distinct per kind).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::BadReference => 10,
            ErrorKind::Unsigned => 11,
            ErrorKind::UntrustedKey => 12,
            ErrorKind::Tampered => 13,
            ErrorKind::PinnedDigestMissing => 14,
            ErrorKind::Unreachable => 15,
            ErrorKind::Unauthorized => 16,
            ErrorKind::NotProxyWasm => 17,
            ErrorKind::TooLarge => 18,
            ErrorKind::BadLayout => 19,
            ErrorKind::NotFound => 20,
            ErrorKind::Registry => 21,
            ErrorKind::BadKey => 22,
            ErrorKind::BadFile => 23,
            ErrorKind::Io => 24,
        }
    }

    /// A one-line suggestion of what to do about an error of this kind.
    pub fn hint(self) -> &'static str {
        match self {
            ErrorKind::BadReference => {
                "write the plugin as oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]; plain HTTP is only used for loopback hosts and hosts listed as insecure"
            }
            ErrorKind::Unsigned => {
                "sign it with `barbacane plugin sign REF --key cosign.key`, or set `trust.allow_unsigned: true` in barbacane.yaml"
            }
            ErrorKind::UntrustedKey => {
                "add the signer's public key to `trust.keys` in barbacane.yaml, or re-sign with a trusted key"
            }
            ErrorKind::Tampered => {
                "the artifact changed after it was published or signed: do not use it; re-publish and re-sign it from a trusted build"
            }
            ErrorKind::PinnedDigestMissing => {
                "the pinned version was deleted: run `barbacane compile --update` to re-resolve the tag (and review the new digest)"
            }
            ErrorKind::Unreachable => {
                "check the registry address, that it is running, and the network; then retry"
            }
            ErrorKind::Unauthorized => {
                "log in with `docker login HOST` (credentials in ~/.docker/config.json or $DOCKER_CONFIG) or pass credentials explicitly"
            }
            ErrorKind::NotProxyWasm => {
                "build the plugin as a Proxy-Wasm module for wasm32-wasip1 (it must export proxy_abi_version_0_2_1, _0_2_0 or _0_1_0)"
            }
            ErrorKind::TooLarge => {
                "the artifact exceeds the size limit: check the reference points at a plugin, or raise the limit"
            }
            ErrorKind::BadLayout => {
                "push the plugin with `barbacane plugin push` (CNCF Wasm layout) or one of the Istio/Solo layouts"
            }
            ErrorKind::NotFound => {
                "check the repository and tag (e.g. list the tags with oras or crane)"
            }
            ErrorKind::Registry => "the registry answered unexpectedly; retry, or check its logs",
            ErrorKind::BadKey => {
                "check the key file and its password (cosign-format PEM: ENCRYPTED SIGSTORE/COSIGN PRIVATE KEY, PUBLIC KEY)"
            }
            ErrorKind::BadFile => "fix or delete the file named in the message",
            ErrorKind::Io => "check the path, permissions and free disk space",
        }
    }
}

impl Error {
    /// The class of this error, which selects the exit code and the hint.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadReference { .. } => ErrorKind::BadReference,
            Error::Unsigned { .. } => ErrorKind::Unsigned,
            Error::UntrustedKey { .. } => ErrorKind::UntrustedKey,
            Error::Tampered { .. } => ErrorKind::Tampered,
            Error::PinnedDigestMissing { .. } => ErrorKind::PinnedDigestMissing,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Unreachable { .. } => ErrorKind::Unreachable,
            Error::Unauthorized { .. } => ErrorKind::Unauthorized,
            Error::NotProxyWasm { .. } => ErrorKind::NotProxyWasm,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::BadLayout { .. } => ErrorKind::BadLayout,
            Error::Registry { .. } => ErrorKind::Registry,
            Error::BadKey { .. } => ErrorKind::BadKey,
            Error::BadFile { .. } => ErrorKind::BadFile,
            Error::Io { .. } => ErrorKind::Io,
        }
    }

    /// Shorthand for [`ErrorKind::exit_code`] of [`Error::kind`].
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }

    /// Shorthand for [`ErrorKind::hint`] of [`Error::kind`].
    pub fn hint(&self) -> &'static str {
        self.kind().hint()
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Classifies an `oci-client` error for `registry` while working on `reference`.
    pub(crate) fn from_oci(
        err: oci_client::errors::OciDistributionError,
        registry: &str,
        reference: &str,
    ) -> Self {
        use oci_client::errors::{OciDistributionError as E, OciErrorCode};
        let registry = registry.to_string();
        match err {
            E::RequestError(e) => {
                if let Some(status) = e.status() {
                    return Error::from_status(status.as_u16(), e.to_string(), registry, reference);
                }
                Error::Unreachable {
                    registry,
                    detail: error_chain(&e),
                }
            }
            E::IoError(e) => Error::Unreachable {
                registry,
                detail: e.to_string(),
            },
            E::UnauthorizedError { url } => Error::Unauthorized {
                registry,
                detail: format!("401 Unauthorized for {url}"),
            },
            E::AuthenticationFailure(reason) => Error::Unauthorized {
                registry,
                detail: reason,
            },
            E::DigestError(e) => Error::Tampered {
                reference: reference.to_string(),
                what: format!("content does not match its digest: {e}"),
            },
            E::ImageManifestNotFoundError(detail) => Error::NotFound {
                reference: reference.to_string(),
                detail,
            },
            E::RegistryError { envelope, url } => {
                let codes: Vec<_> = envelope.errors.iter().map(|e| &e.code).collect();
                let detail = format!(
                    "{}: {}",
                    url,
                    envelope
                        .errors
                        .iter()
                        .map(|e| format!("{:?} {}", e.code, e.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    Error::Unauthorized { registry, detail }
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    Error::NotFound {
                        reference: reference.to_string(),
                        detail,
                    }
                } else {
                    Error::Registry { registry, detail }
                }
            }
            E::ServerError { code, url, message } => {
                Error::from_status(code, format!("{url}: {message}"), registry, reference)
            }
            other => Error::Registry {
                registry,
                detail: other.to_string(),
            },
        }
    }

    fn from_status(code: u16, detail: String, registry: String, reference: &str) -> Self {
        match code {
            401 | 403 => Error::Unauthorized { registry, detail },
            404 => Error::NotFound {
                reference: reference.to_string(),
                detail,
            },
            _ => Error::Registry {
                registry,
                detail: format!("HTTP {code}: {detail}"),
            },
        }
    }
}

/// The error and its sources, joined with ": " (reqwest hides the useful part in the sources).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct() {
        let kinds = [
            ErrorKind::BadReference,
            ErrorKind::Unsigned,
            ErrorKind::UntrustedKey,
            ErrorKind::Tampered,
            ErrorKind::PinnedDigestMissing,
            ErrorKind::Unreachable,
            ErrorKind::Unauthorized,
            ErrorKind::NotProxyWasm,
            ErrorKind::TooLarge,
            ErrorKind::BadLayout,
            ErrorKind::NotFound,
            ErrorKind::Registry,
            ErrorKind::BadKey,
            ErrorKind::BadFile,
            ErrorKind::Io,
        ];
        let mut codes: Vec<u8> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(codes.iter().all(|c| (10..=24).contains(c)));
        assert!(ErrorKind::Unauthorized.hint().contains("docker login"));
    }
}

//! [`Registry`]: the entry point. Holds the [`Options`] (insecure hosts, credentials, limits,
//! cache, timeouts) and one `oci-client` client per (registry, identity), and implements the
//! transfer primitives the other modules build on: resolve a tag, fetch a manifest with a size
//! cap, fetch a blob with a size cap, progress and digest check, push blobs and manifests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use sha2::{Digest, Sha256};

use crate::auth::{Credentials, DockerConfig, docker_credentials};
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::layout::{ACCEPTED_MANIFESTS, Descriptor};
use crate::module::{hex, sha256_digest};
use crate::progress::Progress;
use crate::reference::PluginRef;

/// Size limits applied to everything fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest module (or tar.gz layer) accepted: 256 MiB by default, like Envoy Gateway.
    pub max_module_bytes: u64,
    /// Largest manifest accepted: 4 MiB by default.
    pub max_manifest_bytes: u64,
    /// Largest signature payload accepted: 64 KiB by default.
    pub max_signature_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_module_bytes: 256 * 1024 * 1024,
            max_manifest_bytes: 4 * 1024 * 1024,
            max_signature_bytes: 64 * 1024,
        }
    }
}

/// How a [`Registry`] connects.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts (`host` or `host:port`) spoken to over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Explicit credentials per registry `host[:port]`; they override the Docker config.
    pub credentials: HashMap<String, Credentials>,
    /// Where to look for Docker credentials when no explicit ones are given.
    pub docker_config: DockerConfig,
    /// Size limits.
    pub limits: Limits,
    /// Where pulled modules are cached; `None` disables the cache.
    pub cache: Option<Cache>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Timeout for each read from the network.
    pub read_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: Vec::new(),
            credentials: HashMap::new(),
            docker_config: DockerConfig::Default,
            limits: Limits::default(),
            cache: Cache::from_env(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A connection to one registry with one identity.
pub(crate) struct Conn {
    pub(crate) client: oci_client::Client,
    pub(crate) auth: RegistryAuth,
    pub(crate) registry: String,
}

/// Talks to OCI registries: push, pull, sign, verify, resolve and inspect plugins (see the
/// methods in the `push`, `pull`, `signing`, `resolve` and `inspect` modules).
pub struct Registry {
    pub(crate) options: Options,
    clients: Mutex<HashMap<(String, Credentials), Arc<Conn>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(Options::default())
    }
}

impl Registry {
    /// A registry client with these options.
    pub fn new(options: Options) -> Self {
        Registry {
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The credentials used for `registry` (`host[:port]`): explicit ones, else Docker's.
    pub fn credentials_for(&self, registry: &str) -> Result<Credentials> {
        match self.options.credentials.get(registry) {
            Some(c) => Ok(c.clone()),
            None => docker_credentials(registry, &self.options.docker_config),
        }
    }

    /// The client for `r`'s registry and identity (created on first use).
    pub(crate) async fn conn(&self, r: &PluginRef) -> Result<Arc<Conn>> {
        let registry = r.registry().to_string();
        let creds = self.credentials_for(&registry)?;
        let key = (registry.clone(), creds.clone());
        let conn = {
            let mut clients = self
                .clients
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            clients
                .entry(key)
                .or_insert_with(|| {
                    let protocol = if r.plain_http(&self.options.insecure) {
                        ClientProtocol::HttpsExcept(vec![registry.clone()])
                    } else {
                        ClientProtocol::Https
                    };
                    let config = ClientConfig {
                        protocol,
                        platform_resolver: None,
                        connect_timeout: Some(self.options.connect_timeout),
                        read_timeout: Some(self.options.read_timeout),
                        ..Default::default()
                    };
                    Arc::new(Conn {
                        client: oci_client::Client::new(config),
                        auth: creds.to_oci(),
                        registry: registry.clone(),
                    })
                })
                .clone()
        };
        conn.client
            .store_auth_if_needed(&conn.registry, &conn.auth)
            .await;
        Ok(conn)
    }

    /// Resolves `r` to its manifest digest (HEAD; a digest reference is checked to exist).
    pub async fn resolve_digest(&self, r: &PluginRef) -> Result<String> {
        let conn = self.conn(r).await?;
        conn.client
            .fetch_manifest_digest(&r.to_oci(), &conn.auth)
            .await
            .map_err(|e| Error::from_oci(e, &conn.registry, &r.to_string()))
    }

    /// Fetches the manifest bytes of `r` and their digest, refusing more than the manifest limit.
    pub(crate) async fn fetch_manifest(
        &self,
        conn: &Conn,
        r: &PluginRef,
        accepted: &[&str],
    ) -> Result<(Vec<u8>, String)> {
        let (body, digest) = conn
            .client
            .pull_manifest_raw(&r.to_oci(), &conn.auth, accepted)
            .await
            .map_err(|e| Error::from_oci(e, &conn.registry, &r.to_string()))?;
        let limit = self.options.limits.max_manifest_bytes;
        if body.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: format!("manifest of {r}"),
                size: body.len() as u64,
                limit,
            });
        }
        let actual = sha256_digest(&body);
        let expected = r.digest().unwrap_or(&digest);
        if actual != expected {
            return Err(Error::Tampered {
                reference: r.to_string(),
                what: format!("the manifest's bytes hash to {actual}, not {expected}"),
            });
        }
        Ok((body.to_vec(), actual))
    }

    /// Fetches the manifest of `r` as the plugin layouts understand it.
    pub(crate) async fn fetch_plugin_manifest(
        &self,
        conn: &Conn,
        r: &PluginRef,
    ) -> Result<(Vec<u8>, String)> {
        self.fetch_manifest(conn, r, ACCEPTED_MANIFESTS).await
    }

    /// Fetches blob `desc` of `r`'s repository (from the cache when it holds it), refusing more
    /// than `limit` bytes and checking the digest. Nothing is written to the cache here.
    pub(crate) async fn fetch_blob(
        &self,
        conn: &Conn,
        r: &PluginRef,
        desc: &Descriptor,
        limit: u64,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<Vec<u8>> {
        crate::reference::check_digest(&desc.digest).map_err(|reason| Error::BadLayout {
            reference: r.to_string(),
            reason: format!("layer descriptor: {reason}"),
        })?;
        if desc.size > limit {
            return Err(Error::TooLarge {
                what: format!("{what} of {r}"),
                size: desc.size,
                limit,
            });
        }
        if let Some(cache) = &self.options.cache
            && let Some(bytes) = cache.get(&desc.digest)?
            && bytes.len() as u64 == desc.size
        {
            progress.start(what, Some(desc.size));
            progress.advance(desc.size);
            progress.finish();
            return Ok(bytes);
        }
        let oci_desc = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: i64::try_from(desc.size).unwrap_or(i64::MAX),
            urls: None,
            annotations: None,
            ..Default::default()
        };
        progress.start(what, Some(desc.size));
        let result = async {
            let mut stream = conn
                .client
                .pull_blob_stream(&r.to_oci(), &oci_desc)
                .await
                .map_err(|e| Error::from_oci(e, &conn.registry, &r.to_string()))?;
            if let Some(len) = stream.content_length
                && len > limit
            {
                return Err(Error::TooLarge {
                    what: format!("{what} of {r}"),
                    size: len,
                    limit,
                });
            }
            let mut hasher = Sha256::new();
            let mut out = Vec::with_capacity(usize::try_from(desc.size).unwrap_or(0));
            while let Some(chunk) = stream.stream.next().await {
                let chunk = chunk.map_err(|e| self.stream_error(e, conn, r, what))?;
                if (out.len() + chunk.len()) as u64 > limit {
                    return Err(Error::TooLarge {
                        what: format!("{what} of {r}"),
                        size: (out.len() + chunk.len()) as u64,
                        limit,
                    });
                }
                if (out.len() + chunk.len()) as u64 > desc.size {
                    return Err(Error::Tampered {
                        reference: r.to_string(),
                        what: format!("{what} is larger than its descriptor says ({} bytes)", desc.size),
                    });
                }
                hasher.update(&chunk);
                out.extend_from_slice(&chunk);
                progress.advance(chunk.len() as u64);
            }
            let actual = format!("sha256:{}", hex(&hasher.finalize()));
            if actual != desc.digest || out.len() as u64 != desc.size {
                return Err(Error::Tampered {
                    reference: r.to_string(),
                    what: format!(
                        "{what} does not match its descriptor: got {actual} ({} bytes), expected {} ({} bytes)",
                        out.len(),
                        desc.digest,
                        desc.size
                    ),
                });
            }
            Ok(out)
        }
        .await;
        progress.finish();
        result
    }

    fn stream_error(&self, e: std::io::Error, conn: &Conn, r: &PluginRef, what: &str) -> Error {
        if let Some(d) = e.get_ref().and_then(|i| i.downcast_ref::<DigestError>()) {
            return Error::Tampered {
                reference: r.to_string(),
                what: format!("{what}: {d}"),
            };
        }
        let mut detail = format!("connection broke while downloading {what}: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !detail.contains(&text) {
                detail.push_str(": ");
                detail.push_str(&text);
            }
            source = s.source();
        }
        Error::Unreachable {
            registry: conn.registry.clone(),
            detail,
        }
    }

    /// Uploads `bytes` as a blob of `r`'s repository unless the registry already has it.
    pub(crate) async fn push_blob(
        &self,
        conn: &Conn,
        r: &PluginRef,
        bytes: &[u8],
        what: &str,
        progress: &dyn Progress,
    ) -> Result<String> {
        let digest = sha256_digest(bytes);
        let oci_ref = r.to_oci();
        let map = |e| Error::from_oci(e, &conn.registry, &r.to_string());
        // Push needs push scope: authenticate for it first (a no-op without a token service).
        conn.client
            .auth(&oci_ref, &conn.auth, oci_client::RegistryOperation::Push)
            .await
            .map_err(map)?;
        progress.start(what, Some(bytes.len() as u64));
        let result = async {
            if conn
                .client
                .blob_exists(&oci_ref, &digest)
                .await
                .map_err(map)?
            {
                progress.advance(bytes.len() as u64);
                return Ok(());
            }
            const CHUNK: usize = 1024 * 1024;
            let data = bytes::Bytes::copy_from_slice(bytes);
            let chunks: Vec<bytes::Bytes> = (0..data.len())
                .step_by(CHUNK)
                .map(|i| data.slice(i..(i + CHUNK).min(data.len())))
                .collect();
            // Progress is reported as the client takes each chunk from the stream.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
            let stream = futures_util::stream::iter(chunks).map(move |c| {
                let _ = tx.send(c.len() as u64);
                Ok(c)
            });
            let push =
                conn.client
                    .push_blob_stream(&oci_ref, stream, &digest, Some(bytes.len() as u64));
            let relay = async {
                let mut sent = 0;
                while let Some(n) = rx.recv().await {
                    sent += n;
                    progress.advance(n);
                }
                sent
            };
            let (pushed, sent) = tokio::join!(push, relay);
            match pushed {
                Ok(_) => {}
                Err(OciDistributionError::SpecViolationError(_)) => {
                    conn.client
                        .push_blob(&oci_ref, data, &digest)
                        .await
                        .map_err(map)?;
                }
                Err(e) => return Err(map(e)),
            }
            progress.advance((bytes.len() as u64).saturating_sub(sent));
            Ok(())
        }
        .await;
        progress.finish();
        result.map(|()| digest)
    }

    /// Pushes manifest `bytes` of `media_type` under `r`'s tag (or digest); returns its digest.
    pub(crate) async fn push_manifest(
        &self,
        conn: &Conn,
        r: &PluginRef,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<String> {
        let digest = sha256_digest(&bytes);
        let content_type = http_header(media_type)?;
        conn.client
            .push_manifest_raw(&r.to_oci(), bytes, content_type)
            .await
            .map_err(|e| Error::from_oci(e, &conn.registry, &r.to_string()))?;
        Ok(digest)
    }
}

fn http_header(media_type: &str) -> Result<http::HeaderValue> {
    http::HeaderValue::from_str(media_type).map_err(|e| Error::BadLayout {
        reference: String::new(),
        reason: format!("bad media type `{media_type}`: {e}"),
    })
}

//! Registry credentials: anonymous, basic or bearer; explicit ones, or those Docker stores in
//! `~/.docker/config.json` / `$DOCKER_CONFIG/config.json` (`auths` entries, per-registry
//! `credHelpers`, the global `credsStore`), read with `docker_credential`.
//!
//! Explicit credentials (per registry `host[:port]`) override the Docker config. An identity
//! (refresh) token found in the Docker config cannot be used by `oci-client`, so it is treated as
//! anonymous; a 401 then says to log in or to pass credentials explicitly.
//!
//! `oci-client` remembers the first credentials it is given per registry, so
//! [`Registry`](crate::Registry) keeps one client per (registry, identity).

use std::path::{Path, PathBuf};

use oci_client::secrets::RegistryAuth;

use crate::error::{Error, Result};

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub enum Credentials {
    /// No credentials.
    #[default]
    Anonymous,
    /// HTTP Basic credentials (also used to obtain a bearer token when the registry asks for one).
    Basic {
        /// User name.
        username: String,
        /// Password or access token.
        password: String,
    },
    /// A registry bearer token, sent as is.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

impl Credentials {
    /// Basic credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    pub(crate) fn to_oci(&self) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        }
    }
}

/// Where Docker-style credentials are looked up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    #[default]
    Default,
    /// This `config.json` file.
    File(PathBuf),
    /// Do not read any Docker config.
    Disabled,
}

/// The credentials Docker has for `registry` (`host[:port]`), from `config`. Missing files and
/// registries without an entry give [`Credentials::Anonymous`]; a failing credential helper is an
/// [`Error::Unauthorized`].
pub fn docker_credentials(registry: &str, config: &DockerConfig) -> Result<Credentials> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let server = docker_server_key(registry);
    let found = match config {
        DockerConfig::Disabled => return Ok(Credentials::Anonymous),
        DockerConfig::Default => docker_credential::get_credential(&server),
        DockerConfig::File(path) => match std::fs::File::open(path) {
            Ok(f) => {
                docker_credential::get_credential_from_reader(std::io::BufReader::new(f), &server)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(E::ConfigNotFound),
            Err(e) => return Err(Error::io(path, e)),
        },
    };
    match found {
        Ok(DockerCredential::UsernamePassword(username, password)) => {
            Ok(Credentials::Basic { username, password })
        }
        Ok(DockerCredential::IdentityToken(_)) => Ok(Credentials::Anonymous),
        Err(E::NoCredentialConfigured | E::ConfigNotFound | E::ConfigReadError) => {
            Ok(Credentials::Anonymous)
        }
        Err(e @ (E::CredentialDecodingError | E::CredentialMismatchError)) => Err(Error::BadFile {
            path: config_path(config),
            reason: format!("credentials for {registry}: {e}"),
        }),
        Err(e) => Err(Error::Unauthorized {
            registry: registry.to_string(),
            detail: format!("docker credential helper: {e}"),
        }),
    }
}

fn config_path(config: &DockerConfig) -> PathBuf {
    match config {
        DockerConfig::File(p) => p.clone(),
        _ => std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))
            .unwrap_or_default()
            .join("config.json"),
    }
}

/// Docker Hub's credentials are filed under its v1 index URL.
fn docker_server_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths_from_a_config_file() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            &file,
            format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        let cfg = DockerConfig::File(file);
        assert_eq!(
            docker_credentials("127.0.0.1:5000", &cfg).unwrap(),
            Credentials::basic("alice", "s3cret")
        );
        assert_eq!(
            docker_credentials("127.0.0.1:6000", &cfg).unwrap(),
            Credentials::Anonymous
        );
        let missing = DockerConfig::File(dir.path().join("nope.json"));
        assert_eq!(
            docker_credentials("127.0.0.1:5000", &missing).unwrap(),
            Credentials::Anonymous
        );
        assert_eq!(
            format!("{:?}", Credentials::basic("u", "p")),
            "Basic(u, ***)"
        );
    }
}

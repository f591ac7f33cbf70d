//! `servers` → host patterns and base paths for routing.

use super::Compiler;
use crate::diag::Code;
use crate::model::ServerMatch;
use crate::spec::NodeRef;
use serde_json::Value;

impl Compiler {
    pub(super) fn servers(&mut self, at: &NodeRef) -> Vec<ServerMatch> {
        let any = || {
            vec![ServerMatch {
                host: None,
                base_path: String::new(),
            }]
        };
        let Some(Value::Array(list)) = self.value(at) else {
            return any();
        };
        let mut servers = Vec::new();
        for (i, server) in list.iter().enumerate() {
            let server_at = at.child(&i.to_string());
            match server_match(server) {
                Ok(m) => {
                    if !servers.contains(&m) {
                        servers.push(m);
                    }
                }
                Err(why) => self.error(
                    Code::E1042,
                    &server_at,
                    format!("invalid server: {why}"),
                    "write servers as 'https://api.example.com/v1' or '/v1'",
                ),
            }
        }
        if servers.is_empty() { any() } else { servers }
    }
}

/// Reduces a `servers` entry to a host pattern and base path. Variables in the host match any
/// label; variables in the path take their default. Loopback and unspecified hosts match any host.
fn server_match(server: &Value) -> Result<ServerMatch, String> {
    let url = server
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| String::from("'url' is missing"))?;
    let variables = server.get("variables").and_then(Value::as_object);
    let default_of = |name: &str| {
        variables
            .and_then(|v| v.get(name))
            .and_then(|v| v.get("default"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => (Some(&rest[..i]), &rest[i..]),
            None => (Some(rest), "/"),
        },
        None => (None, url),
    };
    let host = host
        .map(|h| {
            // Drop userinfo and port; keep IPv6 literals whole.
            let h = h.rsplit('@').next().unwrap_or(h);
            let h = if h.starts_with('[') {
                h.split_inclusive(']').next().unwrap_or(h)
            } else {
                h.split(':').next().unwrap_or(h)
            };
            h.split('.')
                .map(|label| {
                    if label.starts_with('{') {
                        String::from("*")
                    } else {
                        label.to_ascii_lowercase()
                    }
                })
                .collect::<Vec<_>>()
                .join(".")
        })
        .filter(|h| {
            !matches!(
                h.as_str(),
                "" | "localhost" | "127.0.0.1" | "[::1]" | "0.0.0.0" | "*"
            )
        });
    let mut base_path = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        base_path.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(var) => base_path.push_str(
                &default_of(var).ok_or_else(|| format!("variable '{var}' has no default"))?,
            ),
            None => base_path.push_str(segment),
        }
    }
    Ok(ServerMatch { host, base_path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn servers_reduce_to_host_and_base_path() {
        let m = server_match(&json!({"url": "https://API.example.com:8443/v1/"})).unwrap();
        assert_eq!(
            m,
            ServerMatch {
                host: Some("api.example.com".into()),
                base_path: "/v1".into()
            }
        );
        let m = server_match(&json!({"url": "http://localhost:8080"})).unwrap();
        assert_eq!(
            m,
            ServerMatch {
                host: None,
                base_path: String::new()
            }
        );
        let m = server_match(&json!({"url": "https://{env}.example.com/{v}", "variables": {"env": {"default": "prod"}, "v": {"default": "v2"}}})).unwrap();
        assert_eq!(
            m,
            ServerMatch {
                host: Some("*.example.com".into()),
                base_path: "/v2".into()
            }
        );
    }
}

//! Built-in plugin `ip-restriction`: allows or refuses a request by the client's IP address,
//! against IPv4/IPv6 CIDR `allow` and `deny` lists, as Kong's ip-restriction and Envoy's RBAC
//! `remote_ip` / `direct_remote_ip` rules do.
//!
//! * The client is the connection's peer; behind `trusted_proxies` it is the address they
//!   recorded in `x-forwarded-for`, read right to left and believed only as far as the chain of
//!   trusted hops goes (`barbacane_sdk::http::resolve_client_ip`), so a client cannot spoof it by
//!   sending the header itself.
//! * Deny wins: an address in a `deny` range is refused even if `allow` has it. With an empty
//!   `allow`, every address not denied is allowed.
//! * A refused request is a `403` problem; it never reaches the upstream.
//!
//! Kind `auth`: it decides who may call, like `acl`, from the network identity; it authenticates
//! no one and stores no consumer, so it can go anywhere in the chain (first refuses cheapest).
//! Header values are read as bytes, so no header can make the plugin trap. Configuration:
//! `schema.json`; reference in `docs/plugins/ip-restriction.md`.

use barbacane_sdk::http::{self, Cidr};
use barbacane_sdk::root::ConfiguredRoot;
use barbacane_sdk::{Problem, config};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::Action;
use serde::Deserialize;
use std::net::IpAddr;
use std::rc::Rc;

/// The module's entry point (`_initialize`), in a private module so that the exported function
/// the macro writes needs no public docs.
mod entry {
    use super::root;
    use proxy_wasm::traits::RootContext;
    use proxy_wasm::types::LogLevel;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root()) });
    }}
}

// Per-request allocations come from free lists, not dlmalloc (see `barbacane_sdk::allocator`).
barbacane_sdk::allocator!();

/// The plugin configuration, as written in the spec (CIDRs are checked as they are parsed, so
/// a bad one is reported at its own pointer, e.g. `/allow/2`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Ranges allowed; empty: all not denied.
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// Ranges refused.
    #[serde(default)]
    pub deny: Vec<Cidr>,
    /// Proxies whose `x-forwarded-for` entries are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
}

impl Config {
    /// Parses and checks the configuration: at least one of `allow` and `deny`.
    pub fn from_json(bytes: Option<Vec<u8>>) -> Result<Config, config::ConfigError> {
        let config: Config = config::parse(bytes)?;
        if config.allow.is_empty() && config.deny.is_empty() {
            return Err(config::ConfigError {
                pointer: String::new(),
                message: String::from(
                    "give at least one of allow and deny: otherwise every request is allowed",
                ),
            });
        }
        Ok(config)
    }

    /// Whether `ip` may call: in no deny range, and in an allow range when there are any.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }

    /// The client's address given the peer and the `x-forwarded-for` values (raw bytes): see
    /// `barbacane_sdk::http::resolve_client_ip`. Entries that are not UTF-8 are not addresses,
    /// and stop the walk like any other garbage.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: &[Vec<u8>]) -> IpAddr {
        if self.trusted_proxies.is_empty() {
            return peer;
        }
        let values: Vec<String> = forwarded_for
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        http::resolve_client_ip(peer, &values, &self.trusted_proxies)
    }
}

/// The root context: the configuration parsed into [`Config`], shared by every request's stream.
fn root() -> impl RootContext {
    ConfiguredRoot::new(Config::from_json, |config| {
        Box::new(Stream {
            config: config.clone(),
        })
    })
}

struct Stream {
    config: Rc<Config>,
}

impl Context for Stream {}

// The callbacks implemented below, and only those, are called (see `barbacane_sdk::callbacks`).
barbacane_sdk::stream_callbacks!(request_headers);

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Fail closed: without a peer address there is nothing to allow.
        let Some(peer) = http::peer_ip(self) else {
            Problem::new(403, "forbidden", "the client's address is unknown").send(self);
            return Action::Pause;
        };
        // Bytes, not `get_http_request_headers`: the String API traps on a non-UTF-8 value
        // anywhere in the request's headers.
        let forwarded_for: Vec<Vec<u8>> = if self.config.trusted_proxies.is_empty() {
            Vec::new()
        } else {
            http::request_header_bytes(self, "x-forwarded-for")
        };
        let client = self.config.client_ip(peer, &forwarded_for);
        if self.config.allows(client) {
            return Action::Continue;
        }
        Problem::new(
            403,
            "forbidden",
            format!("client address {client} is not allowed"),
        )
        .send(self);
        Action::Pause
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    fn config(json: &str) -> Result<Config, config::ConfigError> {
        Config::from_json(Some(json.as_bytes().to_vec()))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn configuration_is_checked() {
        assert_eq!(config("{}").unwrap_err().pointer, "");
        assert_eq!(
            config(r#"{"allow": [], "deny": []}"#).unwrap_err().pointer,
            ""
        );
        let e = config(r#"{"allow": ["10.0.0.0/8", "10.0.0.0/33"]}"#).unwrap_err();
        assert_eq!(e.pointer, "/allow/1");
        assert!(e.message.contains("'10.0.0.0/33'"), "{e}");
        assert_eq!(
            config(r#"{"deny": ["::1"], "trusted_proxies": ["proxy"]}"#)
                .unwrap_err()
                .pointer,
            "/trusted_proxies/0"
        );
        assert_eq!(config(r#"{"deny": "::1"}"#).unwrap_err().pointer, "/deny");
    }

    #[test]
    fn deny_wins_and_empty_allow_means_all() {
        let c = config(r#"{"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.6.6.0/24"]}"#)
            .unwrap();
        assert!(c.allows(ip("10.1.2.3")));
        assert!(c.allows(ip("::ffff:10.1.2.3")));
        assert!(c.allows(ip("2001:db8::1")));
        assert!(!c.allows(ip("10.6.6.6")));
        assert!(!c.allows(ip("192.0.2.1")));
        assert!(!c.allows(ip("2001:db9::1")));
        let c = config(r#"{"deny": ["192.0.2.0/24", "::1"]}"#).unwrap();
        assert!(c.allows(ip("198.51.100.1")));
        assert!(!c.allows(ip("192.0.2.200")));
        assert!(!c.allows(ip("::1")));
        assert!(c.allows(ip("127.0.0.1")));
    }

    #[test]
    fn forwarded_for_only_through_trusted_proxies() {
        let peer = ip("127.0.0.1");
        let untrusted = config(r#"{"deny": ["::1"]}"#).unwrap();
        assert_eq!(untrusted.client_ip(peer, &[b"203.0.113.5".to_vec()]), peer);
        let c =
            config(r#"{"deny": ["::1"], "trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]}"#).unwrap();
        assert_eq!(
            c.client_ip(peer, &[b"198.51.100.1, 203.0.113.5, 10.0.0.2".to_vec()]),
            ip("203.0.113.5")
        );
        assert_eq!(
            c.client_ip(peer, &[b"[2001:db8::7]:443".to_vec()]),
            ip("2001:db8::7")
        );
        // Not UTF-8: not an address; the walk stops at the last good hop.
        assert_eq!(
            c.client_ip(peer, &[b"203.0.113.5, \xff\xfe".to_vec()]),
            peer
        );
        assert_eq!(
            c.client_ip(ip("192.0.2.1"), &[b"10.0.0.1".to_vec()]),
            ip("192.0.2.1")
        );
    }
}

//! Built-in plugin `correlation-id`: every request leaves the gateway with a correlation id in a
//! header — the one the client sent, or a fresh UUIDv4 — and the response carries it back, so a
//! client, the gateway's logs and the upstream's logs can name the same request.
//!
//! Configuration (`schema.json`): `{"header": "x-correlation-id", "generate": true,
//! "echo_downstream": true}`, every field optional. See `docs/plugins/correlation-id.md`.

use barbacane_sdk::http::is_token;
use barbacane_sdk::root::ConfiguredRoot;
use barbacane_sdk::{config, http};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::Action;
use serde::Deserialize;
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

/// The plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The header carrying the id, both ways.
    #[serde(default = "default_header")]
    pub header: String,
    /// Generate an id when the request has none.
    #[serde(default = "enabled")]
    pub generate: bool,
    /// Echo the id on the response.
    #[serde(default = "enabled")]
    pub echo_downstream: bool,
}

fn default_header() -> String {
    String::from("x-correlation-id")
}

fn enabled() -> bool {
    true
}

impl Config {
    /// Parses and normalises the configuration: the header name is lowercased (the Proxy-Wasm
    /// maps carry lowercase names) and must be an HTTP token.
    pub fn from_json(bytes: Option<Vec<u8>>) -> Result<Config, config::ConfigError> {
        let mut config: Config = config::parse(bytes)?;
        config.header = config.header.to_ascii_lowercase();
        if !is_token(&config.header) {
            return Err(config::ConfigError {
                pointer: String::from("/header"),
                message: format!("'{}' is not a header name", config.header),
            });
        }
        Ok(config)
    }
}

/// A random (version 4) UUID, lowercase hex. `None` when the host gives no randomness.
pub fn uuid_v4() -> Option<String> {
    let mut bytes = [0u8; 16];
    // On wasm32-wasip1 this is WASI `random_get`, which the gateway serves from the OS.
    getrandom::fill(&mut bytes).ok()?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    // By hand, into a template whose dashes are in place: this runs on every request, and
    // `format!` per byte, or pushing a `char` at a time, costs more in the compiled Wasm.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const DIGITS_AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut id = *b"00000000-0000-0000-0000-000000000000";
    for (byte, at) in bytes.iter().zip(DIGITS_AT) {
        id[at] = HEX[usize::from(byte >> 4)];
        id[at + 1] = HEX[usize::from(byte & 0x0f)];
    }
    // Hex digits and dashes: always UTF-8.
    String::from_utf8(id.to_vec()).ok()
}

/// The root context: the configuration parsed into [`Config`], shared by every request's stream.
fn root() -> impl RootContext {
    ConfiguredRoot::new(Config::from_json, |config| {
        Box::new(Stream {
            config: config.clone(),
            id: None,
        })
    })
}

struct Stream {
    config: Rc<Config>,
    /// The id this request travels with, once known.
    id: Option<String>,
}

impl Context for Stream {}

// The callbacks implemented below, and only those, are called (see `barbacane_sdk::callbacks`).
barbacane_sdk::stream_callbacks!(request_headers, response_headers);

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let incoming =
            http::request_header(self, &self.config.header).filter(|id| !id.trim().is_empty());
        self.id = match incoming {
            Some(id) => Some(id),
            None if self.config.generate => {
                let id = uuid_v4();
                match &id {
                    Some(id) => self.set_http_request_header(&self.config.header, Some(id)),
                    // Forwarding without an id beats failing the request.
                    None => log::warn!("no randomness available; request forwarded without an id"),
                }
                id
            }
            None => None,
        };
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.config.echo_downstream
            && let Some(id) = &self.id
        {
            self.set_http_response_header(&self.config.header, Some(id));
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let id = uuid_v4().unwrap();
        assert_eq!(id.len(), 36);
        let bytes = id.as_bytes();
        assert_eq!(bytes[14], b'4');
        assert!(matches!(bytes[19], b'8' | b'9' | b'a' | b'b'), "{id}");
        for (i, c) in id.char_indices() {
            let dash = matches!(i, 8 | 13 | 18 | 23);
            assert_eq!(c == '-', dash, "{id}");
            assert!(
                dash || c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
                "{id}"
            );
        }
        assert_ne!(uuid_v4().unwrap(), id);
        // Every random digit is written: each position but the version's varies between ids.
        let ids: Vec<Vec<u8>> = (0..64).map(|_| uuid_v4().unwrap().into_bytes()).collect();
        for at in (0..36).filter(|i| !matches!(i, 8 | 13 | 14 | 18 | 23)) {
            assert!(
                ids.iter().any(|other| other[at] != ids[0][at]),
                "position {at}"
            );
        }
    }

    #[test]
    fn configuration() {
        let config = Config::from_json(None).unwrap();
        assert_eq!(
            config,
            Config {
                header: "x-correlation-id".into(),
                generate: true,
                echo_downstream: true
            }
        );
        let config = Config::from_json(Some(br#"{"header": "X-Trace"}"#.to_vec())).unwrap();
        assert_eq!(config.header, "x-trace");
        let e = Config::from_json(Some(br#"{"header": ":path"}"#.to_vec())).unwrap_err();
        assert_eq!(e.pointer, "/header");
        let e = Config::from_json(Some(br#"{"generate": "yes"}"#.to_vec())).unwrap_err();
        assert_eq!(e.pointer, "/generate");
    }
}

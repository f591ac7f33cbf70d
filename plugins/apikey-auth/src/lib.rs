//! Built-in plugin `apikey-auth`: authenticates requests by an API key, read from a header
//! (`x-api-key` by default) or, when the header has none, from a query parameter.
//!
//! * Keys are configured as SHA-256 hashes, never in clear: the plugin hashes the key it is
//!   shown and compares the digest with every configured one in constant time.
//! * A known key: the consumer is stored for the rest of the chain (`barbacane_sdk::consumer`,
//!   which `acl` and `rate-limit` read) and forwarded upstream as `x-consumer-id` /
//!   `x-consumer-groups`; the key is removed from the forwarded request unless
//!   `hide_credentials` is false.
//! * No key, an unknown key, or several different keys: a `401` problem with
//!   `WWW-Authenticate: ApiKey realm="…"`.
//! * `x-consumer-id` / `x-consumer-groups` sent by the client are always removed first, so a
//!   client can never name itself.
//!
//! Header values are read as bytes: a key need not be UTF-8, and no header can make the plugin
//! trap. Configuration: `schema.json`; reference in `docs/plugins/apikey-auth.md`.

mod keys;
mod query;

pub use keys::{Config, ConsumerEntry, Keys, Outcome, Source};
pub use query::without_query_param;

use barbacane_sdk::consumer::{self, HEADER_GROUPS, HEADER_ID};
use barbacane_sdk::root::ConfiguredRoot;
use barbacane_sdk::{Problem, config};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::Action;
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

/// The name the plugin records as `authenticated_by`.
pub const PLUGIN_NAME: &str = "apikey-auth";

/// The root context: the configuration parsed into [`Keys`], shared by every request's stream.
fn root() -> impl RootContext {
    ConfiguredRoot::new(
        |bytes| config::parse(bytes).and_then(Keys::new),
        |keys| Box::new(Stream { keys: keys.clone() }),
    )
}

struct Stream {
    keys: Rc<Keys>,
}

impl Context for Stream {}

// The callbacks implemented below, and only those, are called (see `barbacane_sdk::callbacks`).
barbacane_sdk::stream_callbacks!(request_headers);

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Identity headers come from an auth plugin only, never from the client.
        self.set_http_request_header(HEADER_ID, None);
        self.set_http_request_header(HEADER_GROUPS, None);

        // Bytes, not `get_http_request_header`: the String API traps on a non-UTF-8 value.
        let header_values: Vec<Vec<u8>> = match self.keys.header() {
            Some(name) => barbacane_sdk::http::request_header_bytes(self, name),
            None => Vec::new(),
        };
        let target = self
            .get_http_request_header_bytes(":path")
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_default();

        match self.keys.authenticate(&header_values, &target) {
            Outcome::Authenticated { consumer, source } => {
                consumer::set(self, &consumer);
                self.set_http_request_header(HEADER_ID, Some(&consumer.id));
                if !consumer.groups.is_empty() {
                    self.set_http_request_header(HEADER_GROUPS, Some(&consumer.groups.join(", ")));
                }
                if self.keys.hide_credentials() {
                    self.hide(source, &target);
                }
                Action::Continue
            }
            Outcome::Refused(detail) => {
                Problem::new(401, "unauthorized", detail)
                    .with_header("www-authenticate", self.keys.challenge())
                    .send(self);
                Action::Pause
            }
        }
    }
}

impl Stream {
    /// Removes the key from the request that goes upstream.
    fn hide(&self, source: Source, target: &str) {
        match source {
            Source::Header => {
                if let Some(name) = self.keys.header() {
                    self.set_http_request_header(name, None);
                }
            }
            Source::Query => {
                let stripped = self
                    .keys
                    .query_param()
                    .and_then(|name| without_query_param(target, name));
                if let Some(stripped) = stripped {
                    self.set_http_request_header(":path", Some(&stripped));
                }
            }
        }
    }
}

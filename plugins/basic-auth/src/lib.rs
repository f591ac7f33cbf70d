//! Built-in plugin `basic-auth`: HTTP Basic authentication (RFC 7617) against password hashes
//! in the configuration — bcrypt (`htpasswd -B`) or argon2 PHC strings, never passwords.
//!
//! * Valid credentials: the user becomes the consumer, stored for the rest of the chain
//!   (`barbacane_sdk::consumer`, which `acl` and `rate-limit` read) and forwarded upstream as
//!   `x-consumer-id` / `x-consumer-groups`; `Authorization` is removed from the forwarded request
//!   unless `hide_credentials` is false.
//! * No credentials, malformed ones (not base64, not UTF-8, no `:`), an unknown user or a wrong
//!   password: a `401` problem with `WWW-Authenticate: Basic realm="…", charset="UTF-8"`. Unknown
//!   users and wrong passwords get the same reply after the same work (see [`Users`]).
//! * `x-consumer-id` / `x-consumer-groups` sent by the client are always removed first.
//!
//! Header values are read as bytes, so no header can make the plugin trap. Configuration:
//! `schema.json`; reference in `docs/plugins/basic-auth.md`.

mod credentials;
mod hashes;
mod users;

pub use credentials::{Credentials, Malformed, parse as parse_credentials};
pub use hashes::{Hash, MAX_ARGON2_MEMORY_KIB, MAX_ARGON2_WORK, MAX_BCRYPT_COST};
pub use users::{Config, UserEntry, Users};

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
pub const PLUGIN_NAME: &str = "basic-auth";

/// The root context: the configuration parsed into [`Users`], shared by every request's stream.
fn root() -> impl RootContext {
    ConfiguredRoot::new(
        |bytes| config::parse(bytes).and_then(Users::new),
        |users| {
            Box::new(Stream {
                users: users.clone(),
            })
        },
    )
}

struct Stream {
    users: Rc<Users>,
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
        let values = barbacane_sdk::http::request_header_bytes(self, "authorization");
        let detail = match parse_credentials(&values) {
            Ok(credentials) => {
                match self
                    .users
                    .authenticate(&credentials.username, &credentials.password)
                {
                    Some(consumer) => {
                        consumer::set(self, &consumer);
                        self.set_http_request_header(HEADER_ID, Some(&consumer.id));
                        if !consumer.groups.is_empty() {
                            let groups = consumer.groups.join(", ");
                            self.set_http_request_header(HEADER_GROUPS, Some(&groups));
                        }
                        if self.users.hide_credentials() {
                            self.set_http_request_header("authorization", None);
                        }
                        return Action::Continue;
                    }
                    // One reply for an unknown user and a wrong password.
                    None => "invalid username or password",
                }
            }
            Err(malformed) => malformed.detail(),
        };
        Problem::new(401, "unauthorized", detail)
            .with_header("www-authenticate", self.users.challenge())
            .send(self);
        Action::Pause
    }
}

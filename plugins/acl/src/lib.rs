//! Built-in plugin `acl`: allows or refuses the consumer an authentication plugin earlier in the
//! chain (`apikey-auth`, `basic-auth`, `jwt-auth`, `oauth2-introspection`) authenticated, by its
//! groups (`allow` / `deny`, as Kong's ACL) and by claim rules (`any_of` / `all_of` / `none_of`).
//!
//! * The consumer is read from the request's filter state (`barbacane_sdk::consumer::get`),
//!   never from the `x-consumer-*` headers, which a client could write itself.
//! * No consumer — no authentication plugin before `acl` in the chain — is a `401` problem: the
//!   chain is misconfigured, and failing closed is the only safe answer.
//! * A refused consumer is a `403` problem; deny wins over allow.
//!
//! Configuration: `schema.json`; reference in `docs/plugins/acl.md`.

mod policy;

pub use policy::{ClaimRule, ClaimRuleConfig, Config, Decision, Match, Policy};

use barbacane_sdk::consumer::{self, HEADER_GROUPS};
use barbacane_sdk::{Problem, config};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::Cell;
use std::rc::Rc;

/// The module's entry point (`_initialize`), in a private module so that the exported function
/// the macro writes needs no public docs.
mod entry {
    use super::Root;
    use proxy_wasm::traits::RootContext;
    use proxy_wasm::types::LogLevel;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
    }}
}

// Per-request allocations come from free lists, not dlmalloc (see `barbacane_sdk::allocator`).
barbacane_sdk::allocator!();

/// The detail of the 401 when no consumer was authenticated.
pub const NO_CONSUMER: &str = "no authenticated consumer: acl needs an authentication plugin \
    (apikey-auth, basic-auth, jwt-auth, oauth2-introspection) before it in the middleware chain";

#[derive(Default)]
struct Root {
    policy: Option<Rc<Policy>>,
    /// Whether the missing-consumer warning was logged (once per VM, not once per request).
    warned: Rc<Cell<bool>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match config::parse(self.get_plugin_configuration()).and_then(Policy::new) {
            Ok(policy) => {
                self.policy = Some(Rc::new(policy));
                true
            }
            Err(e) => {
                // The gateway quotes this line when it refuses the middleware at compile time.
                log::error!("{e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let policy = self.policy.clone()?;
        Some(Box::new(Stream {
            policy,
            warned: self.warned.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    policy: Rc<Policy>,
    warned: Rc<Cell<bool>>,
}

impl Context for Stream {}

// The callbacks implemented below, and only those, are called (see `barbacane_sdk::callbacks`).
barbacane_sdk::stream_callbacks!(request_headers);

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let consumer = consumer::get(self);
        match self.policy.decide(consumer.as_ref()) {
            Decision::Allow => {
                if self.policy.hide_groups_header() {
                    self.set_http_request_header(HEADER_GROUPS, None);
                }
                Action::Continue
            }
            Decision::NoConsumer => {
                // Worth a warning, once: every request of this chain fails until it is fixed.
                if !self.warned.replace(true) {
                    log::warn!("{NO_CONSUMER}");
                }
                Problem::new(401, "unauthorized", NO_CONSUMER).send(self);
                Action::Pause
            }
            Decision::Deny(reason) => {
                let id = consumer.map(|c| c.id).unwrap_or_default();
                // The reason names the policy's groups and claims: for logs, not for clients.
                log::debug!("consumer '{id}' refused: {reason}");
                Problem::new(
                    403,
                    "forbidden",
                    format!("consumer '{id}' is not allowed here"),
                )
                .send(self);
                Action::Pause
            }
        }
    }
}

//! Built-in plugin `oauth2-introspection`: checks bearer tokens by asking the authorization
//! server (OAuth 2.0 Token Introspection, RFC 7662), so opaque tokens can protect an API.
//!
//! * [`config`]: the configuration, and the introspection request's fixed parts;
//! * [`token`]: the bearer token of a request (RFC 6750);
//! * [`answer`]: the introspection response, or why it is not one;
//! * [`cache`]: answers kept per token digest, with a TTL bounded by the token's `exp`;
//! * [`verdict`]: what an answer means here: the consumer, or a 401/403 challenge.
//!
//! This module owns the filter. A request's token is looked up in the cache; on a miss the
//! request is paused on its headers while the plugin calls the introspection endpoint
//! (`proxy_http_call` to an upstream of `x-barbacane-upstreams`), and resumed or answered when
//! the answer comes. A let-through request carries the consumer (`barbacane_sdk::consumer`) for
//! the plugins after this one, and `x-consumer-id` / `x-consumer-groups` / configured claim
//! headers upstream (client-sent values of those removed first). When the token cannot be
//! checked — endpoint down, timeout, non-200, not an answer — the request is refused with 503:
//! fail closed.
//!
//! Configuration: `schema.json`; reference and examples in `docs/plugins/oauth2-introspection.md`.

pub mod answer;
pub mod cache;
pub mod config;
pub mod token;
pub mod verdict;

use answer::Answer;
use barbacane_sdk::{Problem, consumer, http};
use cache::Cache;
use config::Settings;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};
use token::Bearer;
use verdict::Pass;

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

#[derive(Default)]
struct Root {
    settings: Option<Rc<Settings>>,
    /// This replica's answers, shared by its streams (one thread: no locking needed).
    cache: Option<Rc<RefCell<Cache>>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match barbacane_sdk::config::parse(self.get_plugin_configuration()).and_then(Settings::new)
        {
            Ok(settings) => {
                self.cache = Some(Rc::new(RefCell::new(Cache::new(
                    settings.cache_max_entries,
                ))));
                self.settings = Some(Rc::new(settings));
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
        Some(Box::new(Stream {
            settings: self.settings.clone()?,
            cache: self.cache.clone()?,
            pending: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// An introspection call under way for this stream.
struct Pending {
    call: u32,
    key: cache::Key,
}

struct Stream {
    settings: Rc<Settings>,
    cache: Rc<RefCell<Cache>>,
    pending: Option<Pending>,
}

impl Context for Stream {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(pending) = self.pending.take_if(|p| p.call == token_id) else {
            return;
        };
        // A failed call (reset) has no `:status`; the host turns connection failures and
        // timeouts into 503/504 responses, as Envoy does.
        let status = self.get_http_call_response_header(":status");
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let answer = match answer::parse(status.as_deref(), &body) {
            Ok(answer) => Rc::new(answer),
            Err(why) => {
                log::warn!("oauth2-introspection: failing closed: {why}");
                verdict::unavailable().send(self);
                return;
            }
        };
        let (now_s, now_ns) = self.now();
        let settings = self.settings.clone();
        if let Some(expires) = cache::expiry(
            &answer,
            now_ns,
            settings.cache_ttl,
            settings.negative_cache_ttl,
        ) && let Ok(mut cache) = self.cache.try_borrow_mut()
        {
            cache.put(pending.key, answer.clone(), body.len(), expires);
        }
        if self.decide(&answer, now_s) {
            self.resume_http_request();
        }
    }
}

impl Stream {
    /// Seconds and nanoseconds since the epoch (a clock before it reads as the epoch).
    fn now(&self) -> (i64, u64) {
        let since = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let seconds = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        (seconds, nanos)
    }

    /// Judges `answer`: lets the request through (true) or answers it (false).
    fn decide(&mut self, answer: &Answer, now: i64) -> bool {
        match verdict::judge(&self.settings, answer, now) {
            Ok(pass) => {
                self.pass(pass);
                true
            }
            Err(problem) => {
                problem.send(self);
                false
            }
        }
    }

    /// Hands the consumer to the rest of the chain and the identity headers to the upstream.
    /// Values the client sent for those headers go first: only this plugin sets them.
    fn pass(&mut self, pass: Pass) {
        consumer::set(self, &pass.consumer);
        let settings = self.settings.clone();
        for (_, header) in &settings.claims_to_headers {
            self.set_http_request_header(header, None);
        }
        self.set_http_request_header(consumer::HEADER_ID, None);
        self.set_http_request_header(consumer::HEADER_GROUPS, None);
        if !pass.consumer.id.is_empty() && is_header_safe(&pass.consumer.id) {
            self.set_http_request_header(consumer::HEADER_ID, Some(&pass.consumer.id));
        }
        let groups = pass.consumer.groups.join(",");
        if !groups.is_empty() && is_header_safe(&groups) {
            self.set_http_request_header(consumer::HEADER_GROUPS, Some(&groups));
        }
        for (header, value) in &pass.headers {
            self.set_http_request_header(header, Some(value));
        }
        if settings.hide_credentials {
            self.set_http_request_header("authorization", None);
        }
    }

    /// Sends the introspection request; false if the host refused it.
    fn introspect(&mut self, token: &str, key: cache::Key) -> bool {
        let settings = self.settings.clone();
        let body = settings.request_body(token);
        let headers = vec![
            (":method", "POST"),
            (":path", settings.path.as_str()),
            (":authority", settings.authority.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
            ("authorization", settings.authorization.as_str()),
        ];
        match self.dispatch_http_call(
            &settings.upstream,
            headers,
            Some(body.as_bytes()),
            Vec::new(),
            Duration::from_millis(settings.timeout_ms),
        ) {
            Ok(call) => {
                self.pending = Some(Pending { call, key });
                true
            }
            Err(status) => {
                log::warn!(
                    "oauth2-introspection: failing closed: the call to upstream '{}' was refused \
                     ({status:?}); is it in x-barbacane-upstreams?",
                    settings.upstream
                );
                false
            }
        }
    }

    fn refuse(&self, problem: Problem) -> Action {
        problem.send(self);
        Action::Pause
    }
}

/// Whether a value can go in a header as it is (no control characters).
fn is_header_safe(value: &str) -> bool {
    !value.chars().any(|c| c.is_control() && c != '\t')
}

// The callbacks implemented below, and only those, are called (see `barbacane_sdk::callbacks`).
barbacane_sdk::stream_callbacks!(request_headers);

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let authorization = http::request_header(self, "authorization");
        let token = match token::bearer(authorization.as_deref()) {
            Bearer::Token(token) => token.to_string(),
            Bearer::Missing => return self.refuse(verdict::missing_token(&self.settings)),
            Bearer::Malformed(why) => {
                return self.refuse(verdict::malformed_token(&self.settings, why));
            }
        };
        let key = cache::key(&token);
        let (now_s, now_ns) = self.now();
        let cached = self
            .cache
            .try_borrow_mut()
            .ok()
            .and_then(|mut cache| cache.get(&key, now_ns));
        if let Some(answer) = cached {
            return if self.decide(&answer, now_s) {
                Action::Continue
            } else {
                Action::Pause
            };
        }
        if self.introspect(&token, key) {
            // Resumed, or answered, when the introspection answer comes.
            Action::Pause
        } else {
            self.refuse(verdict::unavailable())
        }
    }
}

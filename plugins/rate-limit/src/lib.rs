//! Built-in plugin `rate-limit`: a token bucket per client, shared by every worker of the
//! gateway, answering `429 Too Many Requests` problems with `Retry-After` once it is empty.
//!
//! * [`config`]: the configuration and its checks;
//! * [`partition`]: which bucket a request counts against (client IP, header, consumer, claim);
//! * [`bucket`]: the token bucket (GCRA: one timestamp per client);
//! * [`table`]: the buckets in Proxy-Wasm shared data, bounded, updated with compare-and-swap so
//!   that all replicas share each limit;
//! * [`fields`]: the `RateLimit-Policy` / `RateLimit` response headers (IETF draft).
//!
//! This module owns the filter: the request is counted in `on_http_request_headers`, refused
//! there or let through, and the upstream's response gets the RateLimit headers.
//!
//! Configuration: `schema.json`; reference and examples in `docs/plugins/rate-limit.md`.

pub mod bucket;
pub mod config;
pub mod fields;
pub mod partition;
pub mod table;

use barbacane_sdk::{Problem, consumer, http};
use bucket::{Decision, ceil_seconds};
use config::{KeySource, Policy};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::UNIX_EPOCH;
use table::{Fingerprints, Outcome, Table};

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

/// The host's shared data (one namespace per plugin, shared by every replica of every worker).
struct SharedData;

impl table::Store for SharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        proxy_wasm::hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> bool {
        proxy_wasm::hostcalls::set_shared_data(key, Some(value), Some(cas)).is_ok()
    }
}

#[derive(Default)]
struct Root {
    policy: Option<Rc<Policy>>,
    /// Whether this replica already warned that it let requests through uncounted.
    warned: Rc<Cell<bool>>,
    /// Recent partition keys' fingerprints, shared by this replica's streams.
    fingerprints: Rc<RefCell<Fingerprints>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match barbacane_sdk::config::parse(self.get_plugin_configuration()).and_then(Policy::new) {
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
        Some(Box::new(Stream {
            policy: self.policy.clone()?,
            warned: self.warned.clone(),
            fingerprints: self.fingerprints.clone(),
            answered: false,
            ratelimit: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    policy: Rc<Policy>,
    warned: Rc<Cell<bool>>,
    fingerprints: Rc<RefCell<Fingerprints>>,
    /// The request was refused here: our own local reply passes back through this filter's
    /// response phase, as Envoy's do, and already has its headers.
    answered: bool,
    /// The `ratelimit` value for the upstream's response (which also gets the policy's
    /// `ratelimit-policy`), when the policy sends the headers.
    ratelimit: Option<String>,
}

impl Context for Stream {}

impl Stream {
    /// What the policy needs from the request, and nothing more.
    fn partition_request(&self) -> partition::Request {
        let mut request = partition::Request {
            ip: http::client_ip(self, &self.policy.trusted_proxies),
            ..partition::Request::default()
        };
        match &self.policy.key {
            KeySource::Ip => {}
            KeySource::Header(name) => request.header = http::request_header(self, name),
            KeySource::Consumer | KeySource::Claim(_) => request.consumer = consumer::get(self),
        }
        request
    }

    fn now(&self) -> u64 {
        // A clock before the epoch reads as the epoch; u64 nanoseconds last until 2554.
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn refuse(&mut self, problem: Problem) -> Action {
        self.answered = true;
        problem.send(self);
        Action::Pause
    }

    /// Lets a request through that could not be counted, saying so once per replica.
    fn uncounted(&self, why: &str) -> Action {
        if !self.warned.replace(true) {
            log::warn!("rate-limit: letting requests through uncounted: {why}");
        }
        Action::Continue
    }
}

// The callbacks implemented below, and only those, are called (see `barbacane_sdk::callbacks`).
barbacane_sdk::stream_callbacks!(request_headers, response_headers);

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let policy = self.policy.clone();
        let key = match partition::key(&policy, &self.partition_request()) {
            Ok(key) => key,
            Err(problem) => return self.refuse(problem),
        };
        let table = Table {
            name: &policy.table,
            slots: policy.slots,
        };
        let outcome = table::take(
            &SharedData,
            &table,
            &policy.bucket,
            self.fingerprints.borrow_mut().of(key),
            self.now(),
        );
        match outcome {
            Outcome::Decided(Decision::Allow {
                remaining, reset, ..
            }) => {
                if policy.headers {
                    self.ratelimit = Some(fields::ratelimit(&policy, remaining, reset));
                }
                Action::Continue
            }
            Outcome::Decided(Decision::Limit { retry_after, reset }) => {
                // Never 0: the bucket refuses only while a token is still on its way.
                let retry = ceil_seconds(retry_after).max(1);
                let mut problem = Problem::new(
                    429,
                    "rate-limited",
                    format!(
                        "too many requests: {} per {} s are allowed; retry in {retry} s",
                        policy.limit, policy.window
                    ),
                )
                .with_header("retry-after", retry.to_string());
                if policy.headers {
                    problem = problem
                        .with_header("ratelimit-policy", policy.policy_field.clone())
                        .with_header("ratelimit", fields::ratelimit(&policy, 0, reset));
                }
                self.refuse(problem)
            }
            // Fail open, like Kong's `fault_tolerant` default: a limiter that cannot count
            // must not take the API down with it.
            Outcome::Full => {
                self.uncounted("the shared table is full of active clients; raise max_partitions")
            }
            Outcome::Contended => {
                self.uncounted("shared data refused every update (contention, or it is full)")
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.answered {
            return Action::Continue;
        }
        if let Some(ratelimit) = self.ratelimit.take() {
            self.set_http_response_header("ratelimit-policy", Some(&self.policy.policy_field));
            self.set_http_response_header("ratelimit", Some(&ratelimit));
        }
        Action::Continue
    }
}

//! Built-in plugin `jwt-auth`: authenticates requests with a JSON Web Token (a JWS, RFC 7515 and
//! RFC 7519), like Envoy's `jwt_authn` and Kong's `jwt` plugin.
//!
//! * The token is read from `Authorization: Bearer …` (or other headers, a query parameter, a
//!   cookie), its signature checked with a key bound to the token's `alg` — HS256/384/512,
//!   RS256/384/512, PS256/384/512, ES256/384, EdDSA — chosen by `kid` when the token names one.
//!   `alg: none` and algorithm confusion are always refused.
//! * Keys are inline (HMAC secrets, PEM public keys, a JWKS) or a JWKS fetched from an upstream
//!   by callout: at start, then every `refresh_interval` from the root context's tick, keeping the
//!   last good key set when a fetch fails. Requests that arrive while the first fetch is in flight
//!   wait for it; with no key set at all the plugin fails closed (503).
//! * `exp`/`nbf` (with leeway), `iss`, `aud` and required claims are checked; an accepted token's
//!   consumer is stored for the rest of the chain (`barbacane_sdk::consumer`) and chosen claims
//!   are forwarded as request headers.
//! * Refusals are RFC 9457 problems: 401 with an RFC 6750 `WWW-Authenticate` challenge for a
//!   missing or invalid token, 403 for claims not accepted here, 503 while no JWKS is known.
//!
//! Modules: [`settings`] (configuration), [`extract`] (finding and stripping the token),
//! [`token`] (JWS parsing), [`keys`] (algorithms, keys, signatures), [`verify`] (the decision),
//! [`remote`] (the JWKS fetch state). Reference: `docs/plugins/jwt-auth.md`.

pub mod cache;
pub mod extract;
pub mod keys;
pub mod remote;
pub mod settings;
pub mod token;
pub mod verify;

use barbacane_sdk::{config, consumer};
use cache::{TokenCache, Verified};
use extract::Found;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType, Status};
use remote::{Outcome, RemoteState, Waiter};
use settings::{Settings, Source};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};
use token::Token;
use verify::{Identity, Refusal, Selection};

/// The module's entry point (`_initialize`), in a private module so that the exported function
/// the macro writes needs no public docs.
mod entry {
    use super::Root;
    use proxy_wasm::traits::RootContext;
    use proxy_wasm::types::LogLevel;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
            Box::new(Root { context_id, shared: None })
        });
    }}
}

// Per-request allocations come from free lists, not dlmalloc (see `barbacane_sdk::allocator`).
barbacane_sdk::allocator!();

/// How often the root context checks whether a JWKS fetch is due.
const TICK: Duration = Duration::from_secs(1);

/// What the root context and every stream of the VM share.
struct Shared {
    settings: Settings,
    /// The remote JWKS, when configured.
    remote: Option<RefCell<RemoteState>>,
    /// Tokens already verified.
    cache: RefCell<TokenCache>,
}

/// Seconds since the epoch, from the host's clock.
fn now<C: Context + ?Sized>(ctx: &C) -> f64 {
    ctx.get_current_time()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What to do with a request whose token parsed.
enum Step {
    /// Answer now.
    Done(Result<Identity, Refusal>),
    /// Wait for the fetch in flight.
    Wait,
    /// Start a fetch (the token names an unknown `kid`), then wait for it.
    Fetch,
}

/// Decides on `token`. With `may_wait` false (a request that already waited) the answer is
/// always [`Step::Done`].
fn decide(shared: &Shared, token: &Token, now: f64, may_wait: bool) -> Step {
    let settings = &shared.settings;
    if !settings.allows(token.alg) {
        return Step::Done(Err(Refusal::Invalid(format!(
            "algorithm {} is not accepted",
            token.alg.name()
        ))));
    }
    let remote = shared.remote.as_ref().map(RefCell::borrow);
    let remote_keys = remote.as_ref().and_then(|r| r.keys.clone());
    let keys = settings
        .static_keys
        .iter()
        .chain(remote_keys.iter().flat_map(|k| k.iter()));
    let (detail, unknown_kid) = match verify::select(keys, token) {
        Selection::Candidates(candidates) => {
            if !verify::signature_ok(&candidates, token) {
                return Step::Done(Err(Refusal::Invalid(String::from(
                    "the token signature is invalid",
                ))));
            }
            let result = verify::check_claims(settings, &token.claims, now)
                .and_then(|()| verify::identity(settings, token.claims.clone()));
            return Step::Done(result);
        }
        Selection::WrongAlg(detail) => return Step::Done(Err(Refusal::Invalid(detail))),
        Selection::UnknownKid(detail) => (detail, true),
        Selection::NoKeyForAlg(detail) => (detail, false),
    };
    let Some(remote) = remote else {
        return Step::Done(Err(Refusal::Invalid(detail)));
    };
    if may_wait && remote.fetching() && (remote.keys.is_none() || unknown_kid) {
        return Step::Wait;
    }
    if remote.keys.is_none() {
        // Fail closed: without keys nothing can be verified. 503 rather than 401: the token may
        // well be good, and clients should retry rather than drop it.
        let why = remote.last_error.as_deref().unwrap_or("no answer yet");
        return Step::Done(Err(Refusal::Unavailable {
            detail: format!("the signing keys (JWKS) are not available: {why}"),
            retry_after: remote.retry_after(now),
        }));
    }
    if may_wait && unknown_kid && remote.may_refetch(now) {
        return Step::Fetch;
    }
    Step::Done(Err(Refusal::Invalid(detail)))
}

/// The final decision on `token`, without waiting for a fetch.
fn settle(shared: &Shared, token: &Token, now: f64) -> Result<Identity, Refusal> {
    match decide(shared, token, now, false) {
        Step::Done(result) => result,
        // Not returned without `may_wait`; refused rather than left hanging all the same.
        Step::Wait | Step::Fetch => Err(Refusal::Invalid(String::from(
            "the token could not be verified",
        ))),
    }
}

/// Sends the JWKS fetch from `ctx` (the root context, or a stream whose token named an unknown
/// `kid`; its answer comes back to that context).
fn start_fetch<C: Context + ?Sized>(ctx: &C, shared: &Shared, now: f64) -> Result<(), Status> {
    let Some(remote) = &shared.remote else {
        return Ok(());
    };
    let settings = remote.borrow().settings.clone();
    let sent = ctx.dispatch_http_call(
        &settings.upstream,
        vec![
            (":method", "GET"),
            (":path", &settings.path),
            (":authority", &settings.authority),
            ("accept", "application/json, application/jwk-set+json"),
        ],
        None,
        Vec::new(),
        Duration::from_millis(u64::from(settings.timeout_ms)),
    );
    let mut state = remote.borrow_mut();
    match sent {
        Ok(token) => {
            state.started(token, now);
            Ok(())
        }
        Err(status) => {
            let why = format!("the JWKS fetch could not be sent ({status:?})");
            log::warn!("jwt-auth: {why}");
            state.not_sent(why, now);
            Err(status)
        }
    }
}

/// Handles the answer to callout `token` in `ctx` (the context that sent it), then answers the
/// requests that waited for it.
fn on_answer<C: Context + ?Sized>(
    ctx: &C,
    shared: &Shared,
    own_context: u32,
    token: u32,
    body_size: usize,
) {
    let Some(remote) = &shared.remote else {
        return;
    };
    let now = now(ctx);
    let status = ctx
        .get_http_call_response_header_bytes(":status")
        .map(|s| String::from_utf8_lossy(&s).into_owned());
    let body = ctx
        .get_http_call_response_body(0, body_size)
        .unwrap_or_default();
    let outcome = remote
        .borrow_mut()
        .answered(token, status.as_deref(), &body, now);
    match &outcome {
        None => return,
        Some(Outcome::Loaded(_, skipped)) => {
            shared.cache.borrow_mut().clear();
            for (index, why) in skipped {
                log::warn!("jwt-auth: JWKS key {index} skipped: {why}");
            }
        }
        Some(Outcome::Failed { why, repeated }) => {
            let kept = match remote.borrow().keys.as_ref() {
                Some(keys) => format!("keeping the last good key set ({} keys)", keys.len()),
                None => String::from("no key set yet: tokens cannot be verified"),
            };
            let retry = remote.borrow().settings.retry_interval;
            // Once per kind of failure, not at every retry.
            if *repeated {
                log::debug!("jwt-auth: JWKS fetch failed again: {why}");
            } else {
                log::warn!("jwt-auth: JWKS fetch failed: {why}; {kept}; retrying every {retry} s");
            }
        }
    }
    answer_waiters(ctx, shared, own_context, now);
}

/// Answers every request waiting for the fetch, each in its own context.
fn answer_waiters<C: Context + ?Sized>(ctx: &C, shared: &Shared, own_context: u32, now: f64) {
    let Some(remote) = &shared.remote else {
        return;
    };
    let waiters = std::mem::take(&mut remote.borrow_mut().waiters);
    for waiter in waiters {
        // A request whose client went away has no context any more.
        if hostcalls::set_effective_context(waiter.context_id).is_err() {
            continue;
        }
        let result = settle(shared, &waiter.token, now);
        if finish(ctx, shared, result, &waiter.found) == Action::Continue {
            let _ = hostcalls::resume_http_request();
        }
    }
    let _ = hostcalls::set_effective_context(own_context);
}

/// Carries out a decision on the effective stream: remembers and admits an accepted token
/// (`Continue`), or sends the problem (`Pause`).
fn finish<C: Context + ?Sized>(
    ctx: &C,
    shared: &Shared,
    result: Result<Identity, Refusal>,
    found: &Found,
) -> Action {
    match result {
        Ok(identity) => {
            // The claims passed, so their times read; a token whose did not is not cached.
            let times = verify::Times::of(&identity.consumer.claims).ok();
            let verified = Rc::new(Verified {
                consumer: consumer::encode(&identity.consumer),
                times: times.unwrap_or_default(),
                identity,
            });
            if times.is_some() {
                let mut cache = shared.cache.borrow_mut();
                cache.insert(&found.token, verified.clone());
            }
            admit(ctx, &shared.settings, &verified, found)
        }
        Err(refusal) => {
            send_problem(&refusal, &shared.settings);
            Action::Pause
        }
    }
}

/// Lets the effective stream through as `verified`'s consumer: forwards its headers and stores
/// the consumer for the rest of the chain.
fn admit<C: Context + ?Sized>(
    ctx: &C,
    settings: &Settings,
    verified: &Verified,
    found: &Found,
) -> Action {
    for (name, value) in &verified.identity.headers {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value.as_deref());
    }
    consumer::set_encoded(ctx, &verified.consumer);
    if settings.strip_token
        && let Some(source) = settings.sources.get(found.source)
    {
        strip_token(source);
    }
    Action::Continue
}

/// Sends `refusal` as the effective stream's local response.
fn send_problem(refusal: &Refusal, settings: &Settings) {
    let problem = refusal.problem(&settings.realm);
    let body = problem.body();
    let _ = hostcalls::send_http_response(
        u32::from(problem.status),
        problem.response_headers(),
        Some(&body),
    );
}

/// The effective stream's request headers, values decoded lossily: a client may send any bytes,
/// and the SDK's string accessors would trap on invalid UTF-8.
fn request_headers() -> Vec<(String, String)> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name, barbacane_sdk::http::lossy(value)))
        .collect()
}

/// The request headers that `sources` read (and `:path` for a query source): one lookup each, or
/// the whole map when a cookie source needs every `cookie` header. A header source reads the
/// first value, as the whole map's first match would.
fn source_headers(sources: &[Source]) -> Vec<(String, String)> {
    if sources.iter().any(|s| matches!(s, Source::Cookie(_))) {
        return request_headers();
    }
    let names = sources.iter().filter_map(|s| match s {
        Source::Header { name, .. } => Some(name.as_str()),
        Source::Query(_) | Source::Cookie(_) => None,
    });
    // `:path` only for a query source: the rest never read it.
    let path = sources
        .iter()
        .any(|s| matches!(s, Source::Query(_)))
        .then_some(":path");
    names
        .chain(path)
        .filter_map(|name| {
            let value =
                hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name).ok()??;
            Some((name.to_string(), barbacane_sdk::http::lossy(value)))
        })
        .collect()
}

/// Removes the token from the effective stream's request.
fn strip_token(source: &Source) {
    let headers = MapType::HttpRequestHeaders;
    match source {
        Source::Header { name, .. } => {
            let _ = hostcalls::set_map_value(headers, name, None);
        }
        Source::Query(name) => {
            let target = barbacane_sdk::http::header(&request_headers(), ":path")
                .map(String::from)
                .unwrap_or_default();
            let _ = hostcalls::set_map_value(
                headers,
                ":path",
                Some(&extract::strip_query(&target, name)),
            );
        }
        Source::Cookie(name) => {
            let rest = extract::strip_cookie(&request_headers(), name);
            let _ = hostcalls::set_map_value(headers, "cookie", rest.as_deref());
        }
    }
}

/// The root context: parses the configuration, owns the JWKS refresh timer.
struct Root {
    context_id: u32,
    shared: Option<Rc<Shared>>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _: usize) {
        if let Some(shared) = &self.shared {
            on_answer(self, shared, self.context_id, token, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let settings = match config::parse(self.get_plugin_configuration()).and_then(Settings::new)
        {
            Ok(settings) => settings,
            Err(e) => {
                // The gateway quotes this line when it refuses the middleware at compile time.
                log::error!("{e}");
                return false;
            }
        };
        let remote = settings
            .remote
            .clone()
            .map(|r| RefCell::new(RemoteState::new(r)));
        let cache = RefCell::new(TokenCache::new(settings.cache_size));
        let shared = Rc::new(Shared {
            settings,
            remote,
            cache,
        });
        if let Some(remote) = &shared.remote {
            // The first fetch goes now, so that keys are usually there before the first request;
            // an upstream the spec does not declare is a configuration error.
            if start_fetch(self, &shared, now(self)) == Err(Status::BadArgument) {
                let upstream = &remote.borrow().settings.upstream;
                log::error!(
                    "invalid configuration at /jwks_upstream/upstream: '{upstream}' is not an upstream of x-barbacane-upstreams"
                );
                return false;
            }
            self.set_tick_period(TICK);
        }
        self.shared = Some(shared);
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(remote) = &shared.remote else {
            return;
        };
        let now = now(self);
        if remote.borrow_mut().expire(now) {
            log::warn!("jwt-auth: the JWKS fetch got no answer; keeping the last good key set");
            answer_waiters(self, &shared, self.context_id, now);
        }
        if remote.borrow().due(now) && start_fetch(self, &shared, now).is_err() {
            answer_waiters(self, &shared, self.context_id, now);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            context_id,
            shared: self.shared.clone()?,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One request.
struct Stream {
    context_id: u32,
    shared: Rc<Shared>,
}

impl Stream {
    /// Pauses the request until the fetch in flight answers.
    fn wait(&self, token: Token, found: Found) -> Action {
        let Some(remote) = &self.shared.remote else {
            return Action::Continue;
        };
        let mut remote = remote.borrow_mut();
        if remote.waiters.len() >= remote::MAX_WAITERS {
            drop(remote);
            let refusal = Refusal::Unavailable {
                detail: String::from("too many requests are waiting for the signing keys"),
                retry_after: 1,
            };
            send_problem(&refusal, &self.shared.settings);
            return Action::Pause;
        }
        remote.waiters.push(Waiter {
            context_id: self.context_id,
            token,
            found,
        });
        Action::Pause
    }
}

impl Context for Stream {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _: usize) {
        let shared = self.shared.clone();
        on_answer(self, &shared, self.context_id, token, body_size);
    }
}

// The callbacks implemented below, and only those, are called (see `barbacane_sdk::callbacks`).
barbacane_sdk::stream_callbacks!(request_headers);

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let shared = self.shared.clone();
        let settings = &shared.settings;
        let headers = source_headers(&settings.sources);
        let target = barbacane_sdk::http::header(&headers, ":path").unwrap_or("/");
        let Some(found) = extract::find(&settings.sources, &headers, target) else {
            if settings.allow_missing {
                // Unauthenticated, but never with identity headers the client made up.
                let names = settings.claim_headers.iter().map(|(_, h)| h.as_str());
                for name in names.chain([consumer::HEADER_ID, consumer::HEADER_GROUPS]) {
                    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
                }
                return Action::Continue;
            }
            send_problem(&Refusal::Missing, settings);
            return Action::Pause;
        };
        let now = now(self);
        let cached = shared.cache.borrow().get(&found.token);
        if let Some(verified) = cached {
            // Only the times can have changed since the token was verified.
            return match verified.times.check(settings, now) {
                Ok(()) => admit(self, settings, &verified, &found),
                Err(refusal) => {
                    send_problem(&refusal, settings);
                    Action::Pause
                }
            };
        }
        let token = match token::parse(&found.token) {
            Ok(token) => token,
            Err(why) => {
                send_problem(&Refusal::Invalid(why), settings);
                return Action::Pause;
            }
        };
        match decide(&shared, &token, now, true) {
            Step::Done(result) => finish(self, &shared, result, &found),
            Step::Wait => self.wait(token, found),
            Step::Fetch => {
                if start_fetch(self, &shared, now).is_ok() {
                    return self.wait(token, found);
                }
                finish(self, &shared, settle(&shared, &token, now), &found)
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // A request that ends while waiting (its client went away) is no longer answered.
        if let Some(remote) = &self.shared.remote
            && let Ok(mut remote) = remote.try_borrow_mut()
        {
            remote.waiters.retain(|w| w.context_id != self.context_id);
        }
    }
}

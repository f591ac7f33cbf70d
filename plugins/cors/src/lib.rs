//! Built-in plugin `cors`: Cross-Origin Resource Sharing (the Fetch standard's CORS protocol) at
//! the gateway, so upstreams need not implement it.
//!
//! * A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered here:
//!   `204` with the `access-control-allow-*` headers when the origin and method are allowed, a
//!   `403` problem (`cors-rejected`, no CORS headers) otherwise. It never reaches the upstream.
//!   The gateway routes only methods the spec declares, so the path needs an `options`
//!   operation for a preflight to reach the plugin at all.
//! * Any other request passes through; if its `Origin` is allowed, the response gets
//!   `access-control-allow-origin` (plus credentials and exposed headers). Responses that depend
//!   on the origin get `vary: origin`, whether or not the request had one, so caches keep them
//!   apart. Requests from other origins are not refused — CORS is enforced by browsers, not an
//!   access control — they just get no CORS headers.
//!
//! Configuration: `schema.json`; reference and examples in `docs/plugins/cors.md`.

use barbacane_sdk::http::is_token;
use barbacane_sdk::root::ConfiguredRoot;
use barbacane_sdk::{Problem, config, http};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::Action;
use serde::Deserialize;
use std::borrow::Cow;
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

/// The plugin configuration, as written in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Allowed origins (`scheme://host[:port]`), or `*`.
    pub allow_origins: Vec<String>,
    /// Methods a preflight may ask for, or `*`.
    #[serde(default = "default_methods")]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for, or `*`.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow credentials (cookies, HTTP authentication).
    #[serde(default)]
    pub allow_credentials: bool,
    /// Preflight cache lifetime in seconds.
    #[serde(default)]
    pub max_age: Option<u32>,
}

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .map(String::from)
        .to_vec()
}

/// Methods browsers never need permission for (Fetch: CORS-safelisted methods).
const SAFELISTED_METHODS: [&str; 3] = ["GET", "HEAD", "POST"];

/// The configuration checked and prepared for matching: names normalised, header values joined
/// once rather than per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    any_origin: bool,
    /// Lowercase origins.
    origins: Vec<String>,
    any_method: bool,
    /// Uppercase methods.
    methods: Vec<String>,
    any_header: bool,
    /// `access-control-allow-methods` (when not `*`).
    allow_methods: String,
    /// `access-control-allow-headers` (when not `*`); empty: not sent.
    allow_headers: String,
    /// `access-control-expose-headers`; empty: not sent.
    expose_headers: String,
    credentials: bool,
    max_age: Option<String>,
}

/// What the plugin does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not a preflight: continue.
    Pass {
        /// The origin is allowed: the response gets [`Policy::response_headers`].
        allowed: bool,
    },
    /// An allowed preflight: answer 204 with these headers.
    Preflight(Vec<(&'static str, String)>),
    /// A refused preflight: answer 403 with this detail.
    Reject(String),
}

impl Policy {
    /// Checks `config`: origins must be `*` or `scheme://authority` (no path: a browser's
    /// `Origin` never has one, so such an entry could never match), names must be HTTP tokens.
    pub fn new(config: Config) -> Result<Policy, config::ConfigError> {
        let error = |pointer: String, message: String| config::ConfigError { pointer, message };
        if config.allow_origins.is_empty() {
            return Err(error(
                "/allow_origins".into(),
                "at least one origin (or \"*\") is needed".into(),
            ));
        }
        for (i, origin) in config.allow_origins.iter().enumerate() {
            if origin != "*" && !is_origin(origin) {
                return Err(error(
                    format!("/allow_origins/{i}"),
                    format!("'{origin}' is not an origin such as https://app.example.com"),
                ));
            }
        }
        for (field, names) in [
            ("allow_methods", &config.allow_methods),
            ("allow_headers", &config.allow_headers),
            ("expose_headers", &config.expose_headers),
        ] {
            if let Some(i) = names.iter().position(|n| !is_token(n)) {
                return Err(error(
                    format!("/{field}/{i}"),
                    format!("'{}' is not a method or header name", names[i]),
                ));
            }
        }
        let methods: Vec<String> = config
            .allow_methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        let lower = |names: &[String]| -> Vec<String> {
            names.iter().map(|n| n.to_ascii_lowercase()).collect()
        };
        let allow_headers = lower(&config.allow_headers);
        Ok(Policy {
            any_origin: config.allow_origins.iter().any(|o| o == "*"),
            origins: lower(&config.allow_origins),
            any_method: methods.iter().any(|m| m == "*"),
            allow_methods: methods.join(", "),
            methods,
            any_header: allow_headers.iter().any(|h| h == "*"),
            allow_headers: allow_headers.join(", "),
            expose_headers: lower(&config.expose_headers).join(", "),
            credentials: config.allow_credentials,
            max_age: config.max_age.map(|s| s.to_string()),
        })
    }

    /// Whether the answer depends on the request's origin (so caches must `vary: origin`):
    /// everything but "any origin, no credentials", whose answer is always `*`.
    pub fn varies_by_origin(&self) -> bool {
        !self.any_origin || self.credentials
    }

    fn allows_origin(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    fn allows_method(&self, method: &str) -> bool {
        self.any_method
            || SAFELISTED_METHODS.contains(&method)
            || self.methods.iter().any(|m| m == method)
    }

    /// `access-control-allow-origin` for an allowed `origin`: `*` only when any origin is
    /// allowed without credentials (browsers refuse `*` with credentials).
    fn allow_origin_value<'a>(&self, origin: &'a str) -> &'a str {
        if self.varies_by_origin() { origin } else { "*" }
    }

    /// The CORS headers of the response to an allowed request from `origin` that is not a
    /// preflight. Borrowed, not built per request: the stream keeps only the origin it read.
    pub fn response_headers<'a>(
        &'a self,
        origin: &'a str,
    ) -> impl Iterator<Item = (&'static str, &'a str)> {
        let credentials = ("access-control-allow-credentials", "true");
        let exposed = (
            "access-control-expose-headers",
            self.expose_headers.as_str(),
        );
        [
            Some((
                "access-control-allow-origin",
                self.allow_origin_value(origin),
            )),
            self.credentials.then_some(credentials),
            (!self.expose_headers.is_empty()).then_some(exposed),
        ]
        .into_iter()
        .flatten()
    }

    /// Decides a request with an `Origin` from its method, the origin,
    /// `Access-Control-Request-Method` and `Access-Control-Request-Headers` (a request without
    /// an origin is not a CORS request: it passes untouched).
    pub fn decide(
        &self,
        method: &str,
        origin: &str,
        request_method: Option<&str>,
        request_headers: Option<&str>,
    ) -> Decision {
        let allowed = self.allows_origin(origin);
        let Some(request_method) = request_method.filter(|_| method == "OPTIONS") else {
            return Decision::Pass { allowed };
        };
        if !allowed {
            return Decision::Reject(format!("origin '{origin}' is not allowed"));
        }
        if !self.allows_method(request_method) {
            return Decision::Reject(format!(
                "method '{request_method}' is not allowed from origin '{origin}'"
            ));
        }
        let mut headers = vec![(
            "access-control-allow-origin",
            self.allow_origin_value(origin).to_string(),
        )];
        let mut vary = Vec::new();
        if self.varies_by_origin() {
            vary.push("origin");
        }
        if self.any_method {
            headers.push(("access-control-allow-methods", request_method.to_string()));
            vary.push("access-control-request-method");
        } else {
            headers.push(("access-control-allow-methods", self.allow_methods.clone()));
        }
        if self.any_header {
            // Echoed rather than `*`, which browsers ignore with credentials; only a well-formed
            // list is echoed, so nothing the client wrote reaches the response unchecked.
            if let Some(requested) = request_headers.filter(|r| is_token_list(r)) {
                headers.push((
                    "access-control-allow-headers",
                    requested.to_ascii_lowercase(),
                ));
            }
            vary.push("access-control-request-headers");
        } else if !self.allow_headers.is_empty() {
            headers.push(("access-control-allow-headers", self.allow_headers.clone()));
        }
        if self.credentials {
            headers.push(("access-control-allow-credentials", String::from("true")));
        }
        if let Some(max_age) = &self.max_age {
            headers.push(("access-control-max-age", max_age.clone()));
        }
        if !vary.is_empty() {
            headers.push(("vary", vary.join(", ")));
        }
        Decision::Preflight(headers)
    }
}

/// `scheme://authority`, nothing after it.
fn is_origin(text: &str) -> bool {
    let Some((scheme, authority)) = text.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b));
    let authority_ok = !authority.is_empty()
        && !authority.contains(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace());
    scheme_ok && authority_ok
}

/// A comma-separated list of tokens (optional whitespace around commas).
fn is_token_list(list: &str) -> bool {
    list.split(',').all(|name| is_token(name.trim()))
}

/// `vary` with `name` added unless already covered (by itself or by `*`).
pub fn add_vary<'a>(existing: Option<&'a str>, name: &'a str) -> Cow<'a, str> {
    match existing.map(str::trim).filter(|v| !v.is_empty()) {
        None => Cow::Borrowed(name),
        Some(vary) => {
            let covered = vary
                .split(',')
                .map(str::trim)
                .any(|v| v == "*" || v.eq_ignore_ascii_case(name));
            if covered {
                Cow::Borrowed(vary)
            } else {
                Cow::Owned(format!("{vary}, {name}"))
            }
        }
    }
}

/// The root context: the configuration parsed into [`Policy`], shared by every request's stream.
fn root() -> impl RootContext {
    ConfiguredRoot::new(
        |bytes| config::parse(bytes).and_then(Policy::new),
        |policy| {
            Box::new(Stream {
                policy: policy.clone(),
                answered: false,
                allowed_origin: None,
            })
        },
    )
}

struct Stream {
    policy: Rc<Policy>,
    /// The request was answered here (a preflight): our own local response passes back through
    /// this filter's response phase, as Envoy's do, and must be left alone.
    answered: bool,
    /// The request's origin, when it is allowed: the upstream's response gets its CORS headers.
    allowed_origin: Option<String>,
}

impl Context for Stream {}

// The callbacks implemented below, and only those, are called (see `barbacane_sdk::callbacks`).
barbacane_sdk::stream_callbacks!(request_headers, response_headers);

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // An empty `Origin` names no origin; treating it as absent keeps it out of responses. A
        // request without one (most traffic) is not a CORS request: its method is not read.
        let Some(origin) = http::request_header(self, "origin").filter(|o| !o.is_empty()) else {
            return Action::Continue;
        };
        let method = http::request_header(self, ":method").unwrap_or_default();
        // Only a preflight (`OPTIONS`) reads what it asks for: two host calls fewer on the rest.
        let (request_method, request_headers) = if method == "OPTIONS" {
            (
                http::request_header(self, "access-control-request-method"),
                http::request_header(self, "access-control-request-headers"),
            )
        } else {
            (None, None)
        };
        match self.policy.decide(
            &method,
            &origin,
            request_method.as_deref(),
            request_headers.as_deref(),
        ) {
            Decision::Pass { allowed } => {
                // Moved, not copied: the response phase borrows it.
                self.allowed_origin = allowed.then_some(origin);
                Action::Continue
            }
            Decision::Preflight(headers) => {
                self.answered = true;
                let headers = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                self.send_http_response(204, headers, None);
                Action::Pause
            }
            Decision::Reject(detail) => {
                self.answered = true;
                Problem::new(403, "cors-rejected", detail).send(self);
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.answered {
            return Action::Continue;
        }
        if self.policy.varies_by_origin() {
            // Bytes: an upstream's header need not be UTF-8, and the string accessor panics.
            let vary = self
                .get_http_response_header_bytes("vary")
                .map(|v| String::from_utf8_lossy(&v).into_owned());
            self.set_http_response_header("vary", Some(&add_vary(vary.as_deref(), "origin")));
        }
        if let Some(origin) = self.allowed_origin.take() {
            for (name, value) in self.policy.response_headers(&origin) {
                self.set_http_response_header(name, Some(value));
            }
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

    fn policy(json: &str) -> Policy {
        Policy::new(config::parse(Some(json.as_bytes().to_vec())).unwrap()).unwrap()
    }

    fn refused(json: &str) -> config::ConfigError {
        config::parse(Some(json.as_bytes().to_vec()))
            .and_then(Policy::new)
            .unwrap_err()
    }

    #[test]
    fn configuration_is_checked() {
        assert_eq!(refused("{}").message, "missing field `allow_origins`");
        assert_eq!(
            refused(r#"{"allow_origins": []}"#).pointer,
            "/allow_origins"
        );
        assert_eq!(
            refused(r#"{"allow_origins": ["*", "https://a.example/"]}"#).pointer,
            "/allow_origins/1"
        );
        assert_eq!(
            refused(r#"{"allow_origins": ["a.example"]}"#).pointer,
            "/allow_origins/0"
        );
        assert_eq!(
            refused(r#"{"allow_origins": ["*"], "allow_headers": ["x ok"]}"#).pointer,
            "/allow_headers/0"
        );
        assert_eq!(
            refused(r#"{"allow_origins": ["*"], "max_age": -1}"#).pointer,
            "/max_age"
        );
    }

    #[test]
    fn actual_requests() {
        let p = policy(
            r#"{"allow_origins": ["https://App.example"], "expose_headers": ["X-Total"], "allow_credentials": true}"#,
        );
        assert_eq!(
            p.decide("GET", "https://app.example", None, None),
            Decision::Pass { allowed: true }
        );
        assert_eq!(
            p.response_headers("https://app.example")
                .collect::<Vec<_>>(),
            [
                ("access-control-allow-origin", "https://app.example"),
                ("access-control-allow-credentials", "true"),
                ("access-control-expose-headers", "x-total"),
            ]
        );
        assert_eq!(
            p.decide("GET", "https://evil.example", None, None),
            Decision::Pass { allowed: false }
        );
        // OPTIONS without Access-Control-Request-Method is an ordinary request.
        assert_eq!(
            p.decide("OPTIONS", "https://app.example", None, None),
            Decision::Pass { allowed: true }
        );
        assert!(p.varies_by_origin());
        let any = policy(r#"{"allow_origins": ["*"]}"#);
        assert!(!any.varies_by_origin());
        assert_eq!(
            any.decide("GET", "https://x.example", None, None),
            Decision::Pass { allowed: true }
        );
        assert_eq!(
            any.response_headers("https://x.example")
                .collect::<Vec<_>>(),
            [("access-control-allow-origin", "*")]
        );
    }

    #[test]
    fn preflights() {
        let p = policy(
            r#"{"allow_origins": ["https://app.example"], "allow_methods": ["put", "DELETE"], "allow_headers": ["Authorization", "content-type"], "max_age": 600}"#,
        );
        assert_eq!(
            p.decide(
                "OPTIONS",
                "https://app.example",
                Some("PUT"),
                Some("authorization")
            ),
            Decision::Preflight(vec![
                ("access-control-allow-origin", "https://app.example".into()),
                ("access-control-allow-methods", "PUT, DELETE".into()),
                (
                    "access-control-allow-headers",
                    "authorization, content-type".into()
                ),
                ("access-control-max-age", "600".into()),
                ("vary", "origin".into()),
            ])
        );
        // Safelisted methods need no listing.
        assert!(matches!(
            p.decide("OPTIONS", "https://app.example", Some("POST"), None),
            Decision::Preflight(_)
        ));
        assert_eq!(
            p.decide("OPTIONS", "https://app.example", Some("PATCH"), None),
            Decision::Reject(
                "method 'PATCH' is not allowed from origin 'https://app.example'".into()
            )
        );
        assert_eq!(
            p.decide("OPTIONS", "https://evil.example", Some("PUT"), None),
            Decision::Reject("origin 'https://evil.example' is not allowed".into())
        );

        let any = policy(
            r#"{"allow_origins": ["*"], "allow_methods": ["*"], "allow_headers": ["*"], "allow_credentials": true}"#,
        );
        assert_eq!(
            any.decide(
                "OPTIONS",
                "https://x.example",
                Some("PURGE"),
                Some("X-A, x-b")
            ),
            Decision::Preflight(vec![
                ("access-control-allow-origin", "https://x.example".into()),
                ("access-control-allow-methods", "PURGE".into()),
                ("access-control-allow-headers", "x-a, x-b".into()),
                ("access-control-allow-credentials", "true".into()),
                (
                    "vary",
                    "origin, access-control-request-method, access-control-request-headers".into()
                ),
            ])
        );
        // A malformed header list is not echoed.
        assert!(matches!(
            any.decide("OPTIONS", "https://x.example", Some("GET"), Some("a\"b")),
            Decision::Preflight(h) if !h.iter().any(|(n, _)| *n == "access-control-allow-headers")
        ));
    }

    #[test]
    fn vary_merging() {
        assert_eq!(add_vary(None, "origin"), "origin");
        assert_eq!(add_vary(Some(""), "origin"), "origin");
        assert_eq!(
            add_vary(Some("accept-encoding"), "origin"),
            "accept-encoding, origin"
        );
        assert_eq!(add_vary(Some("Accept, Origin"), "origin"), "Accept, Origin");
        assert_eq!(add_vary(Some("*"), "origin"), "*");
    }
}

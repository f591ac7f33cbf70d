//! Conformance filter `callout`: an HTTP callout on request headers (or on each body chunk)
//! that decides the request.
//!
//! Configuration (JSON): `{"upstream": "<name>", "path": "/check", "timeout_ms": 1000,
//! "on_deny": "respond", "check": "headers"}`; `upstream` is required, the others default to the
//! values shown; `on_deny` is `"respond"` or `"close"`, `check` one of `"headers"`,
//! `"request_body"`, `"response_headers"`, `"response_body"`, `"request_body_and_response_headers"`.
//! A missing or invalid configuration fails `on_configure` (logged at error).
//!
//! With `check: headers`:
//! * `on_http_request_headers`: `dispatch_http_call(upstream, [(":method","GET"), (":path",
//!   path), (":authority","callout"), ("x-original-path", <request :path, "" if absent>)] plus
//!   ("authorization", <value>) when the request has that header, no body, no trailers,
//!   timeout_ms)`. If the dispatch fails it answers a local 500 with `x-callout-error: dispatch`
//!   and the status's Debug name as the body (e.g. `BadArgument`). Either way it returns `Pause`
//!   (on success it logs `dispatched callout <token>` at info).
//! * `on_http_call_response(token, num_headers, body_size, num_trailers)`:
//!   * `num_headers == 0` (the callout failed): reads `proxy_get_status` `(code, message)` and
//!     answers a local 502 with `x-callout-failed: <code>` and the message (or empty) as body.
//!   * callout `:status` is `200`: sets request header `x-auth-user` to the callout body
//!     (UTF-8, lossy), adds request header `x-callout-trailers: <num_trailers>`, and resumes the
//!     request.
//!   * any other status: `on_deny == "close"` resets the request (`proxy_close_stream`);
//!     otherwise answers a local 403 with `x-callout-status: <status>` and body `denied`.
//! * `on_http_response_headers`: sets response header `x-callout: done`.
//!
//! With `check: request_body` (or `response_body`) the headers pass untouched, and each call of
//! `on_http_request_body` (`on_http_response_body`) with a non-empty body sends what it has not
//! yet let through (the body buffered since its last pause) to the upstream: `dispatch_http_call(
//! upstream, [(":method","POST"), (":path", path), (":authority","callout")], <those bytes>, no
//! trailers, timeout_ms)`, and pauses (a failed dispatch answers the local 500 above). Its
//! `on_http_call_response` resumes that direction (`proxy_continue_stream`) on a `200`, and
//! otherwise denies as above (`on_deny`); a failed callout answers the local 502 above.
//!
//! With `check: response_headers` the request passes untouched, and `on_http_response_headers`
//! (after setting `x-callout: done`) dispatches `[(":method","GET"), (":path", path),
//! (":authority","callout")]` and pauses; the answer resumes or denies the response as above.
//!
//! With `check: request_body_and_response_headers` it does both, each call's answer resuming
//! the direction it was made for (the filter may wait on both at once: a request body chunk and
//! the response headers of an upstream that answers before the request body is over).

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, Bytes, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum OnDeny {
    #[default]
    Respond,
    Close,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
enum Check {
    #[default]
    Headers,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
    RequestBodyAndResponseHeaders,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    upstream: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    on_deny: OnDeny,
    #[serde(default)]
    check: Check,
}

fn default_path() -> String {
    String::from("/check")
}

fn default_timeout_ms() -> u64 {
    1000
}

#[derive(Default)]
struct Root {
    config: Option<Rc<Config>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match serde_json::from_slice::<Config>(&bytes) {
            Ok(config) => {
                log::info!(
                    "callout to upstream {} path {}",
                    config.upstream,
                    config.path
                );
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                log::error!("bad configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(Stream {
            config,
            response_calls: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    config: Rc<Config>,
    /// The tokens of the callouts made for the response headers.
    response_calls: Vec<u32>,
}

impl Context for Stream {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    ) {
        log::info!(
            "callout {token_id} answered: headers={num_headers} body={body_size} trailers={num_trailers}"
        );
        if num_headers == 0 {
            let (code, message) = self.get_grpc_status();
            let code = code.to_string();
            let message = message.unwrap_or_default();
            self.send_http_response(
                502,
                vec![("x-callout-failed", &code)],
                Some(message.as_bytes()),
            );
            return;
        }
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_default();
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        if status == "200" {
            match self.config.check {
                Check::Headers => {
                    let user = String::from_utf8_lossy(&body);
                    self.set_http_request_header("x-auth-user", Some(&user));
                    self.add_http_request_header("x-callout-trailers", &num_trailers.to_string());
                    self.resume_http_request();
                }
                Check::RequestBodyAndResponseHeaders if self.response_calls.contains(&token_id) => {
                    self.resume_http_response()
                }
                Check::RequestBody | Check::RequestBodyAndResponseHeaders => {
                    self.resume_http_request()
                }
                Check::ResponseHeaders | Check::ResponseBody => self.resume_http_response(),
            }
        } else if self.config.on_deny == OnDeny::Close {
            self.reset_http_request();
        } else {
            self.send_http_response(403, vec![("x-callout-status", &status)], Some(b"denied"));
        }
    }
}

impl Stream {
    /// Sends a `method` request to the configured upstream's `path` (`:authority` `callout`),
    /// with `extra` headers and `body`; a failed dispatch answers 500. Returns the call's token.
    fn call_out(&self, method: &str, extra: &[(&str, &str)], body: Option<&[u8]>) -> Option<u32> {
        let mut headers = vec![
            (":method", method),
            (":path", self.config.path.as_str()),
            (":authority", "callout"),
        ];
        headers.extend_from_slice(extra);
        match self.dispatch_http_call(
            &self.config.upstream,
            headers,
            body,
            vec![],
            Duration::from_millis(self.config.timeout_ms),
        ) {
            Ok(token) => {
                log::info!("dispatched callout {token}");
                Some(token)
            }
            Err(status) => {
                log::warn!("callout dispatch failed: {status:?}");
                self.send_http_response(
                    500,
                    vec![("x-callout-error", "dispatch")],
                    Some(format!("{status:?}").as_bytes()),
                );
                None
            }
        }
    }

    /// `check: request_body`/`response_body`: the body buffered since the last pause, `body`,
    /// goes to the upstream, and the stream waits for its answer.
    fn check_body(&self, body: Option<Bytes>) -> Action {
        let Some(body) = body.filter(|body| !body.is_empty()) else {
            return Action::Continue;
        };
        self.call_out("POST", &[], Some(&body));
        Action::Pause
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.config.check != Check::Headers {
            return Action::Continue;
        }
        let original_path = self.get_http_request_header(":path").unwrap_or_default();
        let authorization = self.get_http_request_header("authorization");
        let mut headers = vec![("x-original-path", original_path.as_str())];
        if let Some(authorization) = &authorization {
            headers.push(("authorization", authorization.as_str()));
        }
        self.call_out("GET", &headers, None);
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if !matches!(
            self.config.check,
            Check::RequestBody | Check::RequestBodyAndResponseHeaders
        ) {
            return Action::Continue;
        }
        self.check_body(self.get_http_request_body(0, body_size))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_response_header("x-callout", Some("done"));
        if !matches!(
            self.config.check,
            Check::ResponseHeaders | Check::RequestBodyAndResponseHeaders
        ) {
            return Action::Continue;
        }
        if let Some(token) = self.call_out("GET", &[], None) {
            self.response_calls.push(token);
        }
        Action::Pause
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if self.config.check != Check::ResponseBody {
            return Action::Continue;
        }
        self.check_body(self.get_http_response_body(0, body_size))
    }
}

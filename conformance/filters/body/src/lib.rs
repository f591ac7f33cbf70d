//! Conformance filter `body`: rewrites request and response bodies and reports the body
//! callbacks it received.
//!
//! Configuration (JSON, all optional; absent = `{}`): `{"request": "none", "response": "none",
//! "value": "", "pause": true, "hold": "none"}`; `request`/`response` are each one of `none`,
//! `replace`, `append`, `prepend`; `hold` one of `none`, `end`, `first`. An invalid
//! configuration fails `on_configure` (logged at error).
//!
//! `hold` (both directions) pauses on the headers of a message with a body, so that they wait
//! for the body, which reaches the filter meanwhile only where the host allows it (Envoy's
//! `allow_on_headers_stop_iteration`). Its body callbacks then set a header on the headers they
//! held: with `end`, they pause until `eos` and set `x-body-seen: <size>` (and a request body
//! containing `deny` gets a local 403 `denied by its body`); with `first`, the first one sets
//! `x-body-first: <size>` and lets the chunk through.
//!
//! * `on_http_request_headers`: if `request` is not `none`, removes request `content-length`.
//!   `hold` (above), else Continue.
//! * `on_http_request_body(size, eos)`: records `"<size>:<eos>"` (e.g. `5:false`). `hold`
//!   (above). Mode `none` → Continue. If `pause` and not `eos` → Pause (the host buffers and
//!   calls again with the cumulative size). Otherwise (at `eos`, or on every chunk when `pause`
//!   is false) applies the mode with `proxy_set_buffer_bytes` on the request body: `replace` =
//!   `(start 0, size <size>, value)`, `append` = `(start <size>, size 0, value)`, `prepend` =
//!   `(start 0, size 0, value)`; Continue.
//! * `on_http_request_trailers`: adds request trailer `x-body-trailers: seen`. Continue.
//! * `on_http_response_headers`: adds response header `x-request-body-calls` = the recorded
//!   request body calls joined by `,` (e.g. `5:false,11:true`; empty when there were none); if
//!   `response` is not `none`, removes response `content-length`. `hold` (above), else
//!   Continue.
//! * `on_http_response_body(size, eos)`: same as the request side, on the response body with
//!   its own record; on the call with `eos` it also logs `response body calls: <record joined
//!   by ",">` at info.
//! * `on_http_response_trailers`: adds response trailer `x-body-trailers: seen`. Continue.
//!
//! When trailers follow a body no body call has `eos`, so in pause mode that body is left as is.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default, Debug)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    None,
    Replace,
    Append,
    Prepend,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default, Debug)]
#[serde(rename_all = "lowercase")]
enum Hold {
    #[default]
    None,
    End,
    First,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    request: Mode,
    response: Mode,
    value: String,
    pause: bool,
    hold: Hold,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            request: Mode::None,
            response: Mode::None,
            value: String::new(),
            pause: true,
            hold: Hold::None,
        }
    }
}

#[derive(Default)]
struct Root {
    config: Option<Rc<Config>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let parsed = if bytes.iter().all(u8::is_ascii_whitespace) {
            Ok(Config::default())
        } else {
            serde_json::from_slice::<Config>(&bytes)
        };
        match parsed {
            Ok(config) => {
                log::info!(
                    "body request={:?} response={:?} pause={}",
                    config.request,
                    config.response,
                    config.pause
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
            request_calls: Vec::new(),
            response_calls: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    config: Rc<Config>,
    request_calls: Vec<String>,
    response_calls: Vec<String>,
}

/// Where `proxy_set_buffer_bytes` writes for `mode` on a body of `size` bytes: `(start, size)`.
fn edit(mode: Mode, size: usize) -> Option<(usize, usize)> {
    match mode {
        Mode::None => None,
        Mode::Replace => Some((0, size)),
        Mode::Append => Some((size, 0)),
        Mode::Prepend => Some((0, 0)),
    }
}

impl Context for Stream {}

/// What `hold` does on a body call.
enum HoldStep {
    /// `end`, before the end of the body.
    Pause,
    /// Set this header on the headers it held.
    Set(&'static str, String),
    /// Nothing.
    Pass,
}

/// The [`HoldStep`] of a body call (`calls`: the calls so far, this one included).
fn hold_step(hold: Hold, calls: &[String], size: usize, end_of_stream: bool) -> HoldStep {
    match hold {
        Hold::End if !end_of_stream => HoldStep::Pause,
        Hold::End => HoldStep::Set("x-body-seen", size.to_string()),
        Hold::First if calls.len() == 1 => HoldStep::Set("x-body-first", size.to_string()),
        _ => HoldStep::Pass,
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.config.request != Mode::None {
            self.remove_http_request_header("content-length");
        }
        if self.config.hold != Hold::None && !end_of_stream {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.request_calls
            .push(format!("{body_size}:{end_of_stream}"));
        match hold_step(
            self.config.hold,
            &self.request_calls,
            body_size,
            end_of_stream,
        ) {
            HoldStep::Pause => return Action::Pause,
            HoldStep::Set(name, value) => {
                self.set_http_request_header(name, Some(&value));
                let body = self.get_http_request_body(0, body_size).unwrap_or_default();
                if self.config.hold == Hold::End && body.windows(4).any(|w| w == b"deny") {
                    self.send_http_response(403, vec![], Some(b"denied by its body"));
                    return Action::Pause;
                }
            }
            HoldStep::Pass => {}
        }
        let Some((start, size)) = edit(self.config.request, body_size) else {
            return Action::Continue;
        };
        if self.config.pause && !end_of_stream {
            return Action::Pause;
        }
        self.set_http_request_body(start, size, self.config.value.as_bytes());
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.add_http_request_trailer("x-body-trailers", "seen");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.add_http_response_header("x-request-body-calls", &self.request_calls.join(","));
        if self.config.response != Mode::None {
            self.remove_http_response_header("content-length");
        }
        if self.config.hold != Hold::None && !end_of_stream {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.response_calls
            .push(format!("{body_size}:{end_of_stream}"));
        if end_of_stream {
            log::info!("response body calls: {}", self.response_calls.join(","));
        }
        match hold_step(
            self.config.hold,
            &self.response_calls,
            body_size,
            end_of_stream,
        ) {
            HoldStep::Pause => return Action::Pause,
            HoldStep::Set(name, value) => self.set_http_response_header(name, Some(&value)),
            HoldStep::Pass => {}
        }
        let Some((start, size)) = edit(self.config.response, body_size) else {
            return Action::Continue;
        };
        if self.config.pause && !end_of_stream {
            return Action::Pause;
        }
        self.set_http_response_body(start, size, self.config.value.as_bytes());
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.add_http_response_trailer("x-body-trailers", "seen");
        Action::Continue
    }
}

//! Conformance filter `declared`: it implements the request and response header callbacks, the
//! response body callback and `on_log`, but its custom section `barbacane.stream_callbacks`
//! lists only `request_headers`, so the gateway must call none of the others. Each callback
//! leaves a trace that a test can look for: `x-declared: request` on the request; on the
//! response, the header `x-declared: response`, the body replaced by `rewritten`, and a log
//! line `on_log called`.
//!
//! The section is written with `#[link_section]` directly (as any SDK or language can), not with
//! `barbacane_sdk::stream_callbacks!`: it is the format that is under test.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

#[cfg(target_arch = "wasm32")]
#[used]
#[unsafe(link_section = "barbacane.stream_callbacks")]
static STREAM_CALLBACKS: [u8; 15] = *b"request_headers";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream;

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_request_header("x-declared", "request");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_response_header("x-declared", Some("response"));
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.set_http_response_body(0, body_size, b"rewritten");
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        log::info!("on_log called");
    }
}

//! Conformance filter `grpc`: gRPC callouts on request headers, on service `test.Echo`.
//!
//! Configuration (JSON): `{"upstream": "<name>", "timeout_ms": 1000}`; `upstream` is required.
//! The target passed to the host is the upstream name, unless request header `x-grpc-target` is
//! `service` (a serialized `envoy.config.core.v3.GrpcService` naming the upstream as its
//! `envoy_grpc.cluster_name`, with initial metadata `x-from-service: yes`) or another value (that
//! value as the name). A dispatch that fails answers a local 500 with `x-grpc-error: dispatch`
//! and the status's Debug name as the body (e.g. `ParseFailure`).
//!
//! * `x-grpc-call: METHOD`: `dispatch_grpc_call(target, "test.Echo", METHOD, [("x-md",
//!   "call")], <x-grpc-message>, <x-grpc-timeout-ms or timeout_ms>)` and `Pause`; then
//!   `send_grpc_stream_message` on the call's token is tried (raw), its status kept for
//!   `x-grpc-send-on-call`. With `x-grpc-cancel: yes` the call is cancelled at once (raw
//!   `cancel_grpc_call`, twice) and the filter answers a local 200 with `x-grpc-cancelled:
//!   <first status>,<second status>`.
//!   `on_grpc_call_response(token, status, size)`: status 0 sets request header `x-grpc-reply`
//!   to the message (UTF-8, lossy) and `x-grpc-send-on-call`, and resumes the request; any other
//!   status answers a local 502 with `x-grpc-status: <code>` and the message from
//!   `get_grpc_status` as the body.
//! * `x-grpc-stream: METHOD`: `open_grpc_stream(target, "test.Echo", METHOD, [("x-md",
//!   "stream")])`, then sends each comma-separated message of `x-grpc-messages`, the last with
//!   `end_stream` — or, with `x-grpc-half-close: close`, none with it and then
//!   `close_grpc_stream`, or with `x-grpc-half-close: never` none at all. After such an end a raw
//!   send is tried again (event `send-after-end:<status>`). Events are collected: `initial:<x-initial>`, `message:<text>`,
//!   `trailing:<x-trailing>`, `close:<code>:<message>`; `x-grpc-cancel-after: N` cancels the
//!   stream after N messages (event `cancelled`) and answers at once. The answer is a local 200
//!   with `x-grpc-events: <events joined by |>`.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

const SERVICE: &str = "test.Echo";

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    upstream: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    1000
}

#[derive(Default)]
struct Root {
    config: Option<Config>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match serde_json::from_slice::<Config>(&bytes) {
            Ok(config) => {
                self.config = Some(config);
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
            events: Vec::new(),
            messages: 0,
            cancel_after: None,
            send_on_call: String::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    config: Config,
    events: Vec<String>,
    messages: usize,
    cancel_after: Option<usize>,
    send_on_call: String,
}

/// `GrpcService { envoy_grpc { cluster_name }, initial_metadata [{ key, value }] }` in protobuf.
fn grpc_service(cluster: &str, key: &str, value: &str) -> Vec<u8> {
    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }
    let header = [field(1, key.as_bytes()), field(2, value.as_bytes())].concat();
    [field(1, &field(1, cluster.as_bytes())), field(5, &header)].concat()
}

impl Stream {
    fn header(&self, name: &str) -> Option<String> {
        self.get_http_request_header(name)
    }

    /// The first argument of the dispatch, as bytes the SDK passes on as a `&str`.
    fn target(&self) -> String {
        match self.header("x-grpc-target").as_deref() {
            None => self.config.upstream.clone(),
            Some("service") => {
                let service = grpc_service(&self.config.upstream, "x-from-service", "yes");
                // The SDK takes `&str`; a GrpcService of ASCII fields is valid UTF-8.
                String::from_utf8(service).unwrap_or_default()
            }
            Some(name) => name.to_string(),
        }
    }

    fn dispatch_failed(&mut self, status: proxy_wasm::types::Status) -> Action {
        self.send_http_response(
            500,
            vec![("x-grpc-error", "dispatch")],
            Some(format!("{status:?}").as_bytes()),
        );
        Action::Pause
    }

    fn call(&mut self, method: &str) -> Action {
        let message = self.header("x-grpc-message").unwrap_or_default();
        let timeout_ms = self
            .header("x-grpc-timeout-ms")
            .and_then(|t| t.parse().ok())
            .unwrap_or(self.config.timeout_ms);
        let token = match self.dispatch_grpc_call(
            &self.target(),
            SERVICE,
            method,
            vec![("x-md", b"call")],
            Some(message.as_bytes()),
            Duration::from_millis(timeout_ms),
        ) {
            Ok(token) => token,
            Err(status) => return self.dispatch_failed(status),
        };
        self.send_on_call = status_name(hostcalls::send_grpc_stream_message(
            token,
            Some(b"more"),
            false,
        ));
        if self.header("x-grpc-cancel").as_deref() == Some("yes") {
            let first = status_name(hostcalls::cancel_grpc_call(token));
            let second = status_name(hostcalls::cancel_grpc_call(token));
            let cancelled = format!("{first},{second}");
            self.send_http_response(200, vec![("x-grpc-cancelled", &cancelled)], None);
        }
        Action::Pause
    }

    fn stream(&mut self, method: &str) -> Action {
        let token =
            match self.open_grpc_stream(&self.target(), SERVICE, method, vec![("x-md", b"stream")])
            {
                Ok(token) => token,
                Err(status) => return self.dispatch_failed(status),
            };
        self.cancel_after = self
            .header("x-grpc-cancel-after")
            .and_then(|n| n.parse().ok());
        let messages = self.header("x-grpc-messages").unwrap_or_default();
        let messages: Vec<&str> = messages.split(',').collect();
        let half_close = self.header("x-grpc-half-close").unwrap_or_default();
        for (i, message) in messages.iter().enumerate() {
            let end = i + 1 == messages.len() && half_close.is_empty();
            self.send_grpc_stream_message(token, Some(message.as_bytes()), end);
        }
        if half_close == "close" {
            self.close_grpc_stream(token);
        }
        if half_close != "never" {
            let again = hostcalls::send_grpc_stream_message(token, Some(b"late"), false);
            self.events
                .push(format!("send-after-end:{}", status_name(again)));
        }
        Action::Pause
    }

    fn answer_events(&mut self) {
        let events = self.events.join("|");
        self.send_http_response(200, vec![("x-grpc-events", &events)], None);
    }
}

fn status_name<T>(result: Result<T, proxy_wasm::types::Status>) -> String {
    match result {
        Ok(_) => String::from("Ok"),
        Err(status) => format!("{status:?}"),
    }
}

fn text(bytes: Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
}

impl Context for Stream {
    fn on_grpc_call_response(&mut self, _token: u32, status_code: u32, response_size: usize) {
        if status_code == 0 {
            let reply = text(self.get_grpc_call_response_body(0, response_size));
            self.set_http_request_header("x-grpc-reply", Some(&reply));
            let send_on_call = self.send_on_call.clone();
            self.set_http_request_header("x-grpc-send-on-call", Some(&send_on_call));
            self.resume_http_request();
        } else {
            let (code, message) = self.get_grpc_status();
            let code = code.to_string();
            let message = message.unwrap_or_default();
            self.send_http_response(
                502,
                vec![("x-grpc-status", &code)],
                Some(message.as_bytes()),
            );
        }
    }

    fn on_grpc_stream_initial_metadata(&mut self, _token: u32, _elements: u32) {
        let value = text(self.get_grpc_stream_initial_metadata_value("x-initial"));
        self.events.push(format!("initial:{value}"));
    }

    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        let message = text(self.get_grpc_stream_message(0, size));
        self.events.push(format!("message:{message}"));
        self.messages += 1;
        if self.cancel_after == Some(self.messages) {
            self.cancel_grpc_stream(token);
            self.events.push(String::from("cancelled"));
            self.answer_events();
        }
    }

    fn on_grpc_stream_trailing_metadata(&mut self, _token: u32, _elements: u32) {
        let value = text(self.get_grpc_stream_trailing_metadata_value("x-trailing"));
        self.events.push(format!("trailing:{value}"));
    }

    fn on_grpc_stream_close(&mut self, _token: u32, status_code: u32) {
        let (_, message) = self.get_grpc_status();
        let message = message.unwrap_or_default();
        self.events.push(format!("close:{status_code}:{message}"));
        self.answer_events();
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(method) = self.header("x-grpc-call") {
            return self.call(&method);
        }
        if let Some(method) = self.header("x-grpc-stream") {
            return self.stream(&method);
        }
        Action::Continue
    }
}

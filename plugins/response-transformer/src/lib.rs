//! Built-in plugin `response-transformer`: rewrites the response before it reaches the client,
//! as Kong's plugin of the same name — headers and JSON body fields are removed, renamed,
//! replaced, set, added and appended (in that order), with values that may come from the
//! request (`$(headers.x-foo)`, `$(query.bar)`, `$(consumer.id)`).
//!
//! This crate owns the Proxy-Wasm glue: when each part of the response is read and written. The
//! rules themselves (configuration, templates, edits) are `barbacane-transform-rules`, shared
//! with `request-transformer`.
//!
//! * When a value has templates, the request's headers and query are kept from
//!   `on_http_request_headers` (as they reached this plugin); the consumer is read when the
//!   response arrives, so an auth plugin later in the chain is seen too.
//! * Headers change in `on_http_response_headers` (`:status` cannot be changed), each edit a
//!   host call on the stream's map.
//! * The body is buffered only when there are body rules and the response says it is JSON: the
//!   body callbacks pause until the end of the stream (the gateway hands the cumulative body to
//!   the last one), the document is edited and put back with `set_http_response_body`.
//!   `content-length` is dropped from such responses (the body is then sent chunked). Malformed
//!   JSON, a root that is not an object, or a body over `max_body_bytes` passes unchanged.
//!
//! Every response through the plugin is transformed: the upstream's, and local replies of
//! plugins after it in the chain. Configuration: `schema.json`; reference in
//! `docs/plugins/response-transformer.md`.

use barbacane_sdk::root::ConfiguredRoot;
use barbacane_sdk::{consumer, http};
use barbacane_transform_rules::headers::HeaderList;
use barbacane_transform_rules::live::StreamHeaders;
use barbacane_transform_rules::{RequestData, Rules, Target, body, headers};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, MapType};
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

/// The root context: the configuration parsed into [`Rules`], shared by every request's stream.
fn root() -> impl RootContext {
    ConfiguredRoot::new(
        |bytes| Rules::from_json(bytes, Target::Response),
        |rules| {
            Box::new(Stream {
                rules: rules.clone(),
                request: RequestData::default(),
                buffering: false,
            })
        },
    )
}

struct Stream {
    rules: Rc<Rules>,
    /// The request as it reached this plugin (empty unless a value has templates).
    request: RequestData,
    /// The response body is JSON and has rules: hold it until the end of the stream.
    buffering: bool,
}

impl Context for Stream {}

/// The first value of `name` in a header list, as text (lossy: values may hold any byte).
fn value_of(map: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    map.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

// The callbacks implemented below, and only those, are called (see `barbacane_sdk::callbacks`).
barbacane_sdk::stream_callbacks!(
    request_headers,
    response_headers,
    response_body,
    response_trailers
);

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.rules.templates {
            // Bytes, not strings: the string getters of the proxy-wasm crate panic on a header
            // value that is not UTF-8, which clients may send.
            let headers = self.get_http_request_headers_bytes();
            let target = value_of(&headers, ":path").unwrap_or_default();
            self.request = RequestData {
                query: http::query_pairs(&target),
                headers,
                consumer: None,
            };
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let rules = self.rules.clone();
        if rules.consumer {
            self.request.consumer = consumer::get(self);
        }
        let plan = &rules.plan;
        let mut map = StreamHeaders(MapType::HttpResponseHeaders);
        headers::apply(&mut map, &plan.headers, &self.request);
        if !plan.body.is_empty() && !end_of_stream {
            let json = self
                .get_http_response_header_bytes("content-type")
                .is_some_and(|t| body::is_json(&http::lossy(t)));
            if json {
                self.buffering = true;
                // The body may change length: it is sent without one (chunked).
                map.remove("content-length");
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.buffering {
            return Action::Continue;
        }
        if body_size > self.rules.plan.max_body_bytes {
            // Too large to parse safely: what was held goes on unchanged, and so does the rest.
            log::debug!("response body over max_body_bytes: passed unchanged");
            self.buffering = false;
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.buffering = false;
        if let Some(original) = self.get_http_response_body(0, body_size)
            && let Some(edited) = body::apply(&original, &self.rules.plan.body, &self.request)
        {
            self.set_http_response_body(0, body_size, &edited);
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the body without an end-of-stream body callback: it goes on unchanged.
        self.buffering = false;
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

    #[test]
    fn configuration_is_checked_with_pointers() {
        let rules = Rules::from_json(
            Some(br#"{"add": {"headers": {"x-served-by": "gw"}}}"#.to_vec()),
            Target::Response,
        )
        .unwrap();
        assert!(!rules.templates);
        let e = Rules::from_json(
            Some(br#"{"set": {"headers": {":status": "201"}}}"#.to_vec()),
            Target::Response,
        )
        .unwrap_err();
        assert_eq!(e.pointer, "/set/headers/:status");
        let e = Rules::from_json(
            Some(br#"{"add": {"querystring": {"a": "1"}}}"#.to_vec()),
            Target::Response,
        )
        .unwrap_err();
        assert_eq!(e.pointer, "/add/querystring");
    }
}

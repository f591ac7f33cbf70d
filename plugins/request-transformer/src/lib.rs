//! Built-in plugin `request-transformer`: rewrites the request before it goes upstream, as
//! Kong's plugin of the same name — headers, query parameters and JSON body fields are
//! removed, renamed, replaced, set, added and appended (in that order), with values that may
//! come from the request itself (`$(headers.x-foo)`, `$(query.bar)`, `$(consumer.id)`).
//!
//! This crate owns the Proxy-Wasm glue: when each part of the request is read and written. The
//! rules themselves (configuration, templates, edits) are `barbacane-transform-rules`, shared
//! with `response-transformer`.
//!
//! * Headers and the query string (a rewritten `:path`) change in `on_http_request_headers`,
//!   each edit a host call on the stream's map (the whole map is read only for templates, and
//!   to move every value of a header being renamed).
//! * The body is buffered only when there are body rules and the request says it is JSON: the
//!   body callbacks pause until the end of the stream (the gateway hands the cumulative body to
//!   the last one), the document is edited and put back with `set_http_request_body`.
//!   `content-length` is dropped from such requests so that the forwarded body frames itself.
//!   Malformed JSON, a root that is not an object, or a body over `max_body_bytes` passes
//!   unchanged.
//!
//! The plugin makes no replies of its own and never refuses a request. Configuration:
//! `schema.json`; reference in `docs/plugins/request-transformer.md`.

use barbacane_sdk::root::ConfiguredRoot;
use barbacane_sdk::{consumer, http};
use barbacane_transform_rules::headers::HeaderList;
use barbacane_transform_rules::live::StreamHeaders;
use barbacane_transform_rules::{RequestData, Rules, Target, body, headers, query};
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
        |bytes| Rules::from_json(bytes, Target::Request),
        |rules| {
            Box::new(Stream {
                rules: rules.clone(),
                request: None,
                buffering: false,
            })
        },
    )
}

struct Stream {
    rules: Rc<Rules>,
    /// The request as it arrived, for body values with templates.
    request: Option<RequestData>,
    /// The body is JSON and has rules: hold it until the end of the stream.
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
barbacane_sdk::stream_callbacks!(request_headers, request_body, request_trailers);

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let rules = self.rules.clone();
        let plan = &rules.plan;
        // The request as it arrived, which only templates read (and only they need the whole
        // map). Bytes, not strings: the string getters of the proxy-wasm crate panic on a
        // header value that is not UTF-8, which clients may send.
        let request = if rules.templates {
            let headers = self.get_http_request_headers_bytes();
            RequestData {
                query: http::query_pairs(&value_of(&headers, ":path").unwrap_or_default()),
                headers,
                consumer: if rules.consumer {
                    consumer::get(self)
                } else {
                    None
                },
            }
        } else {
            RequestData::default()
        };
        let mut map = StreamHeaders(MapType::HttpRequestHeaders);
        headers::apply(&mut map, &plan.headers, &request);
        if !plan.query.is_empty() {
            // Header rules never name pseudo-headers: `:path` is still the client's.
            let target = http::request_header(self, ":path").unwrap_or_default();
            if let Some(new_target) = query::apply(&target, &plan.query, &request) {
                self.set_http_request_header_bytes(":path", Some(new_target.as_bytes()));
            }
        }
        if !plan.body.is_empty()
            && !end_of_stream
            && http::request_header(self, "content-type").is_some_and(|t| body::is_json(&t))
        {
            self.buffering = true;
            // The body may change length: let the gateway frame what it forwards.
            map.remove("content-length");
            if rules.templates {
                self.request = Some(request);
            }
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.buffering {
            return Action::Continue;
        }
        if body_size > self.rules.plan.max_body_bytes {
            // Too large to parse safely: what was held goes on unchanged, and so does the rest.
            log::debug!("request body over max_body_bytes: passed unchanged");
            self.buffering = false;
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.buffering = false;
        let request = self.request.take().unwrap_or_default();
        if let Some(original) = self.get_http_request_body(0, body_size)
            && let Some(edited) = body::apply(&original, &self.rules.plan.body, &request)
        {
            self.set_http_request_body(0, body_size, &edited);
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
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
        let rules = Rules::from_json(None, Target::Request).unwrap();
        assert!(rules.plan.headers.is_empty() && !rules.templates);
        let rules = Rules::from_json(
            Some(br#"{"add": {"headers": {"x-user": "$(consumer.id)"}}}"#.to_vec()),
            Target::Request,
        )
        .unwrap();
        assert!(rules.templates && rules.consumer);
        let e = Rules::from_json(
            Some(br#"{"set": {"headers": {":path": "/x"}}}"#.to_vec()),
            Target::Request,
        )
        .unwrap_err();
        assert_eq!(e.pointer, "/set/headers/:path");
        let e = Rules::from_json(Some(br#"{"add": {"nope": 1}}"#.to_vec()), Target::Request)
            .unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
    }
}

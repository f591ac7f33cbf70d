//! RFC 9457 problem replies from plugins, shaped exactly like the gateway's own (see
//! `host/src/problem.rs`): `content-type: application/problem+json` and a body with `type`
//! (`urn:barbacane:error:<kind>`), `title` (the status's reason phrase), `status` and `detail`,
//! in that order. A client therefore handles a 401 from an auth plugin and a 404 from the router
//! the same way.

use proxy_wasm::traits::HttpContext;
use serde::Serialize;

/// The prefix of every problem `type`; the kind follows it.
pub const TYPE_PREFIX: &str = "urn:barbacane:error:";

/// The media type of problem bodies.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: u16,
    /// The `type` suffix, a lowercase slug such as `unauthorized` or `rate-limited`.
    pub kind: String,
    /// A short summary; [`Problem::new`] uses the status's reason phrase, as the gateway does.
    pub title: String,
    /// What happened to this request, for humans.
    pub detail: String,
    /// Extra response headers (`www-authenticate`, `retry-after`, …).
    pub headers: Vec<(String, String)>,
}

/// The body's fields, in the gateway's order.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl Problem {
    /// A problem with `status`, `kind` and `detail`; the title is the status's reason phrase.
    pub fn new(status: u16, kind: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            kind: kind.into(),
            title: String::from(reason_phrase(status)),
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// Replaces the title.
    pub fn with_title(mut self, title: impl Into<String>) -> Problem {
        self.title = title.into();
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Problem {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The full `type`: `urn:barbacane:error:<kind>`.
    pub fn type_uri(&self) -> String {
        format!("{TYPE_PREFIX}{}", self.kind)
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        // Serialising a struct of strings and an integer to a Vec cannot fail.
        serde_json::to_vec(&Body {
            type_uri: self.type_uri(),
            title: &self.title,
            status: self.status,
            detail: &self.detail,
        })
        .unwrap_or_default()
    }

    /// The response headers: the content type, then the extra headers.
    pub fn response_headers(&self) -> Vec<(&str, &str)> {
        let mut headers = vec![("content-type", CONTENT_TYPE)];
        headers.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        headers
    }

    /// Answers the stream with this problem (a local response). As with any local response, the
    /// filter should then return `Action::Pause` from the callback it sent it from.
    pub fn send<C: HttpContext + ?Sized>(&self, ctx: &C) {
        let body = self.body();
        ctx.send_http_response(u32::from(self.status), self.response_headers(), Some(&body));
    }
}

/// The reason phrase of `status`, as the gateway (the `http` crate) writes it; `Error` for
/// statuses without one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        511 => "Network Authentication Required",
        _ => "Error",
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
    fn body_has_the_gateway_shape_and_order() {
        let problem = Problem::new(401, "unauthorized", "no credentials")
            .with_header("www-authenticate", "Bearer realm=\"api\"");
        assert_eq!(
            String::from_utf8(problem.body()).unwrap(),
            r#"{"type":"urn:barbacane:error:unauthorized","title":"Unauthorized","status":401,"detail":"no credentials"}"#
        );
        assert_eq!(
            problem.response_headers(),
            vec![
                ("content-type", "application/problem+json"),
                ("www-authenticate", "Bearer realm=\"api\"")
            ]
        );
    }

    #[test]
    fn titles() {
        assert_eq!(
            Problem::new(429, "rate-limited", "").title,
            "Too Many Requests"
        );
        assert_eq!(Problem::new(599, "odd", "").title, "Error");
        assert_eq!(
            Problem::new(403, "forbidden", "").with_title("Nope").title,
            "Nope"
        );
        let escaped = Problem::new(400, "bad", "a \"quoted\" detail").body();
        let doc: serde_json::Value = serde_json::from_slice(&escaped).unwrap();
        assert_eq!(doc["detail"], "a \"quoted\" detail");
    }
}

//! RFC 9457 problem responses: every error the gateway itself produces goes through here, so
//! they all share one shape (`application/problem+json`, `type: urn:barbacane:error:<kind>`).

use crate::server::Body;
use crate::validate::FieldError;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// The kinds of error the gateway reports; the kind becomes the problem's `type` URN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No route matches the path (and host).
    NotFound,
    /// The path exists, not with this method.
    MethodNotAllowed,
    /// The request path is malformed or a traversal attempt.
    InvalidPath,
    /// Parameters or body do not match the spec.
    Validation,
    /// The body's content type is not one the operation accepts.
    UnsupportedMediaType,
    /// The body exceeds the size limit.
    PayloadTooLarge,
    /// The client stopped sending its request body.
    RequestTimeout,
    /// The request target exceeds the URI length limit.
    UriTooLong,
    /// Too many or too large headers.
    HeadersTooLarge,
    /// The upstream could not be reached or failed.
    BadGateway,
    /// The upstream did not answer in time.
    GatewayTimeout,
    /// A Proxy-Wasm plugin failed (fail-closed policy) or did something not supported yet.
    PluginFailed,
}

impl Kind {
    fn slug(self) -> &'static str {
        match self {
            Kind::NotFound => "not-found",
            Kind::MethodNotAllowed => "method-not-allowed",
            Kind::InvalidPath => "invalid-path",
            Kind::Validation => "validation",
            Kind::UnsupportedMediaType => "unsupported-media-type",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::RequestTimeout => "request-timeout",
            Kind::UriTooLong => "uri-too-long",
            Kind::HeadersTooLarge => "headers-too-large",
            Kind::BadGateway => "bad-gateway",
            Kind::GatewayTimeout => "gateway-timeout",
            Kind::PluginFailed => "plugin-failed",
        }
    }

    /// The HTTP status of this kind.
    pub fn status(self) -> StatusCode {
        match self {
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::InvalidPath | Kind::Validation => StatusCode::BAD_REQUEST,
            Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Kind::UriTooLong => StatusCode::URI_TOO_LONG,
            Kind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Kind::BadGateway => StatusCode::BAD_GATEWAY,
            Kind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Kind::PluginFailed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A problem document.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind_urn: String,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldError>>,
    #[serde(skip)]
    kind: Kind,
}

impl Problem {
    /// A problem of `kind` with a human-readable `detail`.
    pub fn new(kind: Kind, detail: impl Into<String>) -> Problem {
        let status = kind.status();
        Problem {
            kind_urn: format!("urn:barbacane:error:{}", kind.slug()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
            kind,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Attaches the failing fields.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Problem {
        self.errors = Some(errors);
        self
    }

    /// The response carrying this problem.
    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = Response::new(crate::server::full(Bytes::from(body)));
        *response.status_mut() = self.kind.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

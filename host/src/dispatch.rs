//! Dispatchers: what answers a request once it has been routed and validated. `mock` answers
//! from config; `http-upstream` forwards to a named upstream (see [`crate::upstream`]).

use crate::gateway::ClientConnection;
use crate::model::{Dispatch, MockDispatch};
use crate::server::{Body, full};
use crate::upstream::Upstreams;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};

/// The request a dispatcher answers, as the pipeline hands it over.
pub struct Context<'a> {
    /// The request head.
    pub parts: http::request::Parts,
    /// The request body (already validated or size-limited).
    pub body: Body,
    /// Decoded path parameters.
    pub path_params: &'a [(String, String)],
    /// The client connection.
    pub client: ClientConnection,
    /// The request's id, forwarded upstream.
    pub request_id: &'a HeaderValue,
}

/// Runs the operation's dispatcher.
pub async fn dispatch(
    dispatch: &Dispatch,
    upstreams: &Upstreams,
    cx: Context<'_>,
) -> Response<Body> {
    match dispatch {
        Dispatch::Mock(mock) => mock_response(mock),
        Dispatch::HttpUpstream(config) => upstreams.forward(config, cx).await,
    }
}

fn mock_response(mock: &MockDispatch) -> Response<Body> {
    let (default_type, bytes) = match &mock.body {
        None => (None, Vec::new()),
        Some(serde_json::Value::String(s)) => {
            (Some("text/plain; charset=utf-8"), s.clone().into_bytes())
        }
        Some(value) => (Some("application/json"), value.to_string().into_bytes()),
    };
    let mut response = Response::new(full(bytes));
    *response.status_mut() = StatusCode::from_u16(mock.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    if let Some(t) = default_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
    }
    // Names and values were checked at compile time; a bad one is skipped, not fatal.
    for (name, value) in &mock.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    response
}

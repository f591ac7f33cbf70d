//! Real HTTP/1.1 upstream servers on `127.0.0.1:0` for the harness: the echo upstream every test
//! gateway dispatches to, and closure-backed ones that answer a plugin's callouts. Each records
//! the requests it received.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// What an upstream does with a request.
pub type Handler = Arc<dyn Fn(TestRequest) -> TestResponse + Send + Sync>;

/// A request as an upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRequest {
    /// The method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers in order, names lowercase, repeated names repeated.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A response, read in full by [`super::TestGateway::send`] or returned by an upstream handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResponse {
    /// The status code.
    pub status: u16,
    /// Headers in order, names lowercase, repeated names repeated.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl TestRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::header(&self.headers, name)
    }
}

impl TestResponse {
    /// An empty response with `status`.
    pub fn new(status: u16) -> TestResponse {
        TestResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> TestResponse {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> TestResponse {
        self.body = body.into();
        self
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::header(&self.headers, name)
    }

    /// Every value of header `name` (any case).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        crate::http::header_values(&self.headers, name)
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (failing the test) when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {:?}", self.text()))
    }

    /// Asserts an RFC 9457 problem with `status` and `type` `urn:barbacane:error:<kind>`, as
    /// the gateway and [`crate::Problem`] write them, and returns its JSON.
    pub fn assert_problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some(crate::problem::CONTENT_TYPE),
            "headers: {:?}",
            self.headers
        );
        let doc = self.json();
        assert_eq!(
            doc["type"],
            format!("{}{kind}", crate::problem::TYPE_PREFIX)
        );
        assert_eq!(doc["status"], status);
        assert!(
            doc["title"].is_string() && doc["detail"].is_string(),
            "{doc}"
        );
        doc
    }
}

/// A running upstream server.
pub struct TestUpstream {
    name: String,
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<TestRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestUpstream {
    /// Starts upstream `name` on `127.0.0.1:0`.
    pub(super) async fn start(name: &str, handler: Handler) -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("upstream {name}: cannot listen on 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("upstream {name}: no local address: {e}"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let handler = handler.clone();
                        let log = log.clone();
                        async move {
                            let request = read_request(request).await;
                            if let Ok(mut log) = log.lock() {
                                log.push(request.clone());
                            }
                            // A handler may block (a slow upstream sleeps): off the runtime,
                            // so that the gateway's timers under test keep running meanwhile.
                            let response = tokio::task::spawn_blocking(move || handler(request))
                                .await
                                .unwrap_or_else(|e| panic!("upstream handler panicked: {e}"));
                            Ok::<_, Infallible>(to_hyper(response))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestUpstream {
            name: name.to_string(),
            addr,
            requests,
            task,
        }
    }

    /// Upstream `name` at a loopback port nothing listens on (bound, then released): connections
    /// to it are refused.
    pub(super) async fn closed(name: &str) -> TestUpstream {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .and_then(|listener| listener.local_addr())
            .unwrap_or_else(|e| panic!("upstream {name}: cannot find a free port: {e}"));
        TestUpstream {
            name: name.to_string(),
            addr,
            requests: Arc::new(Mutex::new(Vec::new())),
            task: tokio::spawn(async {}),
        }
    }

    /// The upstream's name in the spec.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The requests it has received so far, oldest first.
    pub fn requests(&self) -> Vec<TestRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The echo upstream: 200 with the request as JSON, `{"method", "uri", "headers": {name:
/// value}, "body"}` (repeated headers joined with `, `), and `x-upstream: echo`.
pub(super) fn echo(request: TestRequest) -> TestResponse {
    let mut headers = serde_json::Map::new();
    for (name, value) in &request.headers {
        match headers.get_mut(name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    let doc = json!({
        "method": request.method,
        "uri": request.uri,
        "headers": headers,
        "body": String::from_utf8_lossy(&request.body),
    });
    TestResponse::new(200)
        .with_header("content-type", "application/json")
        .with_header("x-upstream", "echo")
        .with_body(doc.to_string())
}

async fn read_request(request: http::Request<Incoming>) -> TestRequest {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    TestRequest {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: header_pairs(&parts.headers),
        body,
    }
}

fn to_hyper(response: TestResponse) -> http::Response<Full<Bytes>> {
    let mut out = http::Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = http::StatusCode::from_u16(response.status)
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &response.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    out
}

/// A header map as ordered (lowercase name, value) pairs; non-UTF-8 values lossily.
pub(super) fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

//! Shared end-to-end test support: gateways on ephemeral loopback ports (in-process, or as a real
//! `barbacane` process), real upstream HTTP servers, and HTTP/raw-TCP clients.
#![allow(dead_code)]

use barbacane::artifact::Artifact;
use barbacane::compile::{self, Options};
use barbacane::gateway::{Gateway, Worker};
use barbacane::server::{self, Body, Config};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A plugin named `name` configured with `config`, as the gateway would start it.
pub fn plugin_config(name: &str, config: &str) -> barbacane::proxywasm::PluginConfig {
    let middleware = barbacane::model::Middleware {
        plugin: name.to_string(),
        config: config.to_string(),
        root_id: String::new(),
        vm_config: String::new(),
        failure: Default::default(),
        backoff: Default::default(),
        allow_on_headers_stop_iteration: false,
        deadline_ms: barbacane::model::default_deadline_ms(),
    };
    barbacane::proxywasm::PluginConfig::for_middleware(&middleware, Arc::from(Vec::new()))
}

/// Writes `request` on a new connection to `addr` and reads until it closes (or 10 s).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A spec whose `/echo` (GET `echoGet`, POST `echoPost`) goes to upstream `echo` on `echo_port`
/// and `/mock` (GET `mockGet`) to a mock answering `mocked`, with `upstreams` extra upstream
/// entries (YAML lines under `x-barbacane-upstreams`) and `middlewares` (YAML list items) as the
/// global chain.
pub fn echo_spec(echo_port: u16, upstreams: &str, middlewares: &str) -> String {
    format!(
        r#"openapi: 3.1.0
info: {{title: echo, version: '1'}}
x-barbacane-upstreams:
  echo: {{endpoints: ['http://127.0.0.1:{echo_port}'], allow_plaintext: true}}
{upstreams}
x-barbacane-middlewares:
{middlewares}
paths:
  /echo:
    get:
      operationId: echoGet
      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: echo}}}}
    post:
      operationId: echoPost
      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: echo}}}}
  /mock:
    get:
      operationId: mockGet
      x-barbacane-dispatch: {{name: mock, config: {{body: mocked}}}}
"#
    )
}

/// Writes `files` (name, text) into a new temp dir.
pub fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// A project with `spec` and `plugins`, each `(name, module bytes)` stored as
/// `filters/<name>.wasm` and declared in `barbacane.yaml`.
pub fn plugins_project(spec: &str, plugins: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let mut manifest = String::from("plugins:\n");
    for (name, _) in plugins {
        manifest.push_str(&format!(
            "  {name}: {{source: 'file:filters/{name}.wasm'}}\n"
        ));
    }
    let dir = project(&[("api.yaml", spec), ("barbacane.yaml", &manifest)]);
    std::fs::create_dir_all(dir.path().join("filters")).unwrap();
    for (name, bytes) in plugins {
        std::fs::write(dir.path().join(format!("filters/{name}.wasm")), bytes).unwrap();
    }
    dir
}

/// Writes the compiled conformance filter `filter` to `file` in `dir` (folders made as needed).
pub fn write_filter(dir: &tempfile::TempDir, file: &str, filter: &str) {
    let path = dir.path().join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, conformance_filter(filter)).unwrap();
}

/// A gateway served in-process on 127.0.0.1:0.
pub struct TestGateway {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops accepting and waits for the drain to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Compiles `spec` (YAML) in dev mode and serves it in-process.
pub async fn gateway(spec: &str) -> TestGateway {
    gateway_with(
        spec,
        Config {
            dev: true,
            ..Config::default()
        },
    )
    .await
}

/// Compiles `spec` (YAML, dev mode so plaintext loopback upstreams are allowed) and serves it
/// with `config`.
pub async fn gateway_with(spec: &str, config: Config) -> TestGateway {
    gateway_project(&[("api.yaml", spec)], config).await
}

/// Writes `files` into a project, compiles its `api.yaml` (dev mode) and serves it with `config`.
pub async fn gateway_project(files: &[(&str, &str)], config: Config) -> TestGateway {
    gateway_in(project(files), config).await
}

/// Compiles `api.yaml` in `dir` (with `barbacane.yaml` when present; dev mode) and serves it.
pub async fn gateway_in(dir: tempfile::TempDir, config: Config) -> TestGateway {
    let manifest = dir.path().join("barbacane.yaml");
    let manifest = manifest.exists().then_some(manifest);
    let compiled = compile::compile(
        &[dir.path().join("api.yaml")],
        manifest.as_deref(),
        Options { dev: true },
    )
    .unwrap_or_else(|d| panic!("spec does not compile: {d:#?}"));
    serve_artifact(Artifact::from_compiled(&compiled, true), config, dir).await
}

/// Serves `artifact` in-process; `dir` is kept alive as long as the gateway.
pub async fn serve_artifact(
    artifact: Artifact,
    config: Config,
    dir: tempfile::TempDir,
) -> TestGateway {
    let gateway = Arc::new(Gateway::new(artifact, config).unwrap());
    let worker = Arc::new(Worker::new(gateway).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(
        tokio::sync::watch::channel(worker).1,
        listener,
        async {
            let _ = rx.await;
        },
    ));
    TestGateway {
        addr,
        shutdown: Some(tx),
        task: Some(task),
        _dir: dir,
    }
}

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// A real HTTP/1.1 upstream server on 127.0.0.1:0 answering with `handler`. Counts connections.
pub struct Upstream {
    pub addr: SocketAddr,
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

pub async fn upstream<F, Fut>(handler: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let handler: Handler = Arc::new(move |r| Box::pin(handler(r)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |r| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(r).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream { addr, connections }
}

/// A raw HTTP/1.1 upstream that answers every request with a chunked `ok` and trailer
/// `x-upstream-trailer: t`, then closes.
pub async fn trailers_upstream() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\
                          trailer: x-upstream-trailer\r\nconnection: close\r\n\r\n\
                          2\r\nok\r\n0\r\nx-upstream-trailer: t\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    addr
}

/// An upstream that echoes the request as JSON: method, path+query, headers, body.
pub async fn echo_upstream() -> Upstream {
    upstream(|request: Request<Incoming>| async move {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::Value::String(v.to_str().unwrap_or("").to_string()),
                )
            })
            .collect();
        let doc = serde_json::json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        let mut response = Response::new(server::full(doc.to_string()));
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        response
            .headers_mut()
            .insert("x-upstream", "echo".parse().unwrap());
        response
    })
    .await
}

/// A response read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// Asserts an RFC 9457 problem of `kind` with `status`, and returns it.
    pub fn problem(&self, status: u16, kind: &str) -> serde_json::Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), "application/problem+json");
        let doc = self.json();
        assert_eq!(doc["type"], format!("urn:barbacane:error:{kind}"));
        assert_eq!(doc["status"], status);
        assert!(
            doc["title"].is_string() && doc["detail"].is_string(),
            "{doc}"
        );
        assert!(!self.header("x-request-id").is_empty());
        doc
    }
}

/// An HTTP/1.1 keep-alive client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// Sends one request with `client`.
pub async fn send_with(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut builder = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Sends one request with a fresh client.
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    send_with(&client(), method, url, headers, body).await
}

pub async fn get(url: &str) -> Reply {
    send(Method::GET, url, &[], b"").await
}

/// Writes `request` bytes on a new TCP connection and reads until the server closes it (or 10 s).
pub fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code of a raw HTTP/1.1 response text.
pub fn raw_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// The JSON body of a raw (non-chunked, Connection: close) response text.
pub fn raw_json(response: &str) -> serde_json::Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response:?}"))
}

/// The `barbacane` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_barbacane"))
}

/// Runs `barbacane args…` in `dir` and returns (exit code, stdout, stderr).
pub fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `barbacane validate --format json` of `api.yaml` in `dir` (with `barbacane.yaml` if given).
pub fn validate(dir: &tempfile::TempDir, with_manifest: bool) -> (i32, serde_json::Value) {
    let mut args = vec![
        "validate", "--spec", "api.yaml", "--dev", "--format", "json",
    ];
    if with_manifest {
        args.extend(["--manifest", "barbacane.yaml"]);
    }
    let (code, stdout, stderr) = run(dir.path(), &args);
    let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    (code, doc)
}

/// An authorization service for callouts: 200 with body `alice` when the request carries
/// `authorization: Bearer good`, 401 otherwise. Records each request it saw (method, target,
/// `host`, `x-original-path`).
pub async fn auth_upstream(seen: Arc<std::sync::Mutex<Vec<String>>>) -> Upstream {
    upstream(move |request: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .map(|h| h.to_str().unwrap().to_string())
                    .unwrap_or_default()
            };
            seen.lock().unwrap().push(format!(
                "{} {} {} {}",
                request.method(),
                request.uri(),
                header("host"),
                header("x-original-path")
            ));
            let good = header("authorization") == "Bearer good";
            let mut response = Response::new(server::full(if good { "alice" } else { "no" }));
            if !good {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
            }
            response
        }
    })
    .await
}

/// Sends a chunked POST in separate chunks (with pauses, so each arrives as its own frame) and
/// returns the raw response.
pub async fn chunked_post(addr: SocketAddr, path: &str, chunks: &[&[u8]]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    for chunk in chunks {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(chunk).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of header `name` in a raw HTTP/1.1 response text (first match, head or trailers).
pub fn raw_header<'a>(raw: &'a str, name: &str) -> &'a str {
    raw.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or("")
}

mod filters;
#[allow(unused_imports, reason = "not every test binary builds filters")]
pub use filters::{conformance_filter, cpp_filter, go_filter, third_party_filter};

mod grpc;
#[allow(
    unused_imports,
    reason = "only the gRPC callout tests start a gRPC server"
)]
pub use grpc::{GrpcServer, grpc_server, grpc_server_tls};

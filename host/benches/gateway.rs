//! One request's CPU cost through the whole gateway — HTTP/1 parsing, routing, the Proxy-Wasm
//! chain, the mock dispatcher, the response written back — with no network: client and server
//! talk over an in-memory pipe on one thread. Without the kernel's loopback and the scheduler
//! (most of what `bench/run` measures on a small machine), differences of a few percent in the
//! gateway's own work show up here that wrk's figures hide in their noise.
//!
//! Scenarios: no plugin; 1 and 5 headers-only filters (the conformance `headers` filter, each
//! adding one header), the 5 also as 5 modules (copies that differ by a custom section: the same
//! work in code of its own per filter, as a chain of different plugins runs it); the 5 built-ins
//! of `bench/run`'s `chain5`, configured as there, together and each alone; a 64 KiB response
//! body with no plugin and through one headers filter (which, declaring no callbacks, is lent the
//! body); and the passthrough of `bench/run` — the request forwarded to an upstream (a hyper
//! server on loopback, in the same thread) — with no plugin and through one headers filter, the
//! comparison the per-filter budget is stated against; and a 64 KiB request body forwarded
//! through one headers filter (which, declaring no callbacks, is lent the body).
#![allow(
    clippy::unwrap_used,
    reason = "benchmark code: a failed unwrap is a failed run"
)]

/// As in the `barbacane` binary, so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: barbacane_allocator::Allocator = barbacane_allocator::Allocator;

#[path = "../tests/support/filters.rs"]
mod filters;

use barbacane::artifact::Artifact;
use barbacane::compile::{self, Options};
use barbacane::gateway::{ClientConnection, Gateway, Worker};
use barbacane::server::Config;
use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use std::sync::Arc;

const JWT_SECRET: &str = "bench-hs256-secret-of-at-least-32-bytes";

const OPERATION: &str = r#"
paths:
  /hello:
    get:
      operationId: hello
      responses:
        "200":
          description: A small JSON document.
      x-barbacane-dispatch:
        name: mock
        config:
          status: 200
          headers:
            content-type: application/json
          body: 'HELLO'
  /big:
    get:
      operationId: big
      responses:
        "200":
          description: A large text body.
      x-barbacane-dispatch:
        name: mock
        config:
          status: 200
          body: BIG_BODY
  /proxied:
    get:
      operationId: proxied
      responses:
        "200":
          description: The upstream's answer.
      x-barbacane-dispatch:
        name: http-upstream
        config:
          upstream: backend
          path: /hello
  /upload:
    post:
      operationId: upload
      responses:
        "200":
          description: The upstream's answer.
      x-barbacane-dispatch:
        name: http-upstream
        config:
          upstream: backend
          path: /hello
x-barbacane-upstreams:
  backend:
    endpoints: ["http://UPSTREAM"]
    allow_plaintext: true
"#;

/// The body the mock and the upstream answer `/hello` with.
const HELLO: &str = r#"{"message":"hello, world","service":"bench","ok":true,"n":1}"#;

/// The size of `/big`'s body, and of the body posted to `/upload`.
const BIG_BODY: usize = 64 * 1024;

const CHAIN5: &str = r#"
x-barbacane-middlewares:
  - {name: jwt-auth, config: {keys: [{alg: HS256, secret: 'bench-hs256-secret-of-at-least-32-bytes'}], required_claims: [exp]}}
  - {name: rate-limit, config: {limit: 100000000, window: 1}}
  - {name: cors, config: {allow_origins: ['https://app.example.com', 'http://localhost:3000'], expose_headers: [x-request-id]}}
  - {name: correlation-id}
  - {name: request-transformer, config: {remove: {headers: [x-debug]}, rename: {headers: {x-api-version: x-upstream-version}}, set: {headers: {x-tenant: acme}}, append: {headers: {x-forwarded-by: barbacane}}}}
"#;

/// `n` headers-only filters, each adding its own header: all the `headers` plugin, or with
/// `own_modules` each its own copy of it (`headers1`…, see [`worker`]).
fn header_filters(n: usize, own_modules: bool) -> String {
    let mut chain = String::from("x-barbacane-middlewares:\n");
    for i in 1..=n {
        let plugin = if own_modules {
            format!("headers{i}")
        } else {
            String::from("headers")
        };
        chain.push_str(&format!(
            "  - {{name: {plugin}, config: 'x-filter-{i}: 1'}}\n"
        ));
    }
    chain
}

/// How many copies of the `headers` filter [`worker`] declares as plugins of their own.
const HEADERS_COPIES: u8 = 5;

/// An HS256 JWT for `bench` that expires in 2100, as `bench/run` makes it.
fn jwt() -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signed = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(br#"{"sub":"bench","groups":["bench"],"exp":4102444800}"#)
    );
    // HMAC-SHA256 (RFC 2104) with a key shorter than the block.
    let pad = |byte: u8| {
        let mut block = [byte; 64];
        for (b, k) in block.iter_mut().zip(JWT_SECRET.as_bytes()) {
            *b ^= k;
        }
        block
    };
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(signed.as_bytes())
        .finalize();
    let mac = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    format!("{signed}.{}", b64(&mac))
}

/// A worker for the spec made of `middlewares` and the bench operation.
fn worker(middlewares: &str, upstream: std::net::SocketAddr) -> Worker {
    let dir = tempfile::tempdir().unwrap();
    let operations = OPERATION
        .replace("BIG_BODY", &"x".repeat(BIG_BODY))
        .replace("HELLO", HELLO)
        .replace("UPSTREAM", &upstream.to_string());
    let spec = format!(
        "openapi: 3.1.0\ninfo: {{title: bench, version: 1.0.0}}\n{middlewares}{operations}"
    );
    std::fs::write(dir.path().join("api.yaml"), spec).unwrap();
    let headers = dir.path().join("headers.wasm");
    let module = filters::conformance_filter("headers");
    std::fs::write(&headers, &module).unwrap();
    let manifest = dir.path().join("barbacane.yaml");
    let mut source = format!(
        "plugins:\n  headers: {{source: 'file:{}'}}\n",
        headers.display()
    );
    // Each copy ends with a custom section of its own (id 0, size, name, a byte): another
    // module to wasmtime, compiled into code of its own, that runs as the original does.
    for i in 1..=HEADERS_COPIES {
        let mut copy = module.clone();
        copy.extend([0, 6, 4]);
        copy.extend(b"copy");
        copy.push(i);
        let path = dir.path().join(format!("headers{i}.wasm"));
        std::fs::write(&path, copy).unwrap();
        source.push_str(&format!(
            "  headers{i}: {{source: 'file:{}'}}\n",
            path.display()
        ));
    }
    std::fs::write(&manifest, source).unwrap();
    let compiled = compile::compile(
        &[dir.path().join("api.yaml")],
        Some(&manifest),
        Options { dev: true },
    )
    .unwrap_or_else(|d| panic!("spec does not compile: {d:#?}"));
    let artifact = Artifact::from_compiled(&compiled, true);
    Worker::new(Arc::new(Gateway::new(artifact, Config::default()).unwrap())).unwrap()
}

/// An HTTP/1 upstream on loopback answering every request with `HELLO`, served by tasks of the
/// calling runtime; its address.
async fn upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(|_request| async {
                hyper::Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(HELLO.as_bytes())))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    address
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = format!("Bearer {}", jwt());
    let upstream = runtime.block_on(upstream());
    let mut scenarios = vec![
        (String::from("no plugin"), String::new(), "/hello"),
        (
            String::from("1 headers filter"),
            header_filters(1, false),
            "/hello",
        ),
        (
            String::from("5 headers filters"),
            header_filters(5, false),
            "/hello",
        ),
        (
            String::from("5 headers filters, 5 modules"),
            header_filters(usize::from(HEADERS_COPIES), true),
            "/hello",
        ),
        (
            String::from("chain5 (built-ins)"),
            CHAIN5.to_string(),
            "/hello",
        ),
        (
            String::from("no plugin, 64 KiB body"),
            String::new(),
            "/big",
        ),
        (
            String::from("1 headers filter, 64 KiB body"),
            header_filters(1, false),
            "/big",
        ),
        (String::from("proxy"), String::new(), "/proxied"),
        (
            String::from("proxy, 1 headers filter"),
            header_filters(1, false),
            "/proxied",
        ),
        (
            String::from("proxy, 64 KiB request body"),
            String::new(),
            "/upload",
        ),
        (
            String::from("proxy, 1 headers filter, 64 KiB request body"),
            header_filters(1, false),
            "/upload",
        ),
    ];
    // Each plugin of chain5 alone, configured as there: where the chain's cost goes.
    for entry in CHAIN5.lines().filter(|line| line.starts_with("  - ")) {
        let plugin = entry
            .split_once("name: ")
            .unwrap()
            .1
            .split([',', '}'])
            .next()
            .unwrap();
        let middlewares = format!("x-barbacane-middlewares:\n{entry}\n");
        scenarios.push((format!("chain5: {plugin} alone"), middlewares, "/hello"));
    }
    for (name, middlewares, path) in scenarios {
        // Built when the scenario first runs: one that the filter leaves out gets no worker, so
        // a profile of one scenario holds only its own plugins' JIT code (perf maps name the
        // wrong module's functions when other workers' code came and went at the same addresses).
        let connect = || {
            runtime.block_on(async {
                // The worker's replicas belong to the runtime it is made on.
                let worker = Arc::new(worker(&middlewares, upstream));
                let (client_io, server_io) = tokio::io::duplex(64 * 1024);
                let connection = ClientConnection {
                    peer: "127.0.0.1:40000".parse().unwrap(),
                    local: "127.0.0.1:8080".parse().unwrap(),
                    tls: false,
                    id: 1,
                };
                let service = hyper::service::service_fn(move |request| {
                    let worker = worker.clone();
                    async move { worker.handle(request, connection).await }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(server_io), service),
                );
                let (client, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(client_io))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                client
            })
        };
        let mut client = None;
        let request = || {
            let (method, body) = match path {
                "/upload" => (hyper::Method::POST, Bytes::from(vec![b'x'; BIG_BODY])),
                _ => (hyper::Method::GET, Bytes::new()),
            };
            hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "127.0.0.1")
                .header("authorization", &token)
                .header("origin", "http://localhost:3000")
                .header("x-debug", "1")
                .header("x-api-version", "2")
                .body(Full::new(body))
                .unwrap()
        };
        c.bench_function(&name, |b| {
            let client = client.get_or_insert_with(&connect);
            b.iter(|| {
                runtime.block_on(async {
                    let response = client.send_request(request()).await.unwrap();
                    assert_eq!(response.status(), 200);
                    let body = response.into_body().collect().await.unwrap().to_bytes();
                    if path == "/big" {
                        assert_eq!(body.len(), BIG_BODY);
                    } else {
                        assert_eq!(body, HELLO.as_bytes());
                    }
                    body
                })
            });
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

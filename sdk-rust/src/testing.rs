//! The native test harness: a plugin's own `cargo test` builds its `.wasm` and runs it through the
//! real barbacane host, in-process, on loopback ports — requests in, responses out, callouts
//! answered by real HTTP servers. What is tested is the module that ships, not a mock of the ABI.
//!
//! ```no_run
//! use barbacane_sdk::testing::{TestGateway, build_plugin};
//! use std::path::Path;
//!
//! #[tokio::test]
//! async fn adds_the_header() {
//!     let wasm = build_plugin(Path::new(env!("CARGO_MANIFEST_DIR")));
//!     let gateway = TestGateway::start(&wasm, serde_json::json!({"header": "x-demo", "value": "1"})).await;
//!     let response = gateway.send("GET", "/anything", &[], b"").await;
//!     assert_eq!(response.status, 200);
//!     // The built-in echo upstream answers with the request it received, as JSON.
//!     assert_eq!(response.json()["headers"]["x-demo"], "1");
//! }
//! ```
//!
//! The gateway serves a generated project: `/anything` (GET and POST by default, see
//! [`TestGatewayBuilder::methods`]) dispatched to an echo upstream the harness starts, the plugin
//! as the global middleware chain, and any extra upstreams (for callouts) backed by closures.
//! Compiling uses the real compiler, so a configuration the plugin refuses in `on_configure`
//! fails [`TestGatewayBuilder::try_start`] with the compiler's diagnostic.
//!
//! Needs the `wasm32-wasip1` target (`rustup target add wasm32-wasip1`): [`build_plugin`] runs
//! `cargo build --release --target wasm32-wasip1` on the plugin crate.

mod plugin;
mod random;
mod upstream;

pub use plugin::{KINDS, PluginManifest, build_plugin, check_config, plugin_manifest};
pub use random::Random;
pub use upstream::{Handler, TestRequest, TestResponse, TestUpstream};

use barbacane::artifact::Artifact;
use barbacane::compile::{self, Options};
use barbacane::gateway::{Gateway, Worker};
use barbacane::server::{self, Config};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long [`TestGateway::send`] waits for a response before failing the test.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(20);

/// A gateway serving a plugin in-process on `127.0.0.1`, with its upstreams. Dropping it stops
/// everything.
pub struct TestGateway {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    upstreams: Vec<TestUpstream>,
    /// The worker threads, when the gateway runs more than one (see
    /// [`TestGatewayBuilder::workers`]).
    workers: Option<WorkerThreads>,
    _project: tempfile::TempDir,
}

/// Worker threads serving the gateway as `barbacane serve` does: one runtime and one set of VM
/// replicas per thread, the listening sockets shared with `SO_REUSEPORT`.
struct WorkerThreads {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One middleware in the chain under test.
struct Plugin {
    name: String,
    wasm: Vec<u8>,
    config: Value,
}

/// Configures a [`TestGateway`]: the middleware chain, the methods of `/anything`, extra
/// upstreams.
pub struct TestGatewayBuilder {
    plugins: Vec<Plugin>,
    methods: Vec<String>,
    upstreams: Vec<(String, Handler)>,
    closed_upstreams: Vec<String>,
    workers: usize,
    /// The upstream `/anything` is dispatched to.
    dispatch: String,
}

impl TestGateway {
    /// Serves `wasm` (named `plugin`) with `config` as the only middleware; panics if the project
    /// does not compile (see [`TestGatewayBuilder::try_start`] to test refused configurations).
    pub async fn start(wasm: &[u8], config: Value) -> TestGateway {
        TestGateway::builder()
            .plugin("plugin", wasm, config)
            .start()
            .await
    }

    /// A gateway to configure.
    pub fn builder() -> TestGatewayBuilder {
        TestGatewayBuilder {
            plugins: Vec::new(),
            methods: vec![String::from("get"), String::from("post")],
            upstreams: Vec::new(),
            closed_upstreams: Vec::new(),
            workers: 1,
            dispatch: String::from("echo"),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The upstream named `name` (`echo` is the built-in one), for its request log.
    pub fn upstream(&self, name: &str) -> &TestUpstream {
        self.upstreams
            .iter()
            .find(|u| u.name() == name)
            .unwrap_or_else(|| panic!("no upstream named '{name}'"))
    }

    /// Sends one HTTP/1.1 request (`path` may carry a query) and reads the whole response.
    /// Panics on transport errors and after 20 s without a response.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> TestResponse {
        let mut builder = http::Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap_or_else(|e| panic!("invalid request {method} {path}: {e}"));
        let response = tokio::time::timeout(RESPONSE_TIMEOUT, self.client.request(request))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no response within {RESPONSE_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{method} {path}: request failed: {e}"));
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: response body failed: {e}"))
            .to_bytes();
        TestResponse {
            status: parts.status.as_u16(),
            headers: upstream::header_pairs(&parts.headers),
            body: body.to_vec(),
        }
    }

    /// `GET path` without headers.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.send("GET", path, &[], b"").await
    }

    /// Sends `request`, a whole HTTP/1.1 request written out byte for byte (it should ask for
    /// `connection: close`), on a new connection, and returns the raw response read until the
    /// gateway closes it, converted lossily to text. For what the HTTP client of
    /// [`TestGateway::send`] refuses to send, such as header values that are not UTF-8. Panics,
    /// failing the test, when the connection fails or no answer comes within 20 seconds.
    pub async fn raw(&self, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let addr = self.addr;
        let request = request.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect to the gateway");
            stream
                .set_read_timeout(Some(RESPONSE_TIMEOUT))
                .expect("set a read timeout");
            stream.write_all(&request).expect("send the raw request");
            let mut response = Vec::new();
            stream
                .read_to_end(&mut response)
                .expect("read the raw response");
            String::from_utf8_lossy(&response).into_owned()
        })
        .await
        .expect("the raw exchange panicked")
    }

    /// How many times plugin `name` failed (trapped, or broke the ABI) so far: the gateway's
    /// `barbacane_plugin_failures_total{plugin="NAME"}` counter, read from
    /// `/__barbacane/metrics` (0 while the counter is absent). Panics if the metrics endpoint
    /// does not answer 200.
    pub async fn plugin_failures(&self, name: &str) -> u64 {
        let metrics = self.get("/__barbacane/metrics").await;
        assert_eq!(metrics.status, 200, "metrics: {}", metrics.text());
        let prefix = format!("barbacane_plugin_failures_total{{plugin=\"{name}\"}} ");
        metrics
            .text()
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .map(|value| {
                let value = value.trim();
                value
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{prefix}{value}: not a count"))
            })
            .sum()
    }

    /// Stops accepting, waits for in-flight requests, and stops the upstreams.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(mut workers) = self.workers.take() {
            let _ = workers.stop.send(true);
            if let Some(thread) = workers.thread.take() {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // The worker threads drain and exit on their own.
        if let Some(workers) = &self.workers {
            let _ = workers.stop.send(true);
        }
    }
}

impl TestGatewayBuilder {
    /// Appends a middleware: plugin `name` built from `wasm`, with `config` (a JSON string is
    /// passed to the plugin as-is, anything else as JSON text; `null` as no configuration).
    pub fn plugin(mut self, name: &str, wasm: &[u8], config: Value) -> TestGatewayBuilder {
        self.plugins.push(Plugin {
            name: name.to_string(),
            wasm: wasm.to_vec(),
            config,
        });
        self
    }

    /// The methods `/anything` declares (default GET and POST). The router answers methods a
    /// path does not declare with 405 before any plugin runs, so e.g. CORS preflights need
    /// `options` here.
    pub fn methods(mut self, methods: &[&str]) -> TestGatewayBuilder {
        self.methods = methods.iter().map(|m| m.to_ascii_lowercase()).collect();
        self
    }

    /// Adds upstream `name` (usable as a callout target by the plugin), answered by `handler`.
    pub fn upstream(
        mut self,
        name: &str,
        handler: impl Fn(TestRequest) -> TestResponse + Send + Sync + 'static,
    ) -> TestGatewayBuilder {
        self.upstreams.push((name.to_string(), Arc::new(handler)));
        self
    }

    /// Dispatches `/anything` to upstream `name` (one added with [`TestGatewayBuilder::upstream`])
    /// instead of the echo upstream: to test what a plugin does with responses of your choosing.
    pub fn dispatch(mut self, name: &str) -> TestGatewayBuilder {
        self.dispatch = name.to_string();
        self
    }

    /// Adds upstream `name` at a loopback port nothing listens on: callouts to it fail to
    /// connect, as to an upstream that is down.
    pub fn closed_upstream(mut self, name: &str) -> TestGatewayBuilder {
        self.closed_upstreams.push(name.to_string());
        self
    }

    /// Serves with `count` worker threads (default 1, in the test's own runtime), as `barbacane
    /// serve` does: each thread has its own runtime and its own VM replica of every plugin, and
    /// the kernel spreads connections over them (`SO_REUSEPORT`). For plugins that share state
    /// across replicas (shared data, queues).
    pub fn workers(mut self, count: usize) -> TestGatewayBuilder {
        self.workers = count.max(1);
        self
    }

    /// Starts the gateway; panics if the project does not compile.
    pub async fn start(self) -> TestGateway {
        self.try_start()
            .await
            .unwrap_or_else(|e| panic!("the test gateway did not start:\n{e}"))
    }

    /// Starts the gateway, or returns the compiler's diagnostics (e.g. a plugin refusing its
    /// configuration: code E1061 with the plugin's own log line).
    pub async fn try_start(self) -> Result<TestGateway, String> {
        let mut upstreams = vec![TestUpstream::start("echo", Arc::new(upstream::echo)).await];
        for (name, handler) in self.upstreams {
            upstreams.push(TestUpstream::start(&name, handler).await);
        }
        for name in &self.closed_upstreams {
            upstreams.push(TestUpstream::closed(name).await);
        }
        let project =
            tempfile::tempdir().map_err(|e| format!("cannot create a temp project: {e}"))?;
        let mut manifest = String::from("plugins:\n");
        for plugin in &self.plugins {
            let file = format!("{}.wasm", plugin.name);
            std::fs::write(project.path().join(&file), &plugin.wasm)
                .map_err(|e| format!("cannot write {file}: {e}"))?;
            manifest.push_str(&format!("  {}: {{source: 'file:{file}'}}\n", plugin.name));
        }
        let spec = spec(&self.plugins, &self.methods, &upstreams, &self.dispatch);
        let spec_path = project.path().join("api.json");
        let manifest_path = project.path().join("barbacane.yaml");
        std::fs::write(&spec_path, spec.to_string())
            .and_then(|()| std::fs::write(&manifest_path, manifest))
            .map_err(|e| format!("cannot write the temp project: {e}"))?;

        let compiled = compile::compile(&[spec_path], Some(&manifest_path), Options { dev: true })
            .map_err(|diagnostics| {
                diagnostics
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        let config = Config {
            dev: true,
            ..Config::default()
        };
        let gateway = Arc::new(Gateway::new(
            Artifact::from_compiled(&compiled, true),
            config,
        )?);
        let worker = Arc::new(Worker::new(gateway.clone())?);
        if self.workers > 1 {
            // The worker above proved that every plugin starts; the threads make their own.
            drop(worker);
            let listeners = server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), self.workers)
                .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
            let addr = listeners
                .first()
                .and_then(|l| l.local_addr().ok())
                .ok_or_else(|| String::from("no local address"))?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let thread = std::thread::Builder::new()
                .name(String::from("barbacane-test-workers"))
                .spawn(move || {
                    if let Err(e) = server::run_workers(
                        tokio::sync::watch::channel(gateway).1,
                        listeners,
                        stopped,
                    ) {
                        eprintln!("the test gateway's workers failed: {e}");
                    }
                })
                .map_err(|e| format!("cannot start the worker threads: {e}"))?;
            return Ok(TestGateway {
                addr,
                client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
                shutdown: None,
                task: None,
                upstreams,
                workers: Some(WorkerThreads {
                    stop,
                    thread: Some(thread),
                }),
                _project: project,
            });
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("no local address: {e}"))?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(
            tokio::sync::watch::channel(worker).1,
            listener,
            async {
                let _ = rx.await;
            },
        ));
        Ok(TestGateway {
            addr,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            shutdown: Some(tx),
            task: Some(task),
            upstreams,
            workers: None,
            _project: project,
        })
    }
}

/// The generated spec (JSON, which the compiler reads like YAML): `/anything` with `methods`,
/// dispatched to `dispatch` (`echo` unless the builder says otherwise), the plugins as the global
/// chain.
fn spec(
    plugins: &[Plugin],
    methods: &[String],
    upstreams: &[TestUpstream],
    dispatch: &str,
) -> Value {
    let upstreams: serde_json::Map<String, Value> = upstreams
        .iter()
        .map(|u| {
            let endpoint = format!("http://{}", u.addr());
            let definition = json!({"endpoints": [endpoint], "allow_plaintext": true});
            (u.name().to_string(), definition)
        })
        .collect();
    let chain: Vec<Value> = plugins
        .iter()
        .map(|p| json!({"name": p.name, "config": p.config}))
        .collect();
    let operations: serde_json::Map<String, Value> = methods
        .iter()
        .map(|method| {
            let operation = json!({
                "operationId": format!("anything_{method}"),
                "responses": {"default": {"description": "whatever the upstream answers"}},
                "x-barbacane-dispatch": {"name": "http-upstream", "config": {"upstream": dispatch}},
            });
            (method.clone(), operation)
        })
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {"title": "barbacane-sdk test gateway", "version": "1"},
        "x-barbacane-upstreams": upstreams,
        "x-barbacane-middlewares": chain,
        "paths": {"/anything": operations},
    })
}

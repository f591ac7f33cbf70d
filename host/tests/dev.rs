//! `barbacane dev` (= `serve --dev --watch`), the real process: an edit to the spec is
//! recompiled and swapped in while the gateway runs, on connections already open too; a broken
//! edit prints its diagnostic and keeps the previous configuration serving; a request in flight
//! during a swap finishes on the configuration it started with; the plugins of the configuration
//! swapped out are shut down as Envoy does (root `on_done`, which may finish work first).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{project, upstream};

/// A running `barbacane dev`, its output collected as it comes.
struct Dev {
    child: Child,
    addr: SocketAddr,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buffer = [0; 4096];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    text
}

fn start_dev(dir: &Path, extra: &[&str]) -> Dev {
    let mut child = Command::new(support::bin())
        .args(["dev", "--spec", "api.yaml", "--listen", "127.0.0.1:0"])
        .args(extra)
        .args(["--workers", "2"])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .unwrap();
    let stderr = collect(child.stderr.take().unwrap());
    Dev {
        child,
        addr,
        stdout: collect(stdout),
        stderr,
    }
}

/// Waits (20 s at most) until `condition` holds.
async fn eventually(mut condition: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..200 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn spec(body: &str, slow_port: u16) -> String {
    format!(
        "openapi: 3.1.0\ninfo: {{title: t, version: '1'}}\nx-barbacane-upstreams:\n  slow: {{endpoints: ['http://127.0.0.1:{slow_port}']}}\npaths:\n  /hello:\n    get:\n      x-barbacane-dispatch: {{name: mock, config: {{body: '{body}'}}}}\n  /slow:\n    get:\n      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: slow}}}}\n"
    )
}

/// One client for the whole test: its pooled keep-alive connection sees the swaps too.
async fn body(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> (u16, String) {
    let request = http::Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_swaps_edits_in_keeps_serving_through_a_broken_one_and_finishes_requests_in_flight() {
    // The upstream says when a request has reached it, and answers when the test says so.
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (notify, gate) = (arrived.clone(), release.clone());
    let slow = upstream(move |_| {
        let (notify, gate) = (notify.clone(), gate.clone());
        async move {
            notify.notify_one();
            gate.notified().await;
            http::Response::new(barbacane::server::full("slow but complete"))
        }
    })
    .await;
    let port = slow.addr.port();
    let dir = project(&[("api.yaml", &spec("first", port))]);
    let dev = start_dev(dir.path(), &[]);
    let client = support::client();
    assert_eq!(
        body(&client, dev.addr, "/hello").await,
        (200, "first".into())
    );

    // A request in flight on the first configuration while the second one is swapped in.
    let in_flight = {
        let (client, addr) = (client.clone(), dev.addr);
        tokio::spawn(async move { body(&client, addr, "/slow").await })
    };
    tokio::time::timeout(Duration::from_secs(20), arrived.notified())
        .await
        .expect("the request reached the upstream");
    std::fs::write(dir.path().join("api.yaml"), spec("second", port)).unwrap();
    assert!(
        eventually(async || body(&client, dev.addr, "/hello").await.1 == "second").await,
        "the edit is served; stdout: {}; stderr: {}",
        dev.stdout.lock().unwrap(),
        dev.stderr.lock().unwrap()
    );
    assert!(
        dev.stdout
            .lock()
            .unwrap()
            .contains("reloaded: 2 operations")
    );
    release.notify_one();
    assert_eq!(
        in_flight.await.unwrap(),
        (200, "slow but complete".into()),
        "the request in flight finished on the configuration it started with"
    );

    // A broken edit: its diagnostic (file:line:col) is printed, the second one keeps serving.
    let broken = "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /hello:\n    get:\n      x-barbacane-dispatch: {name: mock, config: {body: [unclosed}\n";
    std::fs::write(dir.path().join("api.yaml"), broken).unwrap();
    assert!(
        eventually(async || dev
            .stderr
            .lock()
            .unwrap()
            .contains("previous configuration keeps serving"))
        .await,
        "stderr: {}",
        dev.stderr.lock().unwrap()
    );
    let stderr = dev.stderr.lock().unwrap().clone();
    assert!(stderr.contains("api.yaml:6:"), "{stderr}");
    for _ in 0..5 {
        assert_eq!(
            body(&client, dev.addr, "/hello").await,
            (200, "second".into())
        );
    }

    // Fixed again: served.
    std::fs::write(dir.path().join("api.yaml"), spec("third", port)).unwrap();
    assert!(
        eventually(async || body(&client, dev.addr, "/hello").await.1 == "third").await,
        "stderr: {}",
        dev.stderr.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_lets_the_plugins_swapped_out_finish_their_work() {
    // The conformance filter `lifecycle` flushes by callout in its root on_done and says
    // proxy_done when the answer comes.
    let flushes = Arc::new(Mutex::new(Vec::new()));
    let seen = flushes.clone();
    let flush = upstream(move |request: http::Request<hyper::body::Incoming>| {
        seen.lock().unwrap().push(request.uri().to_string());
        async { http::Response::new(barbacane::server::full("")) }
    })
    .await;
    let spec = |body: &str| {
        format!(
            "openapi: 3.1.0\ninfo: {{title: t, version: '1'}}\nx-barbacane-upstreams:\n  flush: {{endpoints: ['http://127.0.0.1:{}']}}\nx-barbacane-middlewares:\n  - name: lifecycle\n    config: '{{\"flush_upstream\": \"flush\"}}'\npaths:\n  /hello:\n    get:\n      x-barbacane-dispatch: {{name: mock, config: {{body: '{body}'}}}}\n",
            flush.addr.port()
        )
    };
    let dir = project(&[
        ("api.yaml", &spec("first")),
        (
            "barbacane.yaml",
            "plugins:\n  lifecycle: {source: 'file:lifecycle.wasm'}\n",
        ),
    ]);
    support::write_filter(&dir, "lifecycle.wasm", "lifecycle");
    let dev = start_dev(dir.path(), &["--manifest", "barbacane.yaml"]);
    let client = support::client();
    assert_eq!(
        body(&client, dev.addr, "/hello").await,
        (200, "first".into())
    );
    assert!(flushes.lock().unwrap().is_empty());
    std::fs::write(dir.path().join("api.yaml"), spec("second")).unwrap();
    assert!(
        eventually(async || body(&client, dev.addr, "/hello").await.1 == "second").await,
        "stderr: {}",
        dev.stderr.lock().unwrap()
    );
    // Each of the two workers retires its VM once no request uses it: two flushes.
    assert!(
        eventually(async || flushes.lock().unwrap().len() == 2).await,
        "flushes: {:?}; stderr: {}",
        flushes.lock().unwrap(),
        dev.stderr.lock().unwrap()
    );
    assert!(flushes.lock().unwrap().iter().all(|uri| uri == "/flush"));
}

#[test]
fn dev_needs_specs() {
    let dir = project(&[]);
    let (code, _, stderr) = support::run(dir.path(), &["dev", "--artifact", "api.bca"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--spec"), "{stderr}");
}

/// `init` makes a project that `dev` serves at once, with its plugin, and does not reload while
/// nothing changes; a second `init` in the same place writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_makes_a_project_that_dev_serves_at_once() {
    let parent = project(&[]);
    let (code, stdout, stderr) = support::run(parent.path(), &["init", "my-api"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("barbacane dev --spec"), "{stdout}");
    let dir = parent.path().join("my-api");
    let (code, _, stderr) = support::run(
        &dir,
        &[
            "validate",
            "--spec",
            "api.yaml",
            "--manifest",
            "barbacane.yaml",
        ],
    );
    assert_eq!(code, 0, "{stderr}");

    let dev = start_dev(&dir, &["--manifest", "barbacane.yaml"]);
    let response = support::get(&format!("http://{}/hello?name=ada", dev.addr)).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["message"], "hello from barbacane");
    // The project's plugin (the built-in correlation-id, renamed in barbacane.yaml) ran.
    assert_eq!(response.header("x-request-trace").len(), 36);
    // Its validation is real: a name longer than the schema allows is refused.
    let long = "a".repeat(41);
    let refused = support::get(&format!("http://{}/hello?name={long}", dev.addr)).await;
    refused.problem(400, "validation");
    // Nothing changed: however many polls pass, nothing is reloaded.
    tokio::time::sleep(barbacane::watch::POLL_INTERVAL * 4 + barbacane::watch::SETTLE).await;
    let stdout = dev.stdout.lock().unwrap().clone();
    assert!(!stdout.contains("reloaded"), "{stdout}");
    drop(dev);

    let before = std::fs::read_to_string(dir.join("api.yaml")).unwrap();
    std::fs::write(dir.join("README.md"), "mine").unwrap();
    let (code, _, stderr) = support::run(parent.path(), &["init", "my-api"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("api.yaml")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("README.md")).unwrap(),
        "mine"
    );
}

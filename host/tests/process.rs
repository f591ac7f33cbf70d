//! The real `barbacane` process: `compile` then `serve --artifact`, and graceful shutdown on
//! SIGTERM/SIGINT that lets in-flight requests finish.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{project, run, upstream};

/// Starts `barbacane serve args…` and returns the child and the address it reports.
fn spawn_serve(dir: &std::path::Path, args: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(support::bin())
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child) -> i32 {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the gateway did not exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_artifact_serves_and_sigterm_drains_in_flight_requests() {
    // The upstream says when the request has reached it, so the signal is sent while it is
    // certainly in flight, however slow the machine.
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = arrived.clone();
    let slow = upstream(move |_| {
        let notify = notify.clone();
        async move {
            notify.notify_one();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            http::Response::new(barbacane::server::full("slow but complete"))
        }
    })
    .await;
    let spec = format!(
        "openapi: 3.1.0\ninfo: {{title: t, version: '1'}}\nx-barbacane-upstreams:\n  slow: {{endpoints: ['http://127.0.0.1:{}'], allow_plaintext: true}}\npaths:\n  /slow:\n    get:\n      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: slow}}}}\n  /fast:\n    get:\n      x-barbacane-dispatch: {{name: mock, config: {{body: fast}}}}\n",
        slow.addr.port()
    );
    let dir = project(&[("api.yaml", &spec)]);
    assert_eq!(
        run(
            dir.path(),
            &["compile", "--spec", "api.yaml", "-o", "api.bca"]
        )
        .0,
        0
    );
    let (mut child, addr) = spawn_serve(dir.path(), &["--artifact", "api.bca"]);

    assert_eq!(
        support::get(&format!("http://{addr}/fast"))
            .await
            .body
            .as_ref(),
        b"fast"
    );
    let in_flight = tokio::spawn(async move { support::get(&format!("http://{addr}/slow")).await });
    tokio::time::timeout(Duration::from_secs(20), arrived.notified())
        .await
        .expect("request reached the upstream");
    signal(&child, "TERM");
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.as_ref(), b"slow but complete");
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer accepting"
    );
}

#[test]
fn sigint_stops_an_idle_gateway_served_from_specs() {
    let dir = project(&[(
        "api.yaml",
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      x-barbacane-dispatch: {name: mock}\n",
    )]);
    let (mut child, addr) = spawn_serve(dir.path(), &["--spec", "api.yaml"]);
    assert!(std::net::TcpStream::connect(addr).is_ok());
    signal(&child, "INT");
    assert_eq!(wait_exit(&mut child), 0);
}

#[test]
fn a_busy_address_is_an_io_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = project(&[(
        "api.yaml",
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}\n",
    )]);
    let (code, _, stderr) = run(
        dir.path(),
        &["serve", "--spec", "api.yaml", "--listen", &addr],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

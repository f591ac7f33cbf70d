//! The Proxy-Wasm conformance suite: filters built from source with the upstream `proxy-wasm`
//! crate (`conformance/filters/`) run through the real gateway against real upstreams, and each
//! test checks one family of host functions and callbacks the way Envoy behaves.
//! `conformance/run` runs this file and writes `conformance/REPORT.md` from `conformance/cases.tsv`.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::server::{Config, full};
use http::{Method, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{auth_upstream, chunked_post, echo_spec, echo_upstream, get, raw_header, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A project with `spec` and the given plugins, each `(name, filter crate)`.
fn filter_project(spec: &str, plugins: &[(&str, &str)]) -> tempfile::TempDir {
    let modules: Vec<_> = plugins
        .iter()
        .map(|&(name, filter)| (name, support::conformance_filter(filter)))
        .collect();
    support::plugins_project(spec, &modules)
}

fn callout_chain(upstream: &str, extra: &str) -> String {
    format!(
        "  - name: callout\n    config: '{{\"upstream\": \"{upstream}\", \"path\": \"/check\", \"timeout_ms\": 300{extra}}}'\n"
    )
}

#[tokio::test]
async fn http_callouts_pause_the_request_and_resume_it_from_the_callout_response() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let auth = auth_upstream(seen.clone()).await;
    let echo = echo_upstream().await;
    let upstreams = format!(
        "  auth: {{endpoints: ['http://127.0.0.1:{}'], allow_plaintext: true}}",
        auth.addr.port()
    );
    let dir = filter_project(
        &echo_spec(echo.addr.port(), &upstreams, &callout_chain("auth", "")),
        &[("callout", "callout")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;

    // Allowed: the filter resumes the paused request after adding the callout's answer.
    let allowed = send(
        Method::GET,
        &gw.url("/echo?x=1"),
        &[("authorization", "Bearer good")],
        b"",
    )
    .await;
    assert_eq!(allowed.status, 200);
    let echoed = allowed.json();
    assert_eq!(echoed["headers"]["x-auth-user"], "alice");
    assert_eq!(echoed["headers"]["x-callout-trailers"], "0");
    assert_eq!(allowed.header("x-callout"), "done");
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        "GET /check callout /echo?x=1",
        "the callout carries the plugin's :method, :path, :authority and headers"
    );

    // Denied: a local response from the callout callback; the upstream is never called.
    let before = echo.connections.load(Ordering::SeqCst);
    let denied = get(&gw.url("/echo")).await;
    assert_eq!(
        (denied.status.as_u16(), denied.body.as_ref()),
        (403, b"denied".as_slice())
    );
    assert_eq!(denied.header("x-callout-status"), "401");
    assert_eq!(
        denied.header("x-callout"),
        "done",
        "the local response passes back through the filter"
    );
    assert_eq!(echo.connections.load(Ordering::SeqCst), before);

    // Several paused requests at once are each resumed by their own callout.
    let requests = (0..8).map(|i| {
        let url = gw.url(&format!("/echo?n={i}"));
        async move { send(Method::GET, &url, &[("authorization", "Bearer good")], b"").await }
    });
    for reply in futures_join_all(requests).await {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["headers"]["x-auth-user"], "alice");
    }
}

/// Joins futures without a futures-crate dependency.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn callout_failures_are_reported_as_envoy_reports_them() {
    let slow = support::upstream(|_| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Response::new(full("late"))
    })
    .await;
    let huge =
        support::upstream(|_| async { Response::new(full(vec![b'x'; (1 << 20) + 1])) }).await;
    let echo = echo_upstream().await;
    let upstreams = format!(
        "  slow: {{endpoints: ['http://127.0.0.1:{}'], allow_plaintext: true}}\n  huge: {{endpoints: ['http://127.0.0.1:{}'], allow_plaintext: true}}",
        slow.addr.port(),
        huge.addr.port()
    );
    for (upstream, status, header, value, body) in [
        // Unknown upstream: proxy_http_call answers BAD_ARGUMENT to the plugin.
        ("nowhere", 500, "x-callout-error", "dispatch", "BadArgument"),
        // Timeout: Envoy's async client answers 504 itself; the plugin sees that status.
        ("slow", 403, "x-callout-status", "504", "denied"),
        // A response over the buffer limit resets the call: no headers, status 11 "reset".
        ("huge", 502, "x-callout-failed", "11", "reset"),
    ] {
        let dir = filter_project(
            &echo_spec(echo.addr.port(), &upstreams, &callout_chain(upstream, "")),
            &[("callout", "callout")],
        );
        let gw = support::gateway_in(dir, Config::default()).await;
        let reply = get(&gw.url("/echo")).await;
        assert_eq!(
            (
                reply.status.as_u16(),
                reply.header(header),
                reply.body.as_ref()
            ),
            (status, value, body.as_bytes()),
            "callout to {upstream}"
        );
    }
}

#[tokio::test]
async fn close_stream_resets_the_client_stream() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let auth = auth_upstream(seen).await;
    let echo = echo_upstream().await;
    let upstreams = format!(
        "  auth: {{endpoints: ['http://127.0.0.1:{}'], allow_plaintext: true}}",
        auth.addr.port()
    );
    let dir = filter_project(
        &echo_spec(
            echo.addr.port(),
            &upstreams,
            &callout_chain("auth", ", \"on_deny\": \"close\""),
        ),
        &[("callout", "callout")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let addr = gw.addr;
    let raw = tokio::task::spawn_blocking(move || {
        support::raw(addr, b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    })
    .await
    .unwrap();
    assert_eq!(raw, "", "no response at all: the connection was closed");
    // The gateway keeps serving.
    let ok = send(
        Method::GET,
        &gw.url("/echo"),
        &[("authorization", "Bearer good")],
        b"",
    )
    .await;
    assert_eq!(ok.status, 200);
}

/// A content checker for callouts: 403 when the body it is sent contains `deny`, else 200.
/// Records each body it saw.
async fn body_check_upstream(seen: Arc<std::sync::Mutex<Vec<String>>>) -> support::Upstream {
    support::upstream(move |request: http::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body).into_owned();
            let mut response = Response::new(full(""));
            if body.contains("deny") {
                *response.status_mut() = http::StatusCode::FORBIDDEN;
            }
            seen.lock().unwrap().push(body);
            response
        }
    })
    .await
}

/// A spec whose chain is the `callout` filter checking `check` (`request_body`,
/// `response_headers` or `response_body`) with upstream `check` on `check_port`, its entry
/// followed by `entry` (YAML lines), in front of upstream `echo_port`.
fn check_project(echo_port: u16, check_port: u16, check: &str, entry: &str) -> tempfile::TempDir {
    let upstreams =
        format!("  check: {{endpoints: ['http://127.0.0.1:{check_port}'], allow_plaintext: true}}");
    let chain = callout_chain("check", &format!(", \"check\": \"{check}\"")) + entry;
    filter_project(
        &echo_spec(echo_port, &upstreams, &chain),
        &[("callout", "callout")],
    )
}

/// A raw HTTP/1.1 exchange, read as it arrives (`got`).
struct RawReply {
    conn: tokio::net::TcpStream,
    got: Vec<u8>,
}

impl RawReply {
    /// Connects to `addr` and writes `request`.
    async fn send(addr: std::net::SocketAddr, request: &[u8]) -> RawReply {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(request).await.unwrap();
        RawReply {
            conn,
            got: Vec::new(),
        }
    }

    /// Writes more of the request.
    async fn write(&mut self, more: &[u8]) {
        self.conn.write_all(more).await.unwrap();
    }

    /// Reads until what arrived holds `needle` (true), the peer closes or 10 s pass; with the
    /// text so far.
    async fn until(&mut self, needle: &[u8]) -> (bool, String) {
        let holds = |got: &[u8]| got.windows(needle.len()).any(|w| w == needle);
        let read = async {
            while !holds(&self.got) {
                let mut buf = [0; 4096];
                match self.conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.got.extend_from_slice(&buf[..n]),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
        (
            holds(&self.got),
            String::from_utf8_lossy(&self.got).into_owned(),
        )
    }

    /// Whether the gateway closes the connection within 10 s (what it sends first is kept).
    async fn closes(&mut self) -> bool {
        let read = async {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = self.conn.read(&mut buf).await {
                self.got.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .is_ok()
    }
}

/// An upstream that answers at once, its body the request body as it comes.
async fn streaming_echo() -> support::Upstream {
    support::upstream(|request: http::Request<hyper::body::Incoming>| async move {
        let body = request
            .into_body()
            .map_err(barbacane::server::BoxError::from);
        Response::new(body.boxed_unsync())
    })
    .await
}

#[tokio::test]
async fn a_body_chunk_a_filter_paused_on_goes_on_as_soon_as_the_filter_resumes_the_stream() {
    // The upstream sends the chunks of its body (by the query: `aaa bbbb`, `deny bbbb`, `aaa
    // deny bbbb` or `aaa`), each after the first (with `late`, the first too), and the end, only
    // once the test releases it.
    let releases: Arc<[tokio::sync::Notify; 4]> = Arc::default();
    let streaming = support::upstream({
        let releases = releases.clone();
        move |request| {
            let (scenario, chunks): (usize, &'static [&'static [u8]]) = match request.uri().query()
            {
                Some("deny") => (1, &[b"deny", b"bbbb"]),
                Some("late-deny") => (2, &[b"aaa", b"deny", b"bbbb"]),
                Some("late") => (3, &[b"aaa"]),
                _ => (0, &[b"aaa", b"bbbb"]),
            };
            let releases = releases.clone();
            async move {
                let frames = futures_util::stream::unfold(0, move |sent| {
                    let releases = releases.clone();
                    async move {
                        if sent > 0 || scenario == 3 {
                            releases[scenario].notified().await;
                        }
                        let chunk = chunks.get(sent)?;
                        let frame = http_body::Frame::data(bytes::Bytes::from_static(chunk));
                        Some((Ok::<_, barbacane::server::BoxError>(frame), sent + 1))
                    }
                });
                Response::new(barbacane::server::Body::new(
                    http_body_util::StreamBody::new(frames),
                ))
            }
        }
    })
    .await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let check = body_check_upstream(seen.clone()).await;
    let dir = check_project(
        streaming.addr.port(),
        check.addr.port(),
        "response_body",
        "",
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let request = |query: &str| {
        format!("GET /echo?{query} HTTP/1.1\r\nHost: t\r\nconnection: close\r\n\r\n").into_bytes()
    };

    // The filter pauses on `aaa` for its callout; the callout's 200 resumes the response, and
    // `aaa` (with the head) reaches the client while the upstream still holds `bbbb` back.
    let mut reply = RawReply::send(gw.addr, &request("")).await;
    let (first, text) = reply.until(b"3\r\naaa\r\n").await;
    assert!(first, "the resumed chunk came before the next one: {text}");
    assert_eq!(support::raw_status(&text), 200, "{text}");
    releases[0].notify_one();
    let (second, text) = reply.until(b"4\r\nbbbb\r\n").await;
    assert!(second, "so did the next one, before the body's end: {text}");
    releases[0].notify_one();
    assert!(reply.until(b"0\r\n\r\n").await.0);
    assert_eq!(
        *seen.lock().unwrap(),
        ["aaa", "bbbb"],
        "each chunk was checked on its own"
    );

    // A local response from the callout's answer, before the head went, replaces the response
    // at once, not when the upstream's next chunk comes.
    let (denied, text) = RawReply::send(gw.addr, &request("deny"))
        .await
        .until(b"denied")
        .await;
    assert!(denied, "{text}");
    assert_eq!(support::raw_status(&text), 403, "{text}");
    assert_eq!(raw_header(&text, "x-callout-status"), "403", "{text}");

    // After the head went, a local response can only reset the stream: at once as well.
    let mut reply = RawReply::send(gw.addr, &request("late-deny")).await;
    assert!(reply.until(b"3\r\naaa\r\n").await.0);
    releases[2].notify_one();
    let (ended, text) = reply.until(b"never sent").await;
    assert!(!ended);
    assert!(
        !text.contains("deny") && !text.ends_with("0\r\n\r\n"),
        "the stream was reset with no more of the body: {text}"
    );
    assert!(reply.closes().await, "the connection was closed");

    // A filter allowed to stop iteration on the response headers (they then wait for the body)
    // that resumes them from its callout's answer lets them go at once, before any body comes.
    let stop_iteration = "    allow_on_headers_stop_iteration: true\n";
    let dir = check_project(
        streaming.addr.port(),
        check.addr.port(),
        "response_headers",
        stop_iteration,
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let mut reply = RawReply::send(gw.addr, &request("late")).await;
    let (head, text) = reply.until(b"\r\n\r\n").await;
    assert!(head, "the head came before the body: {text}");
    assert_eq!(support::raw_status(&text), 200, "{text}");
    assert_eq!(raw_header(&text, "x-callout"), "done", "{text}");
    releases[3].notify_one();
    assert!(reply.until(b"3\r\naaa\r\n").await.0);
    releases[3].notify_one();
    assert!(reply.until(b"0\r\n\r\n").await.0);
}

#[tokio::test]
async fn a_local_response_from_a_filter_paused_on_a_request_body_chunk_answers_at_once() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let check = body_check_upstream(seen.clone()).await;
    let echo = echo_upstream().await;
    let dir = check_project(echo.addr.port(), check.addr.port(), "request_body", "");
    let gw = support::gateway_in(dir, Config::default()).await;

    // Allowed: each chunk is checked, then the request goes on, body whole.
    let ok = send(Method::POST, &gw.url("/echo"), &[], b"hello").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["body"], "hello");
    assert_eq!(*seen.lock().unwrap(), ["hello"]);

    // Denied: the filter's 403 comes while the client has not finished sending the body.
    let before = echo.connections.load(Ordering::SeqCst);
    let unfinished =
        b"POST /echo HTTP/1.1\r\nHost: t\r\ntransfer-encoding: chunked\r\n\r\n4\r\ndeny\r\n";
    let (denied, text) = RawReply::send(gw.addr, unfinished)
        .await
        .until(b"denied")
        .await;
    assert!(denied, "{text}");
    assert_eq!(support::raw_status(&text), 403, "{text}");
    assert_eq!(echo.connections.load(Ordering::SeqCst), before);
}

/// An upstream that records a request as it arrives: its `x-body-*` headers (`name: value`, by
/// name), each chunk of its body, then `end` (or `aborted` when the request was abandoned); it
/// answers `done` once the body is over.
async fn recording_upstream(log: Arc<std::sync::Mutex<Vec<String>>>) -> support::Upstream {
    support::upstream(move |request: http::Request<hyper::body::Incoming>| {
        let log = log.clone();
        async move {
            let mut heads: Vec<String> = request
                .headers()
                .iter()
                .filter(|(name, _)| name.as_str().starts_with("x-body-"))
                .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("")))
                .collect();
            heads.sort();
            log.lock().unwrap().extend(heads);
            let mut body = request.into_body();
            loop {
                let entry = match body.frame().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => String::from_utf8_lossy(&data).into_owned(),
                        Err(_) => continue,
                    },
                    Some(Err(_)) => "aborted".to_owned(),
                    None => "end".to_owned(),
                };
                let over = entry == "end" || entry == "aborted";
                log.lock().unwrap().push(entry);
                if over {
                    break;
                }
            }
            Response::new(full("done"))
        }
    })
    .await
}

/// Waits (10 s at most) until `log` holds `entry`.
async fn logged(log: &std::sync::Mutex<Vec<String>>, entry: &str) -> bool {
    for _ in 0..200 {
        if log.lock().unwrap().iter().any(|e| e == entry) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The head of a chunked POST to `/echo`, whose body the test writes as it goes.
const CHUNKED_POST: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\ntransfer-encoding: chunked\r\n\r\n";

#[tokio::test]
async fn a_request_body_streams_through_the_filters_to_the_upstream_and_a_later_chunk_can_still_be_refused()
 {
    // The `callout` filter pauses on each request body chunk and resumes it from its checker's
    // answer; once the first chunk has passed, the request goes on, and so does each later chunk.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let check = body_check_upstream(seen.clone()).await;
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let upstream = recording_upstream(log.clone()).await;
    let dir = check_project(upstream.addr.port(), check.addr.port(), "request_body", "");
    let gw = support::gateway_in(dir, Config::default()).await;

    let mut reply = RawReply::send(gw.addr, &[CHUNKED_POST, b"3\r\naaa\r\n"].concat()).await;
    assert!(
        logged(&log, "aaa").await,
        "the first chunk reached the upstream before the client sent the rest: {log:?}"
    );
    // (The end waits for `bbbb` to pass: sent while the filter kept it, it would see it again.)
    reply.write(b"4\r\nbbbb\r\n").await;
    assert!(logged(&log, "bbbb").await, "{log:?}");
    reply.write(b"0\r\n\r\n").await;
    let (done, text) = reply.until(b"done").await;
    assert!(done, "{text}");
    assert_eq!(support::raw_status(&text), 200, "{text}");
    assert_eq!(*log.lock().unwrap(), ["aaa", "bbbb", "end"]);
    assert_eq!(*seen.lock().unwrap(), ["aaa", "bbbb"]);

    // A later chunk refused: the filter's 403 reaches the client, and the upstream request is
    // abandoned: the upstream gets neither that chunk nor an end.
    log.lock().unwrap().clear();
    let mut reply = RawReply::send(gw.addr, &[CHUNKED_POST, b"3\r\naaa\r\n"].concat()).await;
    assert!(logged(&log, "aaa").await, "{log:?}");
    reply.write(b"4\r\ndeny\r\n").await;
    let (denied, text) = reply.until(b"denied").await;
    assert!(denied, "{text}");
    assert_eq!(support::raw_status(&text), 403, "{text}");
    assert!(logged(&log, "aborted").await, "{log:?}");
    assert_eq!(*log.lock().unwrap(), ["aaa", "aborted"]);
}

/// A gateway with `limits` whose chain is the `body` filter appending `!` to each request body
/// chunk and letting it through, in front of a [`recording_upstream`] writing to the log given.
async fn appending_gateway(
    limits: barbacane::server::Limits,
) -> (support::TestGateway, Arc<std::sync::Mutex<Vec<String>>>) {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let upstream = recording_upstream(log.clone()).await;
    let chain = "  - name: body\n    config: '{\"request\": \"append\", \"value\": \"!\", \"pause\": false}'\n";
    let dir = filter_project(
        &echo_spec(upstream.addr.port(), "", chain),
        &[("body", "body")],
    );
    let config = Config {
        limits,
        ..Config::default()
    };
    (support::gateway_in(dir, config).await, log)
}

#[tokio::test]
async fn a_streamed_request_body_is_rewritten_chunk_by_chunk_and_past_the_size_limit_answers_413() {
    let (gw, log) = appending_gateway(barbacane::server::Limits {
        max_body_bytes: 8,
        ..Default::default()
    })
    .await;
    let mut reply = RawReply::send(gw.addr, &[CHUNKED_POST, b"3\r\naaa\r\n"].concat()).await;
    assert!(logged(&log, "aaa!").await, "{log:?}");
    // 9 bytes in all: past the limit while the upstream request is under way.
    reply.write(b"6\r\nbbbbbb\r\n").await;
    let (refused, text) = reply.until(b"exceeds 8 bytes").await;
    assert!(refused, "{text}");
    assert_eq!(support::raw_status(&text), 413, "{text}");
    assert!(logged(&log, "aborted").await, "{log:?}");
    assert_eq!(*log.lock().unwrap(), ["aaa!", "aborted"]);
}

#[tokio::test]
async fn a_client_that_stops_sending_a_body_streaming_through_the_filters_gets_408() {
    let (gw, log) = appending_gateway(barbacane::server::Limits {
        body_read_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let mut reply = RawReply::send(gw.addr, &[CHUNKED_POST, b"3\r\naaa\r\n"].concat()).await;
    // The first chunk went on; the client then sends nothing more.
    let (refused, text) = reply.until(b"no request body for 300ms").await;
    assert!(refused, "{text}");
    assert_eq!(support::raw_status(&text), 408, "{text}");
    assert!(logged(&log, "aborted").await, "{log:?}");
    assert_eq!(*log.lock().unwrap(), ["aaa!", "aborted"]);
}

#[tokio::test]
async fn a_request_body_and_its_response_body_stream_through_the_filters_at_once() {
    // The upstream answers at once with the request body as its response body, chunk by chunk
    // as it arrives: the client gets each chunk back before it sends the next.
    let echo = streaming_echo().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let check = body_check_upstream(seen.clone()).await;
    let dir = check_project(echo.addr.port(), check.addr.port(), "request_body", "");
    let gw = support::gateway_in(dir, Config::default()).await;

    let mut reply = RawReply::send(gw.addr, &[CHUNKED_POST, b"3\r\naaa\r\n"].concat()).await;
    let (first, text) = reply.until(b"3\r\naaa\r\n").await;
    assert!(first, "{text}");
    assert_eq!(support::raw_status(&text), 200, "{text}");
    reply.write(b"4\r\nbbbb\r\n").await;
    let (second, text) = reply.until(b"4\r\nbbbb\r\n").await;
    assert!(second, "{text}");
    reply.write(b"0\r\n\r\n").await;
    let (ended, text) = reply.until(b"0\r\n\r\n").await;
    assert!(ended, "{text}");
    assert_eq!(*seen.lock().unwrap(), ["aaa", "bbbb"]);

    // A chunk refused after the response went on to the client: as in Envoy, the stream is
    // reset (the exchange with the upstream is abandoned); the client gets no more of the body.
    let mut reply = RawReply::send(gw.addr, &[CHUNKED_POST, b"3\r\naaa\r\n"].concat()).await;
    assert!(reply.until(b"3\r\naaa\r\n").await.0);
    reply.write(b"4\r\ndeny\r\n").await;
    let (more, text) = reply.until(b"deny").await;
    assert!(!more, "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "{text}");
    assert!(reply.closes().await, "the connection was closed");
}

/// A gateway whose `callout` filter checks request body chunks and response headers with a
/// checker that notes each request body chunk (a POST) and lets it through (but never answers
/// `bbbb`), and notes the response headers' check (a GET) and refuses it, once `release` is
/// notified when there is one; in front of [`streaming_echo`]. With what the checker noted.
async fn refusing_both_gateway(
    release: Option<Arc<tokio::sync::Notify>>,
) -> (support::TestGateway, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let check = support::upstream({
        let seen = seen.clone();
        move |request: http::Request<hyper::body::Incoming>| {
            let (seen, release) = (seen.clone(), release.clone());
            async move {
                let mut response = Response::new(full(""));
                if request.method() == Method::GET {
                    seen.lock().unwrap().push(String::from("GET"));
                    if let Some(release) = release {
                        release.notified().await;
                    }
                    *response.status_mut() = http::StatusCode::FORBIDDEN;
                } else {
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let hold = body == "bbbb";
                    seen.lock().unwrap().push(body);
                    if hold {
                        std::future::pending::<()>().await;
                    }
                }
                response
            }
        }
    })
    .await;
    let echo = streaming_echo().await;
    let check_entry = "request_body_and_response_headers";
    let dir = check_project(echo.addr.port(), check.addr.port(), check_entry, "");
    (support::gateway_in(dir, Config::default()).await, seen)
}

#[tokio::test]
async fn a_local_response_from_the_response_phase_ends_a_request_body_still_streaming() {
    // The checker lets `aaa` through and refuses the response headers' check at once: the
    // filter answers 403 in the upstream's place while the client is still sending its body.
    let (gw, seen) = refusing_both_gateway(None).await;
    let mut reply = RawReply::send(gw.addr, &[CHUNKED_POST, b"3\r\naaa\r\n"].concat()).await;
    let (denied, text) = reply.until(b"denied").await;
    assert!(denied, "{text}");
    assert_eq!(support::raw_status(&text), 403, "{text}");
    // As in Envoy, the stream is over: the body is no longer read (the connection closes) and
    // the filter gets no more of it.
    assert!(reply.closes().await, "the connection was closed");
    let _ = reply.conn.write_all(b"4\r\nbbbb\r\n").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*seen.lock().unwrap(), ["aaa", "GET"]);
}

#[tokio::test]
async fn a_local_response_while_the_filter_waits_on_both_directions_ends_the_stream() {
    // The filter waits on the response headers' check and on a request body chunk's (`bbbb`,
    // never answered); the refusal of the first is a local response, which one direction's
    // waiter takes: either way the client gets it and the stream is over.
    let release = Arc::new(tokio::sync::Notify::new());
    let (gw, seen) = refusing_both_gateway(Some(release.clone())).await;
    let mut reply = RawReply::send(gw.addr, &[CHUNKED_POST, b"3\r\naaa\r\n"].concat()).await;
    assert!(logged(&seen, "GET").await, "{seen:?}");
    reply.write(b"4\r\nbbbb\r\n").await;
    assert!(logged(&seen, "bbbb").await, "{seen:?}");
    release.notify_one();
    let (denied, text) = reply.until(b"denied").await;
    assert!(denied, "{text}");
    assert_eq!(support::raw_status(&text), 403, "{text}");
    assert!(reply.closes().await, "the connection was closed");
}

#[tokio::test]
async fn a_filter_waiting_on_a_request_body_chunk_and_on_the_response_headers_at_once_gets_each_resume()
 {
    // The checker answers each request body chunk (a POST) at once; the response headers'
    // check (a GET) it notes, then holds until the test releases it.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let release = Arc::new(tokio::sync::Notify::new());
    let check = support::upstream({
        let (seen, release) = (seen.clone(), release.clone());
        move |request: http::Request<hyper::body::Incoming>| {
            let (seen, release) = (seen.clone(), release.clone());
            async move {
                if request.method() == Method::GET {
                    seen.lock().unwrap().push(String::from("GET"));
                    release.notified().await;
                } else {
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).into_owned());
                }
                Response::new(full(""))
            }
        }
    })
    .await;
    // The upstream answers at once, echoing the request body as it comes, and notes each chunk.
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let echo = support::upstream({
        let log = log.clone();
        move |request: http::Request<hyper::body::Incoming>| {
            let log = log.clone();
            async move {
                let body = request.into_body().map_frame(move |frame| {
                    if let Some(data) = frame.data_ref() {
                        log.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(data).into_owned());
                    }
                    frame
                });
                Response::new(
                    body.map_err(barbacane::server::BoxError::from)
                        .boxed_unsync(),
                )
            }
        }
    })
    .await;
    let check_entry = "request_body_and_response_headers";
    let dir = check_project(echo.addr.port(), check.addr.port(), check_entry, "");
    let gw = support::gateway_in(dir, Config::default()).await;

    // `aaa` is checked and goes on; the upstream answers at once, and the filter waits on the
    // response headers' check.
    let mut reply = RawReply::send(gw.addr, &[CHUNKED_POST, b"3\r\naaa\r\n"].concat()).await;
    assert!(logged(&seen, "GET").await, "{seen:?}");
    // Meanwhile it waits on `bbbb`'s check too: that answer resumes the request, not the
    // response, and `bbbb` reaches the upstream while the response headers still wait.
    reply.write(b"4\r\nbbbb\r\n").await;
    assert!(logged(&log, "bbbb").await, "{log:?}");
    assert_eq!(*seen.lock().unwrap(), ["aaa", "GET", "bbbb"]);
    // Released, the response goes on, with the echoed body.
    release.notify_one();
    let (echoed, text) = reply.until(b"4\r\nbbbb\r\n").await;
    assert!(echoed, "{text}");
    assert_eq!(support::raw_status(&text), 200, "{text}");
    assert_eq!(raw_header(&text, "x-callout"), "done", "{text}");
    reply.write(b"0\r\n\r\n").await;
    assert!(reply.until(b"0\r\n\r\n").await.0);
}

fn body_chain(request: &str, response: &str, value: &str) -> String {
    format!(
        "  - name: body\n    config: '{{\"request\": \"{request}\", \"response\": \"{response}\", \"value\": \"{value}\"}}'\n"
    )
}

/// The echo upstream's JSON document in a raw response (from its first `{` to its last `}`),
/// and what follows it.
fn echoed(raw: &str) -> (serde_json::Value, &str) {
    let body = raw.split("\r\n\r\n").nth(1).unwrap();
    let json_end = body.rfind('}').unwrap();
    let doc = serde_json::from_str(&body[body.find('{').unwrap()..=json_end]).unwrap();
    (doc, &body[json_end + 1..])
}

#[tokio::test]
async fn bodies_arrive_chunk_by_chunk_and_pause_buffers_the_cumulative_body() {
    let echo = echo_upstream().await;
    for (mode, expected) in [
        ("append", "hello world!"),
        ("prepend", "!hello world"),
        ("replace", "!"),
    ] {
        let dir = filter_project(
            &echo_spec(echo.addr.port(), "", &body_chain(mode, "append", "!")),
            &[("body", "body")],
        );
        let gw = support::gateway_in(dir, Config::default()).await;
        let raw = chunked_post(gw.addr, "/echo", &[b"hello", b" world"]).await;
        assert_eq!(support::raw_status(&raw), 200, "{raw}");
        assert_eq!(
            raw_header(&raw, "x-request-body-calls"),
            "5:false,11:false,11:true",
            "each chunk is delivered; while the filter pauses, the size is cumulative"
        );
        let (doc, after) = echoed(&raw);
        assert_eq!(doc["body"], expected, "request body {mode}");
        assert!(
            after.starts_with('!'),
            "the response body was appended to: {raw:?}"
        );
    }
}

/// Envoy's `allow_on_headers_stop_iteration`: the `body` filter (`hold`) pauses on the headers
/// of a request with a body and decides on the body. Allowed, it gets the body while the headers
/// wait, edits them from it, and they go on to the next filter and the upstream after it; a body
/// it refuses never reaches the upstream. By default (as in Envoy) the pause stops the body too,
/// so that filter waits for a body that never comes.
#[tokio::test]
async fn a_filter_allowed_to_stop_iteration_on_headers_gets_the_body_before_they_go_on() {
    let echo = echo_upstream().await;
    let chain = |allow: bool| {
        format!(
            "  - name: body\n    config: '{{\"hold\": \"end\"}}'\n    allow_on_headers_stop_iteration: {allow}\n  - name: headers\n    config: 'x-after: 1'\n"
        )
    };
    let plugins = [("body", "body"), ("headers", "headers")];
    let dir = filter_project(&echo_spec(echo.addr.port(), "", &chain(true)), &plugins);
    let gw = support::gateway_in(dir, Config::default()).await;
    let raw = chunked_post(gw.addr, "/echo", &[b"please ", b"deny"]).await;
    assert_eq!(support::raw_status(&raw), 403, "{raw}");
    assert!(raw.ends_with("denied by its body"), "{raw}");
    assert_eq!(
        echo.connections.load(Ordering::SeqCst),
        0,
        "a refused body does not reach the upstream"
    );
    let raw = chunked_post(gw.addr, "/echo", &[b"hello", b" world"]).await;
    assert_eq!(support::raw_status(&raw), 200, "{raw}");
    assert_eq!(
        raw_header(&raw, "x-request-body-calls"),
        "5:false,11:false,11:true",
        "the filter got each chunk (the last one empty) while its headers waited"
    );
    let (doc, _) = echoed(&raw);
    assert_eq!(doc["body"], "hello world");
    assert_eq!(
        doc["headers"]["x-body-seen"], "11",
        "the header set from the body went upstream"
    );
    assert_eq!(
        doc["headers"]["x-after"], "1",
        "the next filter got the headers"
    );
    let bodyless = get(&gw.url("/echo")).await;
    assert_eq!(bodyless.status, 200, "a request without a body is not held");

    let dir = filter_project(&echo_spec(echo.addr.port(), "", &chain(false)), &plugins);
    let gw = support::gateway_in(dir, Config::default()).await;
    let held = tokio::time::timeout(
        Duration::from_secs(1),
        chunked_post(gw.addr, "/echo", &[b"hello"]),
    )
    .await;
    assert!(
        held.is_err(),
        "without the option the body waits with the headers: {held:?}"
    );
}

/// `allow_on_headers_stop_iteration` on requests, as in Envoy: the headers go on with the first
/// chunk the filter lets through, and the rest of the body streams after them.
#[tokio::test]
async fn a_filter_allowed_to_stop_iteration_on_request_headers_lets_them_go_with_the_first_chunk_it_lets_through()
 {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let upstream = recording_upstream(log.clone()).await;
    let entry = |hold: &str| {
        format!(
            "  - name: body\n    config: '{{\"hold\": \"{hold}\"}}'\n    allow_on_headers_stop_iteration: true\n"
        )
    };
    let project = |chain: &str| {
        filter_project(
            &echo_spec(upstream.addr.port(), "", chain),
            &[("body", "body")],
        )
    };
    // `hold: first` sets `x-body-first` from the first chunk and lets it through: the upstream
    // gets the headers, with it, and that chunk before the client sends the rest.
    let gw = support::gateway_in(project(&entry("first")), Config::default()).await;
    let mut reply = RawReply::send(gw.addr, &[CHUNKED_POST, b"5\r\nhello\r\n"].concat()).await;
    assert!(logged(&log, "hello").await, "{log:?}");
    assert_eq!(*log.lock().unwrap(), ["x-body-first: 5", "hello"]);
    reply.write(b"6\r\n world\r\n0\r\n\r\n").await;
    let (done, text) = reply.until(b"done").await;
    assert!(done, "{text}");
    assert_eq!(support::raw_status(&text), 200, "{text}");
    assert_eq!(
        *log.lock().unwrap(),
        ["x-body-first: 5", "hello", " world", "end"]
    );

    // Two such filters hold the headers in turn: the second (`hold: end`) gets the chunk the
    // first let through, then the rest of the body, and lets the headers go at its end.
    log.lock().unwrap().clear();
    let chain = entry("first") + &entry("end");
    let gw = support::gateway_in(project(&chain), Config::default()).await;
    let raw = chunked_post(gw.addr, "/echo", &[b"hello", b" world"]).await;
    assert_eq!(support::raw_status(&raw), 200, "{raw}");
    assert_eq!(
        *log.lock().unwrap(),
        ["x-body-first: 5", "x-body-seen: 11", "hello world", "end"]
    );
}

/// `allow_on_headers_stop_iteration` on responses: the `body` filter, last in the chain and so
/// first on the response, holds the response headers for the body. With `hold: first` it sets a
/// header from the first chunk and lets it through: the headers go on to the filter before it
/// in the chain, then the chunk, then the rest of a body that is still streaming. With `hold:
/// end` on a body that ends with trailers (so no body call has the end), the trailers release
/// the headers. Two such filters each hold them in turn.
#[tokio::test]
async fn a_filter_allowed_to_stop_iteration_on_response_headers_gets_the_body_before_they_go_on() {
    let streaming = support::upstream(|_| async {
        let frames = futures_util::stream::unfold(0, |sent| async move {
            const CHUNKS: [&[u8]; 2] = [b"aaa", b"bbbb"];
            let chunk = CHUNKS.get(sent)?;
            // Apart in time, so that the gateway reads them as separate frames.
            tokio::time::sleep(Duration::from_millis(30)).await;
            let frame = http_body::Frame::data(bytes::Bytes::from_static(chunk));
            Some((Ok::<_, barbacane::server::BoxError>(frame), sent + 1))
        });
        Response::new(barbacane::server::Body::new(
            http_body_util::StreamBody::new(frames),
        ))
    })
    .await;
    // The `headers` filter, then a `body` filter holding the headers for each of `holds`.
    let chain = |holds: &[&str]| {
        let mut chain = String::from("  - name: headers\n    config: 'x-before: 1'\n");
        for hold in holds {
            chain += &format!(
                "  - name: body\n    config: '{{\"hold\": \"{hold}\"}}'\n    allow_on_headers_stop_iteration: true\n"
            );
        }
        chain
    };
    let plugins = [("body", "body"), ("headers", "headers")];
    let dir = filter_project(
        &echo_spec(streaming.addr.port(), "", &chain(&["first"])),
        &plugins,
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let reply = get(&gw.url("/echo")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("x-body-first"),
        "3",
        "the header set from the first chunk was sent"
    );
    assert_eq!(
        reply.header("x-conformance"),
        "headers",
        "the filter before it got the headers"
    );
    assert_eq!(reply.body, b"aaabbbb".as_slice(), "the rest streamed on");

    // The last filter releases the headers on the first chunk; the one before it then holds
    // them, gets that chunk, and lets them go at the end of the body.
    let dir = filter_project(
        &echo_spec(streaming.addr.port(), "", &chain(&["end", "first"])),
        &plugins,
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let reply = get(&gw.url("/echo")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-body-first"), "3");
    assert_eq!(
        reply.header("x-body-seen"),
        "7",
        "the second holder had the whole body"
    );
    assert_eq!(reply.header("x-conformance"), "headers");
    assert_eq!(reply.body, b"aaabbbb".as_slice());

    let trailing = support::trailers_upstream().await;
    for holds in [&["end"][..], &["end", "end"]] {
        let dir = filter_project(&echo_spec(trailing.port(), "", &chain(holds)), &plugins);
        let gw = support::gateway_in(dir, Config::default()).await;
        let raw = support::raw_exchange(
            gw.addr,
            b"GET /echo?trailers HTTP/1.1\r\nHost: t\r\nte: trailers\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(support::raw_status(&raw), 200, "{holds:?}: {raw}");
        assert_eq!(raw_header(&raw, "x-conformance"), "headers", "{raw}");
        assert_eq!(
            raw_header(&raw, "x-body-seen"),
            "",
            "no body call had the end: {raw}"
        );
        assert!(
            raw.contains("\r\nok\r\n"),
            "the body the filters held: {raw}"
        );
        assert_eq!(raw_header(&raw, "x-upstream-trailer"), "t", "{raw}");
    }
}

#[tokio::test]
async fn a_fixed_length_body_ends_on_its_last_chunk_and_bodyless_requests_skip_body_callbacks() {
    let echo = echo_upstream().await;
    let dir = filter_project(
        &echo_spec(echo.addr.port(), "", &body_chain("append", "none", "?")),
        &[("body", "body")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let reply = send(
        Method::POST,
        &gw.url("/echo"),
        &[("content-type", "text/plain")],
        b"abc",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-body-calls"), "3:true");
    assert_eq!(reply.json()["body"], "abc?");
    assert_eq!(
        reply.json()["headers"]["content-length"],
        "4",
        "the forwarded body is framed with its new length"
    );
    let bodyless = get(&gw.url("/echo")).await;
    assert_eq!(bodyless.header("x-request-body-calls"), "");
}

#[tokio::test]
async fn buffering_past_the_body_limit_answers_413_for_requests_and_500_for_responses() {
    // Streams 4 KiB in 1 KiB chunks, so a filter that pauses buffers past the 1 KiB limit.
    let big = support::upstream(|_| async {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        for _ in 0..4 {
            tx.send(bytes::Bytes::from(vec![b'y'; 1024])).await.unwrap();
        }
        Response::new(ChannelBody(rx).boxed_unsync())
    })
    .await;
    let config = || Config {
        limits: barbacane::server::Limits {
            max_body_bytes: 1024,
            ..Default::default()
        },
        ..Config::default()
    };
    let dir = filter_project(
        &echo_spec(big.addr.port(), "", &body_chain("append", "none", "!")),
        &[("body", "body")],
    );
    let gw = support::gateway_in(dir, config()).await;
    let raw = chunked_post(gw.addr, "/echo", &[&[b'a'; 700], &[b'b'; 700]]).await;
    assert_eq!(support::raw_status(&raw), 413, "{raw}");

    let dir = filter_project(
        &echo_spec(big.addr.port(), "", &body_chain("none", "append", "!")),
        &[("body", "body")],
    );
    let gw = support::gateway_in(dir, config()).await;
    let reply = get(&gw.url("/echo")).await;
    let doc = reply.problem(500, "plugin-failed");
    assert!(
        doc["detail"].as_str().unwrap().contains("response body"),
        "{doc}"
    );
}

#[tokio::test]
async fn an_upstream_stalling_before_a_response_body_a_filter_waits_for_answers_504() {
    // The head comes, then nothing: the body never starts (nor ends).
    let stalling = support::upstream(|_| async {
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1);
        tokio::spawn(async move { tx.closed().await });
        Response::new(ChannelBody(rx).boxed_unsync())
    })
    .await;
    let spec = echo_spec(stalling.addr.port(), "", &body_chain("none", "append", "!")).replace(
        "config: {upstream: echo}",
        "config: {upstream: echo, timeout: 300ms}",
    );
    let dir = filter_project(&spec, &[("body", "body")]);
    let gw = support::gateway_in(dir, Config::default()).await;
    // The head waits for the first chunk to pass the filter: the client gets a 504 instead.
    let doc = get(&gw.url("/echo")).await.problem(504, "gateway-timeout");
    assert!(
        doc["detail"].as_str().unwrap().contains("for 300ms"),
        "{doc}"
    );
}

#[tokio::test]
async fn ticks_shared_data_queues_and_metrics_work_across_callbacks() {
    let echo = echo_upstream().await;
    let dir = filter_project(
        &echo_spec(
            echo.addr.port(),
            "",
            "  - name: state\n    config: '{\"tick_ms\": 20, \"queue\": \"events\"}'\n",
        ),
        &[("state", "state")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    // The tick period set in on_configure runs from start-up, before any request.
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Compare-and-swap increments: one count per request.
    for expected in 1..=3 {
        let reply = get(&gw.url("/mock")).await;
        if expected == 1 {
            let ticks: u64 = reply.header("x-ticks").parse().unwrap();
            assert!(ticks >= 2, "ticks before the first request: {ticks}");
        }
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-hits"), expected.to_string());
        assert_eq!(reply.header("x-requests-metric"), expected.to_string());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = get(&gw.url("/mock")).await;
    let ticks: u64 = reply.header("x-ticks").parse().unwrap();
    assert!(ticks >= 3, "on_tick ran every 20 ms: {ticks}");
    let dequeued: u64 = reply.header("x-dequeued").parse().unwrap();
    assert!(
        dequeued >= 3,
        "on_queue_ready delivered the enqueued paths: {dequeued}"
    );
    let metrics = get(&gw.url("/__barbacane/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    for line in [
        "barbacane_plugin_conformance_requests_total{plugin=\"state\"} 4",
        "barbacane_plugin_conformance_inflight{plugin=\"state\"} 0",
        "barbacane_plugin_conformance_path_length_count{plugin=\"state\"} 4",
        "barbacane_plugin_failures_total{plugin=\"state\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[tokio::test]
async fn properties_use_envoy_names_and_encodings() {
    let echo = echo_upstream().await;
    let config = serde_json::json!({
        "properties": [
            {"path": ["request", "path"], "type": "string"},
            {"path": ["request", "method"], "type": "string"},
            {"path": ["request", "headers", "x-a"], "type": "string"},
            {"path": ["request", "protocol"], "type": "string"},
            {"path": ["source", "port"], "type": "int"},
            {"path": ["plugin_name"], "type": "string"},
            {"path": ["xds", "route_name"], "type": "string"},
            {"path": ["route_name"], "type": "string"},
            {"path": ["xds", "cluster_name"], "type": "string"},
            {"path": ["no", "such"], "type": "string"},
        ],
        "set": {"path": ["my", "key"], "value": "v"},
    });
    let chain = format!("  - name: props\n    config: '{config}'\n");
    let dir = filter_project(
        &echo_spec(echo.addr.port(), "", &chain),
        &[("props", "props")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let reply = send(Method::GET, &gw.url("/echo?q=1"), &[("x-a", "1")], b"").await;
    assert_eq!(reply.status, 200);
    for (header, value) in [
        ("x-prop-request-path", "/echo?q=1"),
        ("x-prop-request-method", "GET"),
        ("x-prop-request-headers-x-a", "1"),
        ("x-prop-request-protocol", "HTTP/1.1"),
        ("x-prop-plugin_name", "props"),
        ("x-prop-xds-route_name", "echoGet"),
        ("x-prop-route_name", "echoGet"),
        ("x-prop-xds-cluster_name", "echo"),
        ("x-prop-no-such", "<absent>"),
        ("x-prop-set", "v"),
    ] {
        assert_eq!(reply.header(header), value, "{header}");
    }
    let port: u16 = reply.header("x-prop-source-port").parse().unwrap();
    assert!(port > 0, "source.port decodes as a little-endian int64");
}

/// The attributes of the connection, the node and the response's origin, read through the
/// gateway as a filter gets them: where the client reached the gateway, what answered (the
/// upstream's address, `via_upstream`; a mock's `direct_response`; a failed upstream's reason and
/// Envoy's flag bit), the gRPC status Envoy derives from an HTTP one, the empty metadata and the
/// node, and filter state under its Envoy key.
#[tokio::test]
async fn connection_node_and_response_origin_attributes_are_envoys() {
    let echo = echo_upstream().await;
    let property = |path: &[&str], kind: &str| serde_json::json!({"path": path, "type": kind});
    let config = serde_json::json!({
        "properties": [
            property(&["destination", "address"], "string"),
            property(&["destination", "port"], "int"),
            property(&["connection", "requested_server_name"], "string"),
            property(&["request", "headers_bytes"], "int"),
            property(&["node", "id"], "string"),
            property(&["xds", "node", "user_agent_name"], "string"),
            property(&["xds", "listener_direction"], "int"),
            property(&["metadata", "filter_metadata"], "map"),
        ],
        "response_properties": [
            property(&["response", "code_details"], "string"),
            property(&["response", "flags"], "int"),
            property(&["response", "grpc_status"], "int"),
            property(&["upstream", "address"], "string"),
            property(&["upstream", "port"], "int"),
            property(&["upstream", "request_attempt_count"], "uint"),
            property(&["filter_state", "wasm.my.key"], "string"),
        ],
        "set": {"path": ["my", "key"], "value": "v"},
    });
    let chain = format!("  - name: props\n    config: '{config}'\n");
    let project = |upstream_port: u16| {
        filter_project(&echo_spec(upstream_port, "", &chain), &[("props", "props")])
    };
    let gw = support::gateway_in(project(echo.addr.port()), Config::default()).await;
    let reply = get(&gw.url("/echo")).await;
    assert_eq!(reply.status, 200);
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let echo_address = echo.addr.to_string();
    let echo_port = echo.addr.port().to_string();
    for (header, value) in [
        ("x-prop-destination-address", gw.addr.to_string().as_str()),
        (
            "x-prop-destination-port",
            gw.addr.port().to_string().as_str(),
        ),
        // No SNI on plain HTTP: an empty name, which reaches the SDK as no value (Envoy's host
        // returns empty values as a null pointer too).
        ("x-prop-connection-requested_server_name", "<absent>"),
        ("x-prop-node-id", node.trim()),
        ("x-prop-xds-node-user_agent_name", "barbacane"),
        ("x-prop-xds-listener_direction", "0"),
        ("x-prop-metadata-filter_metadata", "0"),
        ("x-prop-response-code_details", "via_upstream"),
        ("x-prop-response-flags", "0"),
        ("x-prop-response-grpc_status", "2"),
        ("x-prop-upstream-address", &echo_address),
        ("x-prop-upstream-port", &echo_port),
        ("x-prop-upstream-request_attempt_count", "1"),
        ("x-prop-filter_state-wasm.my.key", "v"),
    ] {
        assert_eq!(reply.header(header), value, "{header}");
    }
    let headers_bytes: usize = reply
        .header("x-prop-request-headers_bytes")
        .parse()
        .unwrap();
    assert!(headers_bytes > "/echo".len(), "{headers_bytes}");

    let mocked = get(&gw.url("/mock")).await;
    assert_eq!(mocked.body, &b"mocked"[..]);
    assert_eq!(
        mocked.header("x-prop-response-code_details"),
        "direct_response"
    );
    assert_eq!(mocked.header("x-prop-upstream-address"), "<absent>");
    assert_eq!(mocked.header("x-prop-upstream-request_attempt_count"), "0");

    // An upstream that refuses connections: the 502's reason and UF (0x20), as Envoy flags it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let gw = support::gateway_in(project(closed_port), Config::default()).await;
    let failed = get(&gw.url("/echo")).await;
    assert_eq!(failed.status, 502);
    assert_eq!(
        failed.header("x-prop-response-code_details"),
        "upstream_reset_before_response_started{connection_failure}"
    );
    assert_eq!(failed.header("x-prop-response-flags"), "32");
    assert_eq!(failed.header("x-prop-response-grpc_status"), "14");
    assert_eq!(failed.header("x-prop-upstream-request_attempt_count"), "1");
}

/// What Envoy knows of the route and of the whole exchange: `xds.virtual_host_name` (the
/// `servers` host the request matched, `*` for a server without one), `upstream.num_endpoints`,
/// and, read in `on_log` by a filter that stores them for the next request (as a logging
/// filter would ship them), `response.backend_latency` (only for an upstream's answer) and
/// `request.duration`.
#[tokio::test]
async fn virtual_host_endpoints_and_end_of_exchange_latencies_are_envoys() {
    const UPSTREAM_DELAY: Duration = Duration::from_millis(100);
    let slow = support::upstream(|_request| async {
        tokio::time::sleep(UPSTREAM_DELAY).await;
        Response::new(full("slow"))
    })
    .await;
    let property = |path: &[&str], kind: &str| serde_json::json!({"path": path, "type": kind});
    let config = serde_json::json!({
        "properties": [
            property(&["xds", "virtual_host_name"], "string"),
            property(&["upstream", "num_endpoints"], "uint"),
        ],
        "log_properties": [
            property(&["response", "backend_latency"], "int"),
            property(&["request", "duration"], "int"),
        ],
    });
    let port = slow.addr.port();
    let spec = format!(
        r#"openapi: 3.1.0
info: {{title: slow, version: '1'}}
servers: [{{url: 'http://api.test'}}, {{url: '/'}}]
x-barbacane-upstreams:
  slow: {{endpoints: ['http://127.0.0.1:{port}', 'http://localhost:{port}'], allow_plaintext: true}}
x-barbacane-middlewares:
  - name: props
    config: '{config}'
paths:
  /slow:
    get:
      operationId: slowGet
      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: slow}}}}
  /mock:
    get:
      operationId: mockGet
      x-barbacane-dispatch: {{name: mock, config: {{body: mocked}}}}
"#
    );
    let project = filter_project(&spec, &[("props", "props")]);
    let gw = support::gateway_in(project, Config::default()).await;

    let mocked = get(&gw.url("/mock")).await;
    assert_eq!(mocked.body, &b"mocked"[..]);
    assert_eq!(mocked.header("x-prop-xds-virtual_host_name"), "*");
    assert_eq!(mocked.header("x-prop-upstream-num_endpoints"), "<absent>");
    let after_mock = logged_reply(&gw, "/mock", "request-duration").await;
    // The mock answered: a duration, no backend.
    assert_eq!(
        after_mock.header("x-logged-response-backend_latency"),
        "<absent>"
    );
    assert_eq!(
        after_mock.header("x-prop-xds-virtual_host_name"),
        "api.test"
    );

    let slowed = send(Method::GET, &gw.url("/slow"), &[("host", "api.test")], b"").await;
    assert_eq!(slowed.body, &b"slow"[..]);
    assert_eq!(slowed.header("x-prop-xds-virtual_host_name"), "api.test");
    assert_eq!(slowed.header("x-prop-upstream-num_endpoints"), "2");
    let after_slow = logged_reply(&gw, "/slow", "response-backend_latency").await;
    let nanos = |name: &str| -> i64 { after_slow.header(name).parse().unwrap() };
    let backend = nanos("x-logged-response-backend_latency");
    let duration = nanos("x-logged-request-duration");
    assert!(
        backend >= UPSTREAM_DELAY.as_nanos() as i64,
        "backend latency {backend} ns"
    );
    assert!(
        backend <= duration,
        "backend {backend} ns, duration {duration} ns"
    );
}

/// A local response a filter sends from the response body, before the head went, is the
/// exchange's: `on_log` reads its status and details, not the upstream's.
#[tokio::test]
async fn a_local_response_from_the_response_body_is_what_on_log_reads() {
    let denying = support::upstream(|_request| async { Response::new(full("deny")) }).await;
    let check = body_check_upstream(Arc::default()).await;
    let logged = serde_json::json!({
        "log_properties": [
            {"path": ["response", "code"], "type": "int"},
            {"path": ["response", "code_details"], "type": "string"},
        ],
    });
    let upstreams = format!(
        "  check: {{endpoints: ['http://127.0.0.1:{}'], allow_plaintext: true}}",
        check.addr.port()
    );
    let chain = format!("  - name: props\n    config: '{logged}'\n")
        + &callout_chain("check", ", \"check\": \"response_body\"");
    let dir = filter_project(
        &echo_spec(denying.addr.port(), &upstreams, &chain),
        &[("props", "props"), ("callout", "callout")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let denied = get(&gw.url("/echo")).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body, &b"denied"[..]);
    let next = logged_reply(&gw, "/mock", "response-code").await;
    assert_eq!(next.header("x-logged-response-code"), "403");
    assert_ne!(
        next.header("x-logged-response-code_details"),
        "via_upstream"
    );
}

/// A request to `path` (host `api.test`) whose response reports a number for `x-logged-<name>`:
/// one that came after an earlier request's `on_log` stored one (it runs once its response is
/// over, so the next request may come first: asked again until one has been stored).
async fn logged_reply(gw: &support::TestGateway, path: &str, name: &str) -> support::Reply {
    let header = format!("x-logged-{name}");
    for _ in 0..100 {
        let reply = send(Method::GET, &gw.url(path), &[("host", "api.test")], b"").await;
        if reply.header(&header).parse::<i64>().is_ok() {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no request to {path} reported a number for {header}");
}

/// Filter state is the request's, as in Envoy: what one filter stores with `set_property` the
/// next filter of the chain reads with `get_property` (how an auth plugin hands the consumer to
/// the plugins after it); the next request starts empty.
#[tokio::test]
async fn filter_state_is_shared_along_the_chain_and_not_across_requests() {
    let echo = echo_upstream().await;
    let writer = serde_json::json!({"set": {"path": ["my", "key"], "value": "from-the-first"}});
    let reader = serde_json::json!({"properties": [{"path": ["my", "key"], "type": "string"}]});
    let chain = format!(
        "  - name: props\n    config: '{writer}'\n  - name: props\n    config: '{reader}'\n"
    );
    let dir = filter_project(
        &echo_spec(echo.addr.port(), "", &chain),
        &[("props", "props")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    for _ in 0..2 {
        let reply = get(&gw.url("/echo")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-prop-my-key"), "from-the-first");
    }
    // Alone, the reader finds nothing: the value lived only as long as its request.
    let chain = format!("  - name: props\n    config: '{reader}'\n");
    let dir = filter_project(
        &echo_spec(echo.addr.port(), "", &chain),
        &[("props", "props")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    assert_eq!(
        get(&gw.url("/echo")).await.header("x-prop-my-key"),
        "<absent>"
    );
}

#[tokio::test]
async fn a_paused_stream_is_resumed_from_on_tick_through_the_effective_context() {
    let echo = echo_upstream().await;
    let dir = filter_project(
        &echo_spec(
            echo.addr.port(),
            "",
            "  - name: lifecycle\n    config: '{\"resume_with\": \"tick\", \"done_false\": true}'\n",
        ),
        &[("lifecycle", "lifecycle")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    let mut contexts = Vec::new();
    for _ in 0..3 {
        let reply = get(&gw.url("/echo")).await;
        assert_eq!(reply.status, 200);
        contexts.push(reply.header("x-lifecycle-context").parse::<u32>().unwrap());
    }
    assert!(
        contexts.windows(2).all(|w| w[1] > w[0]),
        "context ids grow and are never reused: {contexts:?}"
    );
    // on_done returned false; proxy_done from the tick finishes the streams: the plugin keeps
    // working (a leaked or double-deleted context would make the SDK panic).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = get(&gw.url("/__barbacane/metrics")).await;
    assert!(
        String::from_utf8_lossy(&metrics.body)
            .contains("barbacane_plugin_failures_total{plugin=\"lifecycle\"} 0")
    );
}

#[tokio::test]
async fn a_response_body_pump_ends_streams_when_the_client_goes_away() {
    // The upstream streams slowly; the client disconnects mid-body. The chain's streams still
    // end (on_done/on_log/on_delete) and the gateway serves the next request.
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let slow = support::upstream(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                for _ in 0..50 {
                    if tx.send(bytes::Bytes::from_static(b"tick\n")).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            Response::new(ChannelBody(rx).boxed_unsync())
        }
    })
    .await;
    let dir = filter_project(
        &echo_spec(slow.addr.port(), "", &body_chain("none", "append", "!")),
        &[("body", "body")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    {
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        stream
            .write_all(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = get(&gw.url("/mock")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

/// A body fed by a channel, for slow streaming upstreams.
struct ChannelBody(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl http_body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = barbacane::server::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
    }
}

/// A gateway whose global chain is the `grpc` filter, with upstream `grpc` at `grpc_port` (the
/// gRPC server) and `down` at a port nothing listens on.
async fn grpc_gateway(grpc_port: u16, echo_port: u16) -> support::TestGateway {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_port = closed.local_addr().unwrap().port();
    drop(closed);
    let upstreams = format!(
        "  grpc: {{endpoints: ['http://127.0.0.1:{grpc_port}'], allow_plaintext: true}}\n  down: {{endpoints: ['http://127.0.0.1:{down_port}'], allow_plaintext: true}}"
    );
    let chain = "  - name: grpc\n    config: '{\"upstream\": \"grpc\", \"timeout_ms\": 5000}'\n";
    let dir = filter_project(
        &echo_spec(echo_port, &upstreams, chain),
        &[("grpc", "grpc")],
    );
    support::gateway_in(dir, Config::default()).await
}

/// Asserts the plugin never failed (a callback for a cancelled call, or one the SDK cannot
/// route, would make it panic).
async fn assert_no_plugin_failure(gw: &support::TestGateway, plugin: &str) {
    let metrics = get(&gw.url("/__barbacane/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let line = format!("barbacane_plugin_failures_total{{plugin=\"{plugin}\"}} 0");
    assert!(text.contains(&line), "{text}");
}

#[tokio::test]
async fn grpc_calls_reach_a_real_grpc_server_and_resume_the_request() {
    let server = support::grpc_server();
    let echo = echo_upstream().await;
    let gw = grpc_gateway(server.port, echo.addr.port()).await;

    let call = |message: String, target: Option<&'static str>| {
        let url = gw.url("/echo");
        async move {
            let mut headers = vec![("x-grpc-call", "Echo"), ("x-grpc-message", &message)];
            headers.extend(target.map(|t| ("x-grpc-target", t)));
            send(Method::GET, &url, &headers, b"").await
        }
    };
    // The filter pauses the request, the answer's message resumes it towards the upstream.
    let reply = call(String::from("hello"), None).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let echoed = reply.json();
    assert_eq!(echoed["headers"]["x-grpc-reply"], "echo:hello md=call");
    // proxy_grpc_send on a unary call's token is refused, as Envoy does.
    assert_eq!(echoed["headers"]["x-grpc-send-on-call"], "BadArgument");
    // The call carried its metadata and a grpc-timeout the server honours.
    server.wait_for("Echo md=call service= timeout=yes").await;

    // The first argument as a serialized GrpcService: its cluster and initial metadata.
    let reply = call(String::from("svc"), Some("service")).await;
    assert_eq!(reply.json()["headers"]["x-grpc-reply"], "echo:svc md=call");
    server
        .wait_for("Echo md=call service=yes timeout=yes")
        .await;

    // Concurrent calls each resume their own request (HTTP/2 multiplexes them).
    let replies = futures_util::future::join_all((0..8).map(|i| call(format!("m{i}"), None))).await;
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(
            reply.json()["headers"]["x-grpc-reply"],
            format!("echo:m{i} md=call")
        );
    }
    assert_no_plugin_failure(&gw, "grpc").await;
}

#[tokio::test]
async fn grpc_calls_reach_a_tls_upstream_over_h2_negotiated_by_alpn() {
    let cert = rcgen::generate_simple_self_signed(vec![String::from("localhost")]).unwrap();
    let pems = support::project(&[
        ("cert.pem", &cert.cert.pem()),
        ("key.pem", &cert.signing_key.serialize_pem()),
    ]);
    let server =
        support::grpc_server_tls(&pems.path().join("cert.pem"), &pems.path().join("key.pem"));
    let echo = echo_upstream().await;
    let upstreams = format!(
        "  grpc: {{endpoints: ['https://localhost:{}'], ca_file: ca.pem}}",
        server.port
    );
    let chain = "  - name: grpc\n    config: '{\"upstream\": \"grpc\"}'\n";
    let dir = filter_project(
        &echo_spec(echo.addr.port(), &upstreams, chain),
        &[("grpc", "grpc")],
    );
    std::fs::write(dir.path().join("ca.pem"), cert.cert.pem()).unwrap();
    let gw = support::gateway_in(dir, Config::default()).await;
    let headers = [("x-grpc-call", "Echo"), ("x-grpc-message", "sealed")];
    let reply = send(Method::GET, &gw.url("/echo"), &headers, b"").await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        reply.json()["headers"]["x-grpc-reply"],
        "echo:sealed md=call"
    );
    server.wait_for("Echo md=call service= timeout=yes").await;
}

#[tokio::test]
async fn grpc_call_failures_reach_the_plugin_with_their_status() {
    let server = support::grpc_server();
    let echo = echo_upstream().await;
    let gw = grpc_gateway(server.port, echo.addr.port()).await;
    let url = gw.url("/echo");
    let call = |headers: Vec<(&'static str, &'static str)>| {
        let url = url.clone();
        async move { send(Method::GET, &url, &headers, b"").await }
    };

    // The server's status and (percent-decoded) message, via proxy_get_status in on_grpc_close.
    let reply = call(vec![("x-grpc-call", "Fail")]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.header("x-grpc-status")),
        (502, "5")
    );
    assert_eq!(String::from_utf8_lossy(&reply.body), "no such thing: é");

    // The call's timeout: DEADLINE_EXCEEDED, and the server sees the call cancelled.
    let reply = call(vec![("x-grpc-call", "Slow"), ("x-grpc-timeout-ms", "300")]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.header("x-grpc-status")),
        (502, "4")
    );
    server.wait_for("Slow cancelled").await;

    // Nothing listening: UNAVAILABLE.
    let reply = call(vec![("x-grpc-call", "Echo"), ("x-grpc-target", "down")]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.header("x-grpc-status")),
        (502, "14")
    );

    // An unknown upstream is refused at dispatch with PARSE_FAILURE, as in Envoy.
    let reply = call(vec![("x-grpc-call", "Echo"), ("x-grpc-target", "nowhere")]).await;
    assert_eq!(
        (reply.status.as_u16(), &reply.body[..]),
        (500, &b"ParseFailure"[..])
    );

    // A cancelled call: Ok once, then NOT_FOUND; its answer never reaches the plugin.
    let reply = call(vec![("x-grpc-call", "Slow"), ("x-grpc-cancel", "yes")]).await;
    assert_eq!(reply.header("x-grpc-cancelled"), "Ok,NotFound");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_no_plugin_failure(&gw, "grpc").await;
}

#[tokio::test]
async fn grpc_streams_carry_messages_and_metadata_both_ways() {
    let server = support::grpc_server();
    let echo = echo_upstream().await;
    let gw = grpc_gateway(server.port, echo.addr.port()).await;
    let stream = |messages: &'static str, extra: Vec<(&'static str, &'static str)>| {
        let url = gw.url("/echo");
        async move {
            let mut headers = vec![("x-grpc-stream", "Chat"), ("x-grpc-messages", messages)];
            headers.extend(extra);
            let reply = send(Method::GET, &url, &headers, b"").await;
            assert_eq!(reply.status, 200);
            reply.header("x-grpc-events").to_string()
        }
    };
    let whole = "send-after-end:BadArgument|initial:chat|message:got:a|message:got:b|message:got:c|message:end|trailing:chat-bye|close:0:";
    // end_stream on the last message: the server sees three messages, then the end.
    assert_eq!(stream("a,b,c", vec![]).await, whole);
    for line in ["Chat got a", "Chat got b", "Chat got c", "Chat end"] {
        server.wait_for(line).await;
    }
    // The same ended by proxy_grpc_close.
    assert_eq!(
        stream("a,b,c", vec![("x-grpc-half-close", "close")]).await,
        whole
    );

    // Cancelled after the first answer: the server sees the stream reset, the plugin hears no
    // more of it.
    let events = stream(
        "only",
        vec![("x-grpc-half-close", "never"), ("x-grpc-cancel-after", "1")],
    )
    .await;
    assert_eq!(events, "initial:chat|message:got:only|cancelled");
    server.wait_for("Chat cancelled").await;
    assert_no_plugin_failure(&gw, "grpc").await;
}

#[tokio::test]
async fn stopping_the_gateway_lets_a_plugin_finish_its_work_before_its_vm_goes() {
    // The root's on_done returns false and flushes by callout; proxy_done from the answer ends
    // it. The gateway waits for that before it stops.
    let flushed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = flushed.clone();
    let flush = support::upstream(move |request: http::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let requests = request.headers().get("x-requests").cloned();
            seen.lock().unwrap().push(format!(
                "{} {} x-requests={}",
                request.method(),
                request.uri(),
                requests.as_ref().map_or("", |v| v.to_str().unwrap())
            ));
            Response::new(full(""))
        }
    })
    .await;
    let echo = echo_upstream().await;
    let upstreams = format!(
        "  flush: {{endpoints: ['http://127.0.0.1:{}'], allow_plaintext: true}}",
        flush.addr.port()
    );
    let chain = "  - name: lifecycle\n    config: '{\"flush_upstream\": \"flush\"}'\n";
    let dir = filter_project(
        &echo_spec(echo.addr.port(), &upstreams, chain),
        &[("lifecycle", "lifecycle")],
    );
    let gw = support::gateway_in(dir, Config::default()).await;
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/mock")).await.status, 200);
    }
    assert!(
        flushed.lock().unwrap().is_empty(),
        "nothing before the stop"
    );
    gw.stop().await;
    assert_eq!(
        *flushed.lock().unwrap(),
        ["GET /flush x-requests=3"],
        "the flush callout ran during the stop"
    );
}

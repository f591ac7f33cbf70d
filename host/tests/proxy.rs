//! The `http-upstream` dispatcher against real upstream servers on loopback: URL building,
//! header rules, streaming in both directions, connection pooling, timeouts and failures.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::server::{Body, BoxError};
use bytes::Bytes;
use http::{Method, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::time::Duration;
use support::{echo_upstream, gateway, get, send, upstream};

fn spec(port: u16, extra_paths: &str) -> String {
    format!(
        r#"
openapi: 3.0.3
info: {{title: proxy, version: '1'}}
x-barbacane-upstreams:
  backend: {{endpoints: ['http://127.0.0.1:{port}/base']}}
paths:
  /items/{{id}}:
    get:
      parameters: [{{name: id, in: path, required: true, schema: {{type: string}}}}]
      x-barbacane-dispatch:
        name: http-upstream
        config: {{upstream: backend, path: '/v1/items/{{id}}', timeout: 2s}}
  /items:
    post:
      requestBody:
        content:
          application/json:
            schema: {{type: object, required: [name]}}
          application/octet-stream: {{}}
      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: backend, path: /v1/items}}}}
{extra_paths}"#
    )
}

#[tokio::test]
async fn requests_are_forwarded_with_proxy_headers() {
    let up = echo_upstream().await;
    let gw = gateway(&spec(up.addr.port(), "")).await;
    let r = send(
        Method::GET,
        &gw.url("/items/a%20b?x=1&y=two%2B&x=3"),
        &[
            ("host", "gw.example:8080"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "secret"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic eA=="),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-keep", "kept"),
            ("x-request-id", "req-42"),
        ],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.header("x-upstream"),
        "echo",
        "upstream response headers come back"
    );
    let echo = r.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["uri"], "/base/v1/items/a%20b?x=1&y=two%2B&x=3");
    let h = &echo["headers"];
    assert_eq!(h["host"], format!("127.0.0.1:{}", up.addr.port()));
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "gw.example:8080");
    assert_eq!(h["x-keep"], "kept");
    assert_eq!(h["x-request-id"], "req-42");
    for dropped in ["x-drop-me", "proxy-authorization"] {
        assert!(h.get(dropped).is_none(), "{dropped} was forwarded: {h}");
    }
    // `te` is hop-by-hop, but `trailers` is what the gateway itself accepts (as Envoy does).
    assert_eq!(h["te"], "trailers");
    assert_eq!(r.header("x-request-id"), "req-42");

    let created = send(
        Method::POST,
        &gw.url("/items"),
        &[("content-type", "application/json")],
        br#"{"name":"n"}"#,
    )
    .await;
    assert_eq!(created.json()["body"], r#"{"name":"n"}"#);
    send(
        Method::POST,
        &gw.url("/items"),
        &[("content-type", "application/json")],
        b"{}",
    )
    .await
    .problem(400, "validation");
}

#[tokio::test]
async fn parameters_cannot_escape_the_upstream_path() {
    let up = echo_upstream().await;
    let gw = gateway(&spec(up.addr.port(), "")).await;
    let r = get(&gw.url("/items/..%5Cadmin;x=1")).await;
    assert_eq!(r.json()["uri"], "/base/v1/items/..%5Cadmin;x=1");
    get(&gw.url("/items/..%2Fadmin"))
        .await
        .problem(400, "invalid-path");
}

#[tokio::test]
async fn upstream_connections_are_pooled() {
    let up = echo_upstream().await;
    let gw = gateway(&spec(up.addr.port(), "")).await;
    let client = support::client();
    for i in 0..10 {
        let r = support::send_with(
            &client,
            Method::GET,
            &gw.url(&format!("/items/{i}")),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 200);
        // The upstream connection goes back to the pool just after the last byte is relayed;
        // a short pause keeps this test about reuse, not about that race.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bodies_stream_both_ways_without_being_buffered_whole() {
    // The upstream echoes each request chunk as soon as it arrives. The client sends the second
    // chunk only after it has received the echo of the first: that can only complete if neither
    // the request nor the response is buffered whole by the gateway.
    let up = upstream(|request: http::Request<hyper::body::Incoming>| async move {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        tokio::spawn(async move {
            let mut body = request.into_body();
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data()
                    && tx.send(Ok(Frame::data(data))).await.is_err()
                {
                    return;
                }
            }
        });
        let stream = tokio_stream(rx);
        Response::new(Body::new(StreamBody::new(stream)))
    })
    .await;
    let gw = gateway(&spec(up.addr.port(), "")).await;

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    let body = Body::new(StreamBody::new(tokio_stream(rx)));
    let request = http::Request::post(gw.url("/items"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
        .await
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("first chunk streamed back")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"first"));
    tx.send(Ok(Frame::data(Bytes::from_static(b"second"))))
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.into_data().unwrap(), Bytes::from_static(b"second"));
    drop(tx);
    assert!(
        tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .unwrap()
            .is_none()
    );
}

/// A `Stream` over an mpsc receiver (avoids a tokio-stream dependency).
fn tokio_stream<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn slow_upstreams_get_504_and_dead_ones_502() {
    let slow = upstream(|_| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Response::new(barbacane::server::full("late"))
    })
    .await;
    let slow_spec = spec(slow.addr.port(), "").replace("timeout: 2s", "timeout: 300ms");
    let gw = gateway(&slow_spec).await;
    let r = get(&gw.url("/items/1")).await;
    let doc = r.problem(504, "gateway-timeout");
    assert!(doc["detail"].as_str().unwrap().contains("backend"));

    // A port that was just bound and released: nothing listens there.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = gateway(&spec(dead_port, "")).await;
    let doc = get(&gw.url("/items/1")).await.problem(502, "bad-gateway");
    assert!(
        doc["detail"].as_str().unwrap().contains("cannot connect"),
        "{doc}"
    );
}

#[tokio::test]
async fn oversized_streamed_bodies_are_cut_at_the_limit() {
    let up = echo_upstream().await;
    let limits = barbacane::server::Limits {
        max_body_bytes: 1000,
        ..Default::default()
    };
    let gw = support::gateway_with(
        &spec(up.addr.port(), ""),
        barbacane::server::Config {
            dev: true,
            limits,
            ..Default::default()
        },
    )
    .await;
    // Declared too large: refused before reading.
    send(
        Method::POST,
        &gw.url("/items"),
        &[("content-type", "application/octet-stream")],
        &[b'x'; 5000],
    )
    .await
    .problem(413, "payload-too-large");
    // Chunked (no Content-Length): cut while streaming.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(8);
    let request = http::Request::post(gw.url("/items"))
        .header("content-type", "application/octet-stream")
        .body(Body::new(StreamBody::new(tokio_stream(rx))))
        .unwrap();
    for _ in 0..5 {
        tx.send(Ok(Frame::data(Bytes::from(vec![b'y'; 400]))))
            .await
            .unwrap();
    }
    drop(tx);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 413);
    let _ = response.into_body().collect().await;
}

/// Response trailers an upstream announces (`Trailer`) reach an HTTP/1.1 client that accepts
/// them (`TE: trailers`): `Trailer` is end to end, not hop-by-hop (RFC 9110 §6.6.2).
#[tokio::test]
async fn upstream_response_trailers_reach_http1_clients() {
    let up = upstream(|_| async {
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"payload"))),
            Ok(Frame::trailers({
                let mut t = http::HeaderMap::new();
                t.insert("x-checksum", "abc123".parse().unwrap());
                t
            })),
        ];
        let body: Body = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
        Response::builder()
            .header("trailer", "x-checksum")
            .body(body)
            .unwrap()
    })
    .await;
    let gw = gateway(&spec(up.addr.port(), "")).await;
    let request = http::Request::get(gw.url("/items/t"))
        .header("te", "trailers")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let response = support::client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["trailer"], "x-checksum");
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrived");
    assert_eq!(trailers["x-checksum"], "abc123");
    assert_eq!(collected.to_bytes().as_ref(), b"payload");
}

/// POSTs `chunks` to `url` as a chunked body, each after its pause (ms); with `then_stall` the
/// body is never ended (the sender stays open until the gateway gives up on it).
async fn post_in_chunks(
    url: &str,
    content_type: &str,
    chunks: &[(u64, &'static str)],
    then_stall: bool,
) -> support::Reply {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(8);
    let chunks = chunks.to_vec();
    tokio::spawn(async move {
        for (pause, chunk) in chunks {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            if tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                return;
            }
        }
        if then_stall {
            tx.closed().await;
        }
    });
    post_streamed(url, content_type, rx).await
}

/// POSTs the frames `rx` gives to `url`, as they come.
async fn post_streamed(
    url: &str,
    content_type: &str,
    rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
) -> support::Reply {
    let request = http::Request::post(url)
        .header("content-type", content_type)
        .body(Body::new(StreamBody::new(tokio_stream(rx))))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("the gateway answered")
        .unwrap();
    let (parts, body) = response.into_parts();
    support::Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Envoy's route timeout: it counts from the end of the request, so an upload that takes longer
/// than the timeout still gets its answer; an upstream slow to answer after the body is over
/// still gets 504.
#[tokio::test]
async fn the_upstream_timeout_counts_from_the_end_of_the_request_body() {
    let up = upstream(|request: http::Request<hyper::body::Incoming>| async move {
        let delay = request
            .headers()
            .get("x-delay-ms")
            .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
        let body = request.into_body().collect().await.unwrap().to_bytes();
        tokio::time::sleep(Duration::from_millis(delay)).await;
        Response::new(barbacane::server::full(body))
    })
    .await;
    let uploads = r#"
  /uploads:
    post:
      x-barbacane-dispatch: {name: http-upstream, config: {upstream: backend, path: /up, timeout: 300ms}}
"#;
    let gw = gateway(&spec(up.addr.port(), uploads)).await;
    let url = gw.url("/uploads");
    // 900 ms of upload, three times the timeout.
    let slow = [(0, "a"), (450, "b"), (450, "c")];
    let r = post_in_chunks(&url, "application/octet-stream", &slow, false).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body.as_ref(), b"abc");

    let r = send(Method::POST, &url, &[("x-delay-ms", "1000")], b"late").await;
    let doc = r.problem(504, "gateway-timeout");
    assert!(doc["detail"].as_str().unwrap().contains("300ms"), "{doc}");
}

/// nginx's `client_body_timeout`: a client that stops sending its body gets 408 (whether the
/// body streams to the upstream or is read whole to be validated); one that keeps sending, even
/// slowly, does not.
#[tokio::test]
async fn a_client_that_stops_sending_its_body_gets_408() {
    let up = echo_upstream().await;
    let config = barbacane::server::Config {
        dev: true,
        limits: barbacane::server::Limits {
            body_read_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    };
    let gw = support::gateway_with(&spec(up.addr.port(), ""), config).await;
    let url = gw.url("/items");
    for content_type in ["application/octet-stream", "application/json"] {
        let r = post_in_chunks(&url, content_type, &[(0, "{\"name\":")], true).await;
        let doc = r.problem(408, "request-timeout");
        assert!(doc["detail"].as_str().unwrap().contains("300ms"), "{doc}");
    }
    // Five pauses of 200 ms: each under the timeout, together well over it.
    let steady = [
        (0, "{"),
        (200, "\"name\""),
        (200, ":"),
        (200, "\"n\""),
        (200, "}"),
    ];
    let r = post_in_chunks(&url, "application/json", &steady, false).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["body"], r#"{"name":"n"}"#);
}

/// As Envoy: once the upstream's response is over while the client is still sending its body,
/// the upstream request is abandoned and the gateway stops reading the body (the HTTP/1.1
/// connection closes after the response, an HTTP/2 stream is reset), even though the upstream
/// would still read it.
#[tokio::test]
async fn a_response_over_before_the_request_body_ends_the_upload() {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let up = upstream({
        let log = log.clone();
        move |request: http::Request<hyper::body::Incoming>| {
            let log = log.clone();
            async move {
                // Answers whole once the first chunk came, and goes on reading the body.
                let mut body = request.into_body();
                let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&first).into_owned());
                tokio::spawn(async move {
                    let entry = loop {
                        match body.frame().await {
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(data) => {
                                    let data = String::from_utf8_lossy(&data).into_owned();
                                    log.lock().unwrap().push(data);
                                }
                                Err(_) => continue,
                            },
                            Some(Err(_)) => break "aborted",
                            None => break "end",
                        }
                    };
                    log.lock().unwrap().push(String::from(entry));
                });
                Response::new(barbacane::server::full("early"))
            }
        }
    })
    .await;
    let gw = gateway(&spec(up.addr.port(), "")).await;
    // HTTP/1.1: the connection closes after the response; HTTP/2: the stream is reset.
    for http2 in [false, true] {
        log.lock().unwrap().clear();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(8);
        tx.send(Ok(Frame::data(Bytes::from_static(b"aaa"))))
            .await
            .unwrap();
        let request = http::Request::post(gw.url("/items"))
            .header("content-type", "application/octet-stream")
            .body(Body::new(StreamBody::new(tokio_stream(rx))))
            .unwrap();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(http2)
                .build_http::<Body>();
        let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.as_ref(), b"early");
        // The client's body is no longer wanted.
        tokio::time::timeout(Duration::from_secs(10), tx.closed())
            .await
            .unwrap_or_else(|_| panic!("the gateway stopped reading the body (http2: {http2})"));
        for _ in 0..100 {
            if log.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(*log.lock().unwrap(), ["aaa", "aborted"], "http2: {http2}");
    }
}

/// nginx's `proxy_read_timeout`: an upstream that stops sending its response body for the
/// upstream's `timeout` has the client's stream reset (the head has gone already), instead of
/// holding the client (and both connections) forever.
#[tokio::test]
async fn an_upstream_that_stops_sending_its_response_body_is_cut_off_after_its_timeout() {
    let up = upstream(|_| async {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        tx.send(Ok(Frame::data(Bytes::from_static(b"aaa"))))
            .await
            .unwrap();
        // The sender stays open (the body never ends) until the gateway hangs up.
        tokio::spawn(async move { tx.closed().await });
        Response::new(Body::new(StreamBody::new(tokio_stream(rx))))
    })
    .await;
    let stalls = r#"
  /stalls:
    get:
      x-barbacane-dispatch: {name: http-upstream, config: {upstream: backend, path: /s, timeout: 300ms}}
"#;
    let gw = gateway(&spec(up.addr.port(), stalls)).await;
    let request = http::Request::get(gw.url("/stalls"))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let response = support::client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap().as_ref(), b"aaa");
    let cut = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the gateway gave up on the upstream");
    assert!(matches!(cut, Some(Err(_))), "the body failed: {cut:?}");
}

/// nginx's `proxy_send_timeout`: an upstream that takes none of the request body for its
/// `timeout` (here: connected, never reading) gets the client a 504, although the timeout
/// otherwise counts only from the end of the body.
#[tokio::test]
async fn an_upstream_that_takes_none_of_the_request_body_for_its_timeout_answers_504() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let uploads = r#"
  /uploads:
    post:
      x-barbacane-dispatch: {name: http-upstream, config: {upstream: backend, path: /up, timeout: 300ms}}
"#;
    let config = barbacane::server::Config {
        dev: true,
        limits: barbacane::server::Limits {
            max_body_bytes: 1 << 30,
            ..Default::default()
        },
        ..Default::default()
    };
    let gw = support::gateway_with(&spec(port, uploads), config).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    // More than the sockets between the gateway and the upstream hold, sent as it is taken.
    tokio::spawn(async move {
        for _ in 0..256 {
            let chunk = Bytes::from(vec![b'x'; 1 << 20]);
            if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                return;
            }
        }
    });
    let reply = post_streamed(&gw.url("/uploads"), "application/octet-stream", rx).await;
    let doc = reply.problem(504, "gateway-timeout");
    let detail = doc["detail"].as_str().unwrap();
    assert!(
        detail.contains("take the request body within 300ms"),
        "{doc}"
    );
}

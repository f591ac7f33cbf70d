//! End-to-end: the plugin's `.wasm`, built from this crate, served by the real gateway in front
//! of the echo upstream, shipping its lines to a real loopback collector (a harness upstream
//! whose closure records what it accepts).
//!
//! Lines arrive after the responses, on the plugin's own schedule: tests poll for them with a
//! generous deadline and never assert how long anything took. Each test names the plugin
//! differently, so that its shared queue and its metrics (both per plugin name, process-wide)
//! are its own.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane_sdk::testing::{
    Random, TestGateway, TestRequest, TestResponse, build_plugin, check_config, plugin_manifest,
};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_dir() -> PathBuf {
    crate_dir().join("../fixtures/set-consumer")
}

/// How long a test waits for lines (or counters) before failing.
const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` until it gives a value, failing the test with `what` after [`DEADLINE`].
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if start.elapsed() > DEADLINE {
            panic!("{what}: not within {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A collector: records the bodies it accepts; answers 500 while `down` is set.
#[derive(Clone, Default)]
struct Collector {
    accepted: Arc<Mutex<Vec<Vec<u8>>>>,
    down: Arc<AtomicBool>,
}

impl Collector {
    fn handler(&self) -> impl Fn(TestRequest) -> TestResponse + Send + Sync + 'static {
        let this = self.clone();
        move |request| {
            if this.down.load(Ordering::SeqCst) {
                return TestResponse::new(500).with_body("collector unavailable");
            }
            this.accepted.lock().unwrap().push(request.body);
            TestResponse::new(204)
        }
    }

    /// Every accepted line, parsed.
    fn lines(&self) -> Vec<Value> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .flat_map(|body| {
                String::from_utf8(body.clone())
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<Value>>()
            })
            .collect()
    }
}

/// The value of counter `metric` of plugin `plugin` on the gateway's metrics endpoint.
async fn counter(gw: &TestGateway, metric: &str, plugin: &str) -> u64 {
    let text = gw.get("/__barbacane/metrics").await.text();
    let prefix = format!("barbacane_plugin_{metric}{{plugin=\"{plugin}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Polls counter `metric` of `plugin` until it reads `expected`, failing after [`DEADLINE`].
async fn counter_reaches(gw: &TestGateway, metric: &str, plugin: &str, expected: u64) {
    let start = tokio::time::Instant::now();
    loop {
        let value = counter(gw, metric, plugin).await;
        if value == expected {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{metric} of {plugin} is {value}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn is_rfc3339_millis(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[tokio::test]
async fn each_request_becomes_one_json_line_at_the_collector() {
    let collector = Collector::default();
    let gw = TestGateway::builder()
        // First in the chain, so it also sees what the plugins after it decide.
        .plugin(
            "http-log",
            &build_plugin(crate_dir()),
            json!({
                "upstream": "collector",
                "path": "/ingest",
                "headers": {"Authorization": "Bearer t0ken"},
                "batch_size": 5,
                "flush_interval_ms": 100
            }),
        )
        .plugin("set-consumer", &build_plugin(&fixture_dir()), json!(null))
        .upstream("collector", collector.handler())
        .start()
        .await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let response = if i % 2 == 0 {
            gw.send("GET", "/anything?x=1", &[("user-agent", "probe/1")], b"")
                .await
        } else {
            gw.send(
                "POST",
                "/anything",
                &[("x-test-consumer", "alice")],
                &[b'a'; 123],
            )
            .await
        };
        assert_eq!(response.status, 200);
        let id = response.header("x-request-id").unwrap().to_string();
        ids.push((id, i, response.body.len()));
    }
    let lines = eventually("7 lines at the collector", || {
        let lines = collector.lines();
        (lines.len() >= 7).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), 7);
    for (id, i, response_size) in ids {
        let line = lines
            .iter()
            .find(|l| l["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no line for request {id}"));
        assert_eq!(line.as_object().unwrap().len(), 15, "{line}");
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert_eq!(line["upstream"], "echo");
        assert_eq!(line["status"], 200);
        assert_eq!(line["response_size"], response_size);
        let started = line["started_at"].as_str().unwrap();
        let finished = line["finished_at"].as_str().unwrap();
        assert!(
            is_rfc3339_millis(started) && is_rfc3339_millis(finished),
            "{line}"
        );
        assert!(started <= finished, "{line}");
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0);
        let upstream_ms = line["upstream_duration_ms"].as_f64().unwrap();
        assert!(upstream_ms >= 0.0 && upstream_ms <= line["duration_ms"].as_f64().unwrap());
        if i % 2 == 0 {
            assert_eq!(line["method"], "GET");
            assert_eq!(line["path"], "/anything?x=1");
            assert_eq!(line["route"], "anything_get");
            assert_eq!(line["request_size"], 0);
            assert_eq!(line["user_agent"], "probe/1");
            assert_eq!(line["consumer_id"], Value::Null);
        } else {
            assert_eq!(line["method"], "POST");
            assert_eq!(line["path"], "/anything");
            assert_eq!(line["route"], "anything_post");
            assert_eq!(line["request_size"], 123);
            assert_eq!(line["consumer_id"], "alice");
        }
    }
    let batches = gw.upstream("collector").requests();
    assert!(batches.len() >= 2, "7 lines in batches of at most 5");
    for batch in &batches {
        assert_eq!(batch.method, "POST");
        assert_eq!(batch.uri, "/ingest");
        assert_eq!(batch.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(batch.header("authorization"), Some("Bearer t0ken"));
        assert_eq!(batch.header("host"), Some("collector"));
        let text = String::from_utf8(batch.body.clone()).unwrap();
        assert!(text.ends_with('\n'));
        assert!((1..=5).contains(&text.lines().count()), "{text}");
    }
    // Counted when the plugin reads the collector's answer, just after the collector has the
    // lines.
    counter_reaches(&gw, "http_log_lines_shipped_total", "http-log", 7).await;
}

#[tokio::test]
async fn lines_reach_a_collector_that_fails_for_a_while_once_it_recovers() {
    let collector = Collector::default();
    collector.down.store(true, Ordering::SeqCst);
    let gw = TestGateway::builder()
        .plugin(
            "http-log-recover",
            &build_plugin(crate_dir()),
            json!({
                "upstream": "collector",
                "batch_size": 2,
                "flush_interval_ms": 50,
                "max_retries": 100,
                "retry_backoff_ms": 10,
                "retry_max_backoff_ms": 100
            }),
        )
        .upstream("collector", collector.handler())
        .start()
        .await;
    // Requests go through while the collector fails: their lines wait and are retried.
    let mut ids = HashSet::new();
    for _ in 0..6 {
        let response = gw.get("/anything").await;
        assert_eq!(response.status, 200);
        ids.insert(response.header("x-request-id").unwrap().to_string());
    }
    eventually("retries against the failing collector", || {
        (gw.upstream("collector").requests().len() >= 3).then_some(())
    })
    .await;
    let response = gw.get("/anything").await;
    assert_eq!(
        response.status, 200,
        "still serving while the collector fails"
    );
    ids.insert(response.header("x-request-id").unwrap().to_string());
    assert!(collector.lines().is_empty());

    collector.down.store(false, Ordering::SeqCst);
    let lines = eventually("7 lines after recovery", || {
        let lines = collector.lines();
        (lines.len() >= 7).then_some(lines)
    })
    .await;
    let got: HashSet<String> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ids, "every line once");
    assert_eq!(lines.len(), 7);
    counter_reaches(&gw, "http_log_lines_shipped_total", "http-log-recover", 7).await;
    assert!(counter(&gw, "http_log_batch_retries_total", "http-log-recover").await >= 2);
    assert_eq!(
        counter(&gw, "http_log_lines_dropped_total", "http-log-recover").await,
        0
    );
}

#[tokio::test]
async fn a_collector_that_stays_down_costs_lines_never_requests() {
    let gw = TestGateway::builder()
        .plugin(
            "http-log-down",
            &build_plugin(crate_dir()),
            json!({
                "upstream": "collector",
                "batch_size": 1,
                "max_retries": 2,
                "retry_backoff_ms": 10
            }),
        )
        .closed_upstream("collector")
        .start()
        .await;
    for _ in 0..4 {
        assert_eq!(gw.get("/anything").await.status, 200);
    }
    let plugin = "http-log-down";
    counter_reaches(&gw, "http_log_batches_failed_total", plugin, 4).await;
    assert_eq!(
        counter(&gw, "http_log_lines_dropped_total", plugin).await,
        4
    );
    // Two retries per batch.
    assert_eq!(
        counter(&gw, "http_log_batch_retries_total", plugin).await,
        8
    );
    assert_eq!(
        counter(&gw, "http_log_lines_shipped_total", plugin).await,
        0
    );
}

#[tokio::test]
async fn a_full_buffer_drops_the_oldest_lines_and_counts_them() {
    let collector = Collector::default();
    let gw = TestGateway::builder()
        .plugin(
            "http-log-overflow",
            &build_plugin(crate_dir()),
            // Batches never fill and the interval never passes: lines only pile up.
            json!({"upstream": "collector", "queue_size": 3, "batch_size": 1000, "flush_interval_ms": 3_600_000}),
        )
        .upstream("collector", collector.handler())
        .start()
        .await;
    for _ in 0..10 {
        assert_eq!(gw.get("/anything").await.status, 200);
    }
    counter_reaches(&gw, "http_log_lines_dropped_total", "http-log-overflow", 7).await;
    assert!(collector.lines().is_empty());
}

#[tokio::test]
async fn stopping_the_gateway_ships_the_lines_still_waiting() {
    let collector = Collector::default();
    let gw = TestGateway::builder()
        .plugin(
            "http-log-stop",
            &build_plugin(crate_dir()),
            json!({"upstream": "collector", "batch_size": 100, "flush_interval_ms": 60000}),
        )
        .upstream("collector", collector.handler())
        .workers(2)
        .start()
        .await;
    for _ in 0..5 {
        assert_eq!(gw.get("/anything").await.status, 200);
    }
    // Not due yet: a batch of 100 lines, or a minute's wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(collector.lines().is_empty());
    // The stop runs each VM's on_done: the plugin ships what waits before its VM goes.
    gw.stop().await;
    assert_eq!(collector.lines().len(), 5);
}

#[tokio::test]
async fn several_workers_ship_every_line_once() {
    let collector = Collector::default();
    let gw = TestGateway::builder()
        .plugin(
            "http-log-workers",
            &build_plugin(crate_dir()),
            json!({"upstream": "collector", "batch_size": 4, "flush_interval_ms": 50}),
        )
        .upstream("collector", collector.handler())
        .workers(3)
        .start()
        .await;
    let mut ids = HashSet::new();
    for _ in 0..30 {
        let response = gw.get("/anything").await;
        assert_eq!(response.status, 200);
        ids.insert(response.header("x-request-id").unwrap().to_string());
    }
    let lines = eventually("30 lines", || {
        let lines = collector.lines();
        (lines.len() >= 30).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), 30);
    let got: HashSet<String> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ids);
}

#[tokio::test]
async fn a_bad_configuration_fails_the_build_with_the_pointer() {
    for (config, expected) in [
        (json!({}), "missing field `upstream`"),
        (
            json!({"upstream": "collector", "batch_size": 0}),
            "at /batch_size",
        ),
        (
            json!({"upstream": "collector", "path": "ingest"}),
            "at /path",
        ),
        (
            json!({"upstream": "collector", "headers": {":authority": "x"}}),
            "at /headers/:authority",
        ),
        (
            json!({"upstream": "collector", "headers": {"content-length": "1"}}),
            "at /headers/content-length",
        ),
        (
            json!({"upstream": "collector", "trusted_proxies": ["not-an-ip"]}),
            "at /trusted_proxies/0",
        ),
        (
            json!({"upstream": "collector", "flush_interval_ms": 0}),
            "at /flush_interval_ms",
        ),
    ] {
        let schema_knows = !config.to_string().contains("content-length")
            && !config.to_string().contains("not-an-ip");
        assert_eq!(
            check_config(crate_dir(), &config).is_err(),
            schema_knows,
            "{config}"
        );
        let error = match TestGateway::builder()
            .plugin("http-log", &build_plugin(crate_dir()), config.clone())
            .upstream("collector", |_| TestResponse::new(204))
            .try_start()
            .await
        {
            Ok(_) => panic!("{config} was accepted"),
            Err(e) => e,
        };
        assert!(error.contains("E1061"), "{error}");
        assert!(error.contains(expected), "{config}: {error}");
    }
}

#[test]
fn manifest_and_documented_examples() {
    let manifest = plugin_manifest(crate_dir());
    assert_eq!(manifest.name, "http-log");
    assert_eq!(manifest.kind, "logging");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    for example in [
        json!({"upstream": "logs"}),
        json!({
            "upstream": "logs",
            "path": "/v1/ingest",
            "authority": "logs.internal",
            "headers": {"authorization": "Bearer s3cr3t"},
            "batch_size": 200,
            "flush_interval_ms": 2000,
            "queue_size": 50000,
            "max_retries": 8,
            "retry_backoff_ms": 250,
            "retry_max_backoff_ms": 60000,
            "timeout_ms": 5000,
            "trusted_proxies": ["10.0.0.0/8", "::1"]
        }),
    ] {
        assert_eq!(check_config(crate_dir(), &example), Ok(()), "{example}");
    }
}

#[tokio::test]
async fn random_requests_are_all_logged_and_never_fail() {
    let collector = Collector::default();
    let gw = TestGateway::builder()
        .plugin(
            "http-log-random",
            &build_plugin(crate_dir()),
            json!({
                "upstream": "collector",
                "batch_size": 17,
                "flush_interval_ms": 50,
                "trusted_proxies": ["127.0.0.1"]
            }),
        )
        .plugin("set-consumer", &build_plugin(&fixture_dir()), json!(null))
        .upstream("collector", collector.handler())
        .start()
        .await;
    let names = [
        "x-forwarded-for",
        "user-agent",
        "x-test-consumer",
        "x-test-groups",
        "x-request-id",
        "accept",
    ];
    let mut rng = Random::new(0x0123_4567_89ab_cdef);
    let rounds = 300;
    for round in 0..rounds {
        let mut headers: Vec<(String, String)> = Vec::new();
        for _ in 0..rng.below(5) {
            headers.push((
                names[rng.below(names.len())].to_string(),
                rng.text(30).trim().to_string(),
            ));
        }
        let body: Vec<u8> = (0..rng.below(2000)).map(|_| rng.next_u64() as u8).collect();
        let method = if body.is_empty() && rng.below(2) == 0 {
            "GET"
        } else {
            "POST"
        };
        let path = format!("/anything?r={}&v={}", round, rng.below(1_000_000));
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let response = gw.send(method, &path, &pairs, &body).await;
        assert_eq!(
            response.status,
            200,
            "round {round}: {headers:?}: {}",
            response.text()
        );
    }
    let lines = eventually("a line per request", || {
        let lines = collector.lines();
        (lines.len() >= rounds).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), rounds);
    let mut rounds_seen = HashSet::new();
    for line in &lines {
        assert_eq!(line.as_object().unwrap().len(), 15, "{line}");
        assert_eq!(line["status"], 200);
        let path = line["path"].as_str().unwrap();
        let round = path.split(['=', '&']).nth(1).unwrap().to_string();
        rounds_seen.insert(round);
        assert!(line["client_ip"].is_string(), "{line}");
    }
    assert_eq!(rounds_seen.len(), rounds);
}

//! Built-in plugin `http-log`: one JSON line per request — method, path, route, status,
//! durations, body sizes, client address, request id, consumer, upstream, RFC 3339 timestamps —
//! shipped to an HTTP collector (an upstream of the spec) as batched newline-delimited JSON, like
//! Kong's `http-log`.
//!
//! Nothing happens on the request's path but counting body bytes and noting two instants: the
//! line is written in `on_log`, once the response is over, from the properties the gateway
//! serves with Envoy's names (`request.method`, `request.path`, `request.time`,
//! `response.code`, `xds.route_name`, `xds.cluster_name`, `source.address`, …) and pushed onto a
//! shared queue. Every worker's root context takes lines off that queue (when notified, and on
//! each tick) into its own bounded buffer and POSTs batches with `proxy_http_call`; a failed batch
//! is retried with backoff, then dropped. Failures are logged and counted in plugin metrics,
//! never surfaced to a request: a request is neither delayed nor failed by its log line.
//!
//! Modules: [`config`] (the configuration), [`line`] (the log line and its timestamps),
//! [`shipper`] (batching, retries, bounds). Reference in `docs/plugins/http-log.md`.

pub mod config;
pub mod line;
pub mod shipper;

use barbacane_sdk::{consumer, http};
use config::Settings;
use line::LogLine;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MetricType};
use shipper::{Limits, Outcome, Shipper};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The module's entry point (`_initialize`), in a private module so that the exported function
/// the macro writes needs no public docs.
mod entry {
    use super::Root;
    use proxy_wasm::traits::RootContext;
    use proxy_wasm::types::LogLevel;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
    }}
}

// Per-request allocations come from free lists, not dlmalloc (see `barbacane_sdk::allocator`).
barbacane_sdk::allocator!();

/// Counter: lines the collector accepted.
pub const METRIC_SHIPPED: &str = "http_log_lines_shipped_total";
/// Counter: lines dropped (buffer full, or their batch failed for the last time).
pub const METRIC_DROPPED: &str = "http_log_lines_dropped_total";
/// Counter: batches dropped after their last retry.
pub const METRIC_FAILED: &str = "http_log_batches_failed_total";
/// Counter: batch attempts that failed and were retried.
pub const METRIC_RETRIES: &str = "http_log_batch_retries_total";

/// The most lines taken off the shared queue per callback, so that one callback stays short
/// however busy the other workers are (the rest is taken on the next one).
const DRAIN_LIMIT: usize = 10_000;

/// The name of the shared queue of one configuration. Queues are per plugin (vm_id), so two
/// `http-log` middlewares with different collectors must not share one.
pub fn queue_name(config: &[u8]) -> String {
    // FNV-1a: stable across replicas and processes, which is all this needs.
    let hash = config.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("http-log/{hash:016x}")
}

/// The tick period: often enough for the flush interval (a line waits at most about 1.5 times
/// it) and the first retry, and at least once a second.
pub fn tick_period(settings: &Settings) -> Duration {
    let config = &settings.config;
    let ms = (config.flush_interval_ms / 2)
        .min(config.retry_backoff_ms)
        .clamp(10, 1000);
    Duration::from_millis(ms)
}

/// Nanoseconds since the epoch of a host time.
fn unix_nanos(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// The plugin's counters (ids; `None` when the host refused to define one).
#[derive(Debug, Default, Clone, Copy)]
struct Metrics {
    shipped: Option<u32>,
    dropped: Option<u32>,
    failed: Option<u32>,
    retries: Option<u32>,
}

impl Metrics {
    fn define() -> Metrics {
        let counter = |name| hostcalls::define_metric(MetricType::Counter, name).ok();
        Metrics {
            shipped: counter(METRIC_SHIPPED),
            dropped: counter(METRIC_DROPPED),
            failed: counter(METRIC_FAILED),
            retries: counter(METRIC_RETRIES),
        }
    }

    fn add(id: Option<u32>, count: u64) {
        if let (Some(id), Ok(count)) = (id, i64::try_from(count))
            && count > 0
        {
            // A metric that cannot be counted is no reason to fail.
            let _ = hostcalls::increment_metric(id, count);
        }
    }
}

#[derive(Default)]
struct Root {
    settings: Option<Rc<Settings>>,
    queue: u32,
    shipper: Option<Shipper>,
    metrics: Metrics,
    /// A dropped-line warning was logged since the last delivery (one per outage, not per
    /// line).
    warned_overflow: bool,
    /// The VM is shutting down (`on_done` returned false): `proxy_done` once all is shipped.
    closing: bool,
}

impl Root {
    fn now_ms(&self) -> u64 {
        u64::try_from(unix_nanos(self.get_current_time()) / 1_000_000).unwrap_or(0)
    }

    /// Moves lines from the shared queue into this worker's buffer.
    fn drain(&mut self) {
        let now = self.now_ms();
        let mut dropped = 0;
        for _ in 0..DRAIN_LIMIT {
            let Ok(Some(line)) = self.dequeue_shared_queue(self.queue) else {
                break;
            };
            if let Some(shipper) = &mut self.shipper {
                dropped += shipper.push(line, now);
            }
        }
        if dropped > 0 {
            Metrics::add(self.metrics.dropped, dropped);
            if !self.warned_overflow {
                self.warned_overflow = true;
                log::warn!("http-log: buffer full (queue_size); dropping the oldest lines");
            }
        }
    }

    /// Sends the batch that is due, if any.
    fn pump(&mut self) {
        let Some(settings) = self.settings.clone() else {
            return;
        };
        let now = self.now_ms();
        let Some(body) = self
            .shipper
            .as_mut()
            .and_then(|s| s.due(now))
            .map(<[u8]>::to_vec)
        else {
            return;
        };
        // The host frames the body (content-length) itself.
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":path", &settings.config.path),
            (":authority", &settings.authority),
            ("content-type", "application/x-ndjson"),
        ];
        headers.extend(
            settings
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        let timeout = Duration::from_millis(settings.config.timeout_ms);
        let sent = self.dispatch_http_call(
            &settings.config.upstream,
            headers,
            Some(&body),
            vec![],
            timeout,
        );
        match sent {
            Ok(token) => {
                if let Some(shipper) = &mut self.shipper {
                    shipper.sent(token);
                }
            }
            Err(status) => {
                let outcome = self.shipper.as_mut().map(|s| s.failed(now));
                let reason = format!(
                    "the callout to upstream '{}' was refused ({status:?})",
                    settings.config.upstream
                );
                self.record(outcome, &reason);
            }
        }
    }

    /// While closing: tells the host the work is over once every line is shipped or dropped.
    fn finish_if_flushed(&mut self) {
        if self.closing && self.shipper.as_ref().is_none_or(Shipper::is_empty) {
            self.closing = false;
            self.done();
        }
    }

    /// Counts and logs what became of a batch attempt.
    fn record(&mut self, outcome: Option<Outcome>, reason: &str) {
        match outcome {
            Some(Outcome::Shipped(lines)) => {
                Metrics::add(self.metrics.shipped, lines);
                self.warned_overflow = false;
            }
            Some(Outcome::Retrying(failures)) => {
                Metrics::add(self.metrics.retries, 1);
                log::debug!("http-log: batch attempt {failures} failed: {reason}; will retry");
            }
            Some(Outcome::Dropped(lines)) => {
                Metrics::add(self.metrics.dropped, lines);
                Metrics::add(self.metrics.failed, 1);
                log::warn!(
                    "http-log: dropped a batch of {lines} lines after its last retry: {reason}"
                );
            }
            Some(Outcome::Ignored) | None => {}
        }
    }
}

impl Context for Root {
    /// The gateway is stopping or has replaced this configuration: the waiting lines leave now
    /// rather than being lost, and the VM goes once they are delivered (or dropped after their
    /// retries; the gateway waits a few seconds at most).
    fn on_done(&mut self) -> bool {
        self.drain();
        let Some(shipper) = &mut self.shipper else {
            return true;
        };
        shipper.close();
        self.pump();
        let flushed = self.shipper.as_ref().is_none_or(Shipper::is_empty);
        self.closing = !flushed;
        flushed
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        // No headers: the callout failed (reset) before any answer.
        let status = if num_headers == 0 {
            None
        } else {
            self.get_http_call_response_headers_bytes()
                .into_iter()
                .find(|(name, _)| name == ":status")
                .and_then(|(_, value)| String::from_utf8_lossy(&value).parse::<u16>().ok())
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        let now = self.now_ms();
        let outcome = self.shipper.as_mut().map(|s| s.answered(token_id, ok, now));
        let reason = match status {
            Some(status) => format!("the collector answered {status}"),
            None => String::from("the collector did not answer (connection reset)"),
        };
        self.record(outcome, &reason);
        self.pump();
        self.finish_if_flushed();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration();
        let name = queue_name(bytes.as_deref().unwrap_or_default());
        let settings = match Settings::from_json(bytes) {
            Ok(settings) => settings,
            Err(e) => {
                // The gateway quotes this line when it refuses the middleware at compile time.
                log::error!("{e}");
                return false;
            }
        };
        let config = &settings.config;
        self.shipper = Some(Shipper::new(Limits {
            batch_size: config.batch_size,
            queue_size: config.queue_size,
            flush_interval_ms: config.flush_interval_ms,
            max_retries: config.max_retries,
            retry_backoff_ms: config.retry_backoff_ms,
            retry_max_backoff_ms: config.retry_max_backoff_ms,
        }));
        self.queue = self.register_shared_queue(&name);
        self.metrics = Metrics::define();
        self.set_tick_period(tick_period(&settings));
        self.settings = Some(Rc::new(settings));
        true
    }

    fn on_tick(&mut self) {
        self.drain();
        self.pump();
        self.finish_if_flushed();
    }

    fn on_queue_ready(&mut self, _queue_id: u32) {
        self.drain();
        self.pump();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            settings: self.settings.clone()?,
            queue: self.queue,
            request_size: 0,
            response_size: 0,
            request_left: None,
            response_arrived: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    settings: Rc<Settings>,
    queue: u32,
    /// Request body bytes seen.
    request_size: u64,
    /// Response body bytes seen.
    response_size: u64,
    /// When the end of the request went past this plugin (nanoseconds since the epoch).
    request_left: Option<i64>,
    /// When the response headers reached this plugin.
    response_arrived: Option<i64>,
}

impl Context for Stream {}

/// A property as text; `None` when the host has no value (never a panic: the string and
/// property helpers of the proxy-wasm crate unwrap statuses and UTF-8).
fn text_property(path: &[&str]) -> Option<String> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// A property in Envoy's int64 encoding (8 bytes, little endian).
fn int_property(path: &[&str]) -> Option<i64> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    Some(i64::from_le_bytes(bytes.as_slice().try_into().ok()?))
}

impl Stream {
    fn now(&self) -> i64 {
        unix_nanos(self.get_current_time())
    }

    /// The line for this request, from the gateway's properties and what this plugin saw.
    fn line(&self) -> LogLine {
        let now = self.now();
        let started = int_property(&["request", "time"]);
        let trusted = &self.settings.config.trusted_proxies;
        // The headers are read only when a forwarded address may be believed.
        let request_headers = if trusted.is_empty() {
            Vec::new()
        } else {
            self.get_http_request_headers_bytes()
        };
        let client_ip = text_property(&["source", "address"])
            .as_deref()
            .and_then(http::parse_address)
            .map(|peer| {
                let forwarded: Vec<String> = request_headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .collect();
                let forwarded: Vec<&str> = forwarded.iter().map(String::as_str).collect();
                http::resolve_client_ip(peer, &forwarded, trusted).to_string()
            });
        let size = |path: &[&str]| int_property(path).and_then(|n| u64::try_from(n).ok());
        LogLine {
            started_at: started.map(line::rfc3339),
            finished_at: Some(line::rfc3339(now)),
            request_id: text_property(&["request", "id"]),
            client_ip,
            method: text_property(&["request", "method"]),
            path: text_property(&["request", "path"]),
            route: text_property(&["xds", "route_name"]),
            upstream: text_property(&["xds", "cluster_name"]),
            status: int_property(&["response", "code"]),
            // What this plugin counted, or what the host recorded when that is more (a body
            // that did not pass through here).
            request_size: self
                .request_size
                .max(size(&["request", "size"]).unwrap_or(0)),
            response_size: self
                .response_size
                .max(size(&["response", "size"]).unwrap_or(0)),
            duration_ms: started.and_then(|s| line::millis_between(s, now)),
            upstream_duration_ms: self
                .request_left
                .zip(self.response_arrived)
                .and_then(|(left, back)| line::millis_between(left, back)),
            user_agent: text_property(&["request", "useragent"]),
            consumer_id: consumer::get(self).map(|c| c.id),
        }
    }
}

// The callbacks implemented below, and only those, are called (see `barbacane_sdk::callbacks`).
barbacane_sdk::stream_callbacks!(
    request_headers,
    request_body,
    request_trailers,
    response_headers,
    response_body,
    log
);

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.request_left = Some(self.now());
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.request_size = self.request_size.saturating_add(body_size as u64);
        if end_of_stream {
            self.request_left = Some(self.now());
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.request_left = Some(self.now());
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.response_arrived.is_none() {
            self.response_arrived = Some(self.now());
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.response_size = self.response_size.saturating_add(body_size as u64);
        Action::Continue
    }

    fn on_log(&mut self) {
        let line = self.line().to_json();
        if let Err(status) = self.enqueue_shared_queue(self.queue, Some(&line)) {
            // Only an unknown queue fails; the line is lost, the request is not affected.
            log::warn!("http-log: cannot queue a log line ({status:?})");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    #[test]
    fn queue_names_differ_by_configuration() {
        let a = queue_name(br#"{"upstream": "a"}"#);
        assert_eq!(a, queue_name(br#"{"upstream": "a"}"#));
        assert_ne!(a, queue_name(br#"{"upstream": "b"}"#));
        assert!(a.starts_with("http-log/") && a.len() == 25, "{a}");
    }

    #[test]
    fn ticks_follow_the_flush_interval_and_the_backoff() {
        let settings = |json: &str| Settings::from_json(Some(json.as_bytes().to_vec())).unwrap();
        assert_eq!(
            tick_period(&settings(r#"{"upstream": "l"}"#)),
            Duration::from_millis(500)
        );
        assert_eq!(
            tick_period(&settings(
                r#"{"upstream": "l", "flush_interval_ms": 60000, "retry_backoff_ms": 5000}"#
            )),
            Duration::from_secs(1)
        );
        assert_eq!(
            tick_period(&settings(
                r#"{"upstream": "l", "flush_interval_ms": 10, "retry_backoff_ms": 1}"#
            )),
            Duration::from_millis(10)
        );
        assert_eq!(
            tick_period(&settings(
                r#"{"upstream": "l", "flush_interval_ms": 200, "retry_backoff_ms": 50}"#
            )),
            Duration::from_millis(50)
        );
    }
}

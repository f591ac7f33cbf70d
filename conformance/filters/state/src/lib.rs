//! Conformance filter `state`: counts requests and ticks in shared data, passes request paths
//! through a shared queue, and keeps metrics.
//!
//! Configuration (JSON, all optional; absent = `{}`): `{"tick_ms": 0, "queue": "events"}`. An
//! invalid configuration fails `on_configure` (logged at error).
//!
//! "CAS-add n to key k" below means: `get_shared_data(k)`, parse the value as a decimal `u64`
//! (absent, empty or unparsable = 0), `set_shared_data(k, Some(<sum as decimal>), <cas from the
//! get>)`, retried on `CasMismatch` (after 1000 mismatches it logs at error and yields 0).
//!
//! Root context:
//! * `on_configure`: registers the shared queue named `queue` (the plugin configuration is not
//!   readable in `on_vm_start`, so registration happens here, every time it is configured);
//!   defines the metrics counter `conformance_requests_total`, gauge `conformance_inflight`,
//!   histogram `conformance_path_length` and counter `conformance_ticks_total`; if `tick_ms > 0`
//!   sets the tick period to `tick_ms` milliseconds.
//! * `on_tick`: CAS-adds 1 to `ticks`; increments `conformance_ticks_total` by 1.
//! * `on_queue_ready(queue_id)`: dequeues until the queue is empty and CAS-adds the number of
//!   items dequeued to `dequeued` (even when that number is 0).
//!
//! HTTP context:
//! * `on_http_request_headers`: CAS-adds 1 to `hits` and remembers the new value; increments
//!   `conformance_requests_total` by 1 and `conformance_inflight` by 1; records the length in bytes
//!   of `:path` in `conformance_path_length`; resolves the queue (`resolve_shared_queue("",
//!   queue)`) and enqueues `:path` (`""` if absent) on it. Continue.
//! * `on_http_response_headers`: sets response headers `x-hits` (the value this request's CAS-add
//!   produced), `x-ticks` and `x-dequeued` (the current shared values, `0` when absent),
//!   `x-requests-metric` (`get_metric(conformance_requests_total)`, or `error:<Status>` if that
//!   fails); increments `conformance_inflight` by -1. Continue.
//!
//! Failing metric and queue calls are logged at error and otherwise ignored.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    tick_ms: u64,
    queue: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tick_ms: 0,
            queue: String::from("events"),
        }
    }
}

#[derive(Clone, Copy)]
struct Metrics {
    requests: u32,
    inflight: u32,
    path_length: u32,
    ticks: u32,
}

impl Metrics {
    fn define() -> Result<Metrics, Status> {
        Ok(Metrics {
            requests: hostcalls::define_metric(MetricType::Counter, "conformance_requests_total")?,
            inflight: hostcalls::define_metric(MetricType::Gauge, "conformance_inflight")?,
            path_length: hostcalls::define_metric(
                MetricType::Histogram,
                "conformance_path_length",
            )?,
            ticks: hostcalls::define_metric(MetricType::Counter, "conformance_ticks_total")?,
        })
    }
}

fn increment(metric: u32, offset: i64) {
    if let Err(status) = hostcalls::increment_metric(metric, offset) {
        log::error!("increment_metric({metric}, {offset}) failed: {status:?}");
    }
}

/// The shared value of `key` as a number: absent, empty or unparsable = 0.
fn shared_number(value: Option<&[u8]>) -> u64 {
    value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Adds `delta` to the decimal counter in shared data `key` with a CAS retry loop; returns the
/// new value.
fn cas_add(key: &str, delta: u64) -> u64 {
    for _ in 0..1000 {
        let (value, cas) = hostcalls::get_shared_data(key).unwrap_or((None, None));
        let next = shared_number(value.as_deref()) + delta;
        match hostcalls::set_shared_data(key, Some(next.to_string().as_bytes()), cas) {
            Ok(()) => return next,
            Err(Status::CasMismatch) => continue,
            Err(status) => {
                log::error!("set_shared_data({key}) failed: {status:?}");
                return next;
            }
        }
    }
    log::error!("set_shared_data({key}) kept failing with CasMismatch");
    0
}

/// The current shared value of `key` as text, `0` when absent.
fn shared_text(key: &str) -> String {
    match hostcalls::get_shared_data(key) {
        Ok((Some(value), _)) => String::from_utf8_lossy(&value).into_owned(),
        _ => String::from("0"),
    }
}

#[derive(Default)]
struct Root {
    config: Option<Rc<Config>>,
    metrics: Option<Metrics>,
    queue_id: Option<u32>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let parsed = if bytes.iter().all(u8::is_ascii_whitespace) {
            Ok(Config::default())
        } else {
            serde_json::from_slice::<Config>(&bytes)
        };
        let config = match parsed {
            Ok(config) => config,
            Err(e) => {
                log::error!("bad configuration: {e}");
                return false;
            }
        };
        let queue_id = self.register_shared_queue(&config.queue);
        log::info!("registered queue {} as {queue_id}", config.queue);
        self.queue_id = Some(queue_id);
        match Metrics::define() {
            Ok(metrics) => self.metrics = Some(metrics),
            Err(status) => {
                log::error!("define_metric failed: {status:?}");
                return false;
            }
        }
        if config.tick_ms > 0 {
            self.set_tick_period(Duration::from_millis(config.tick_ms));
        }
        self.config = Some(Rc::new(config));
        true
    }

    fn on_tick(&mut self) {
        let ticks = cas_add("ticks", 1);
        log::debug!("tick {ticks}");
        if let Some(metrics) = self.metrics {
            increment(metrics.ticks, 1);
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let mut count = 0;
        loop {
            match self.dequeue_shared_queue(queue_id) {
                Ok(Some(_)) => count += 1,
                Ok(None) => break,
                Err(status) => {
                    log::error!("dequeue_shared_queue({queue_id}) failed: {status:?}");
                    break;
                }
            }
        }
        let total = cas_add("dequeued", count);
        log::info!("dequeued {count} from queue {queue_id} (total {total})");
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            config: self.config.clone()?,
            metrics: self.metrics?,
            hits: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    config: Rc<Config>,
    metrics: Metrics,
    hits: u64,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.hits = cas_add("hits", 1);
        increment(self.metrics.requests, 1);
        increment(self.metrics.inflight, 1);
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if let Err(status) = hostcalls::record_metric(self.metrics.path_length, path.len() as u64) {
            log::error!("record_metric failed: {status:?}");
        }
        match self.resolve_shared_queue("", &self.config.queue) {
            Some(queue_id) => {
                if let Err(status) = self.enqueue_shared_queue(queue_id, Some(path.as_bytes())) {
                    log::error!("enqueue_shared_queue({queue_id}) failed: {status:?}");
                }
            }
            None => log::error!("queue {} not found", self.config.queue),
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_response_header("x-hits", Some(&self.hits.to_string()));
        self.set_http_response_header("x-ticks", Some(&shared_text("ticks")));
        self.set_http_response_header("x-dequeued", Some(&shared_text("dequeued")));
        let requests = match hostcalls::get_metric(self.metrics.requests) {
            Ok(value) => value.to_string(),
            Err(status) => format!("error:{status:?}"),
        };
        self.set_http_response_header("x-requests-metric", Some(&requests));
        increment(self.metrics.inflight, -1);
        Action::Continue
    }
}

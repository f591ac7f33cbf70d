//! Conformance filter `hostcalls`: calls the host functions the other filters leave out and
//! reports each answer as an `x-hc-*` response header, so a test can assert it.
//!
//! Configuration (JSON, all optional; absent = `{}`): `{"upstream": "echo"}`, the upstream named
//! in the HTTP and gRPC calls below (it should exist, so that only the argument under test is
//! wrong). An invalid configuration fails `on_configure` (logged at error).
//!
//! Statuses are reported by name: `Ok`, or the `Debug` name of `proxy_wasm::types::Status` for an
//! `Err` (e.g. `InternalFailure`); a raw status read through an import the SDK does not wrap is
//! named the same way (`Status(N)` for a number the SDK has no name for). An absent value
//! (`None`) is reported as `<none>`. Calls marked *raw* go through `extern "C"` imports declared
//! here, because the SDK does not wrap them (`proxy_get_header_map_size`,
//! `proxy_get_buffer_status`, the ABI 0.1.0 calls, WASI stubs std never calls) or would panic on
//! an unexpected answer instead of showing it.
//!
//! Root context:
//! * `on_vm_start`: remembers the VM configuration (`get_vm_configuration`) and what the 0.1.0
//!   `proxy_get_configuration` (raw) returns there (the VM configuration too).
//! * `on_configure`: parses the configuration; remembers whether `proxy_get_configuration` (raw)
//!   now returns the plugin configuration, and the properties `plugin_name` and
//!   `plugin_root_id`.
//!
//! `on_http_request_headers` (all results are reported on the response):
//! * header maps: adds request header `x-dup: 1` and `x-dup: 2`, then reports
//!   `x-hc-dup` = the `x-dup` values in `get_http_request_headers` joined by `,` (`1,2`) and
//!   `x-hc-dup-first` = `get_http_request_header("x-dup")` (`1`, the first value);
//!   `set_http_request_header("x-dup", "3")` → `x-hc-replaced` = the values again (`3`);
//!   `remove_http_request_header("x-dup")` → `x-hc-removed` = how many are left (`0`);
//!   `x-hc-missing` = `get_http_request_header("x-hc-no-such-header")` (`<none>`).
//! * `proxy_get_header_map_size(HTTP_REQUEST_HEADERS)` (raw) → `x-hc-map-size` = the size (or
//!   the status when not `Ok`), `x-hc-map-size-bytes` = `true`/`false`: whether it equals the
//!   sum of the key and value lengths of `get_http_request_headers_bytes` (Envoy answers
//!   `HeaderMap::byteSize()`, that sum), `x-hc-map-size-serialized` = `true`/`false`: whether it
//!   equals the length of those pairs in the ABI's serialized map format.
//! * `set_http_request_headers_bytes(<all pairs> + ("x-hc-set-pairs", "yes"))`: the upstream
//!   sees `x-hc-set-pairs: yes` (and no `x-dup`).
//! * `x-hc-grpc-call` (`dispatch_grpc_call` to the upstream) and `x-hc-grpc-stream`
//!   (`open_grpc_stream`): `Ok` (both are cancelled at once); on a token that is neither,
//!   `x-hc-grpc-send` (`hostcalls::send_grpc_stream_message`), `x-hc-grpc-cancel`
//!   (`cancel_grpc_call`), `x-hc-grpc-close` (`close_grpc_stream`): `NotFound`. Envoy's foreign
//!   functions: `x-hc-foreign-compress` (`call_foreign_function("compress", "hello")`) = the
//!   outcome, `x-hc-foreign-compressed` = its bytes in hex, `x-hc-foreign-round-trip` = those bytes
//!   through `"uncompress"` (text, or the status), `x-hc-foreign-uncompress-garbage` =
//!   `"uncompress"` of `not zlib`; `x-hc-foreign-unknown` = `"hc_no_such_function"`.
//! * `x-hc-http-call-no-authority`: `dispatch_http_call(upstream, [:method GET, :path /])`, no
//!   `:authority` → `BadArgument`.
//! * `x-hc-effective-context-unknown`: `set_effective_context(999999)` → `BadArgument`;
//!   `x-hc-effective-context-self`: `set_effective_context(<own id>)` → `Ok`.
//! * TCP stream types in an HTTP context (raw): `x-hc-continue-downstream`,
//!   `x-hc-continue-upstream` (`proxy_continue_stream(2)`, `(3)`), `x-hc-close-downstream`,
//!   `x-hc-close-upstream` (`proxy_close_stream(2)`, `(3)`): `Ok` (the Rust SDK's
//!   `resume_*`/`close_*` panic on anything else); `x-hc-continue-stream-invalid`
//!   (`proxy_continue_stream(9)`): `BadArgument`.
//! * `x-hc-clear-route-cache`: the 0.1.0 `proxy_clear_route_cache` (raw) → `Ok`.
//! * clocks: `x-hc-time` = whether `get_current_time` is after 2020 and before 2100
//!   (`true`/`false`); `x-hc-wasi-time` = the same for `std::time::SystemTime::now()` (WASI
//!   `clock_time_get(REALTIME)`); `x-hc-time-agrees` = whether the two are less than 60 s apart;
//!   `x-hc-wasi-monotonic` = whether a second `Instant::now()` is not before the first.
//! * `x-hc-log-level`: `proxy_get_log_level` (raw) → the level's name (`Trace` … `Critical`),
//!   `invalid(N)` for a value outside 0–5, or the status when not `Ok`.
//! * WASI: `x-hc-wasi-hashmap` = whether a `std` `HashMap` (`RandomState`, seeded by
//!   `random_get`) stores and finds a key (`true`); `x-hc-wasi-random` = whether two 32-byte
//!   `random_get` (raw) draws both succeed, differ and are not all zero (`true`);
//!   `x-hc-wasi-random-over-limit` = the errno of `random_get` for 64 KiB + 1 bytes (`28`,
//!   INVAL, as Envoy); after `println!` and `eprintln!` (`fd_write` to 1 and 2, which std
//!   panics on if they fail) `x-hc-wasi-stdio` = `ok`; `x-hc-wasi-environ` =
//!   `std::env::vars_os().count()` (`0`), `x-hc-wasi-args` = `std::env::args_os().count()`
//!   (`0`); `x-hc-wasi-stubs` = the errnos of the stubs std does not call (raw), as
//!   `fd_read=52 fd_close=0 fd_seek=0 fd_fdstat_get=0/64 fd_fdstat_get(99)=8
//!   fd_fdstat_set_flags=52 fd_prestat_get=8 fd_prestat_dir_name=52 poll_oneoff=0/0
//!   sched_yield=0 clock_res_get=0/1 clock_time_get(cputime)=58` (for `fd_fdstat_get(1)` the
//!   rights base after the `/`, for `poll_oneoff` the event count written, for
//!   `clock_res_get(MONOTONIC)` the resolution); `x-hc-env-extras` =
//!   `emscripten_notify_memory_growth=ok` after calling that `env` helper (raw).
//! * a request with `x-hc-of: <path>` also gets what the end-of-stream and trailer callbacks of
//!   the earlier stream of request path `<path>` recorded (below), each `<none>` when nothing:
//!   `x-hc-ended` (e.g. `done log delete`), `x-hc-logged` (method, status, `request.size`,
//!   `response.size`, e.g. `POST 200 5 312`) and
//!   `x-hc-response-trailers` (e.g. `1:t`).
//! * a request with `x-hc-pause` calls the 0.1.0 `proxy_continue_request` (raw), reports
//!   `x-hc-continue-request` = its status and returns `Pause`: the deferred resume must still
//!   let the request through (as Envoy runs continue calls after the callback returns).
//!   Otherwise Continue.
//!
//! `on_http_request_body(size, eos)`: Pause until `eos`; then `x-hc-body-status` =
//! `proxy_get_buffer_status(HTTP_REQUEST_BODY)` (raw) as `<status> length=<n> flags=<n>`,
//! `x-hc-body-size` = `size`, `x-hc-body` = `get_http_request_body(0, size)`, `x-hc-body-slice` =
//! `get_http_request_body(1, 3)`, `x-hc-body-past-end` = `get_http_request_body(size + 10, 5)`
//! (`<none>`), `x-hc-body-status-invalid` = `proxy_get_buffer_status(99)` (`BadArgument`).
//! Continue.
//!
//! `on_http_request_trailers(n)`: `x-hc-request-trailers` = `<n>:<value of trailer
//! x-client-trailer>`; adds request trailer `x-hc-trailer: added`. Continue.
//!
//! `on_http_response_headers`: adds the root's findings (`x-hc-vm-config`,
//! `x-hc-legacy-vm-config`: text or `<none>`; `x-hc-legacy-config`: `match` when
//! `proxy_get_configuration` returned the plugin configuration, else what it returned;
//! `x-hc-plugin-name`, `x-hc-plugin-root-id`: text or `<none>`) and every header reported
//! above; with `x-hc-pause` on the request it also calls the 0.1.0 `proxy_continue_response`
//! (raw) and adds `x-hc-continue-response` = its status. Then
//! `set_http_response_headers_bytes(<all pairs> + ("x-hc-set-response-pairs", "yes"))`, and
//! `Pause` with `x-hc-pause` (the deferred resume must still let the response through),
//! otherwise Continue.
//!
//! `on_http_response_trailers(n)`: stores `<n>:<value of trailer x-upstream-trailer>` in shared
//! data `hc.response-trailers.<path>`; adds response trailer `x-hc-response-trailer: added`.
//! Continue.
//!
//! End of stream (`<path>` is the request `:path` read in `on_http_request_headers`): `on_done`,
//! `on_log` and dropping the context (`proxy_on_delete`) append `done`, `log` and `delete` to
//! shared data `hc.ended.<path>` (space-separated, in the order they ran); `on_done` returns
//! true; `on_log` also stores `<:method> <:status>`, each `<none>` when unreadable, in
//! `hc.logged.<path>`.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Imports declared here: what the SDK does not wrap, and what it would panic on.
mod raw {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        pub fn proxy_get_header_map_size(map_type: u32, size: *mut u32) -> u32;
        pub fn proxy_get_buffer_status(buffer_type: u32, length: *mut u32, flags: *mut u32) -> u32;
        pub fn proxy_get_log_level(level: *mut u32) -> u32;
        pub fn proxy_continue_stream(stream_type: u32) -> u32;
        pub fn proxy_close_stream(stream_type: u32) -> u32;
        pub fn proxy_get_configuration(data: *mut *mut u8, size: *mut usize) -> u32;
        pub fn proxy_continue_request() -> u32;
        pub fn proxy_continue_response() -> u32;
        pub fn proxy_clear_route_cache() -> u32;
        pub fn emscripten_notify_memory_growth(memory: u32);
    }

    // Same wasm signatures as the `wasi` crate std uses, so the imports merge.
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        pub fn random_get(buf: *mut u8, len: usize) -> i32;
        pub fn fd_read(fd: i32, iovs: *const u8, iovs_len: usize, nread: *mut usize) -> i32;
        pub fn fd_close(fd: i32) -> i32;
        pub fn fd_seek(fd: i32, offset: i64, whence: i32, new_offset: *mut u64) -> i32;
        pub fn fd_fdstat_get(fd: i32, stat: *mut u8) -> i32;
        pub fn fd_fdstat_set_flags(fd: i32, flags: i32) -> i32;
        pub fn fd_prestat_get(fd: i32, prestat: *mut u8) -> i32;
        pub fn fd_prestat_dir_name(fd: i32, path: *mut u8, len: usize) -> i32;
        pub fn poll_oneoff(
            subscriptions: *const u8,
            events: *mut u8,
            count: usize,
            nevents: *mut usize,
        ) -> i32;
        pub fn sched_yield() -> i32;
        pub fn clock_res_get(clock: i32, resolution: *mut u64) -> i32;
        pub fn clock_time_get(clock: i32, precision: i64, time: *mut u64) -> i32;
    }
}

/// Map, buffer and stream types on the wire.
const HTTP_REQUEST_HEADERS: u32 = 0;
const HTTP_REQUEST_BODY: u32 = 0;
const DOWNSTREAM: u32 = 2;
const UPSTREAM: u32 = 3;

/// Shared-data key prefixes, followed by the stream's request `:path`.
const ENDED: &str = "hc.ended.";
const LOGGED: &str = "hc.logged.";
const RESPONSE_TRAILERS: &str = "hc.response-trailers.";

/// 2020-01-01 and 2100-01-01, in seconds since the epoch.
const Y2020: u64 = 1_577_836_800;
const Y2100: u64 = 4_102_444_800;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    upstream: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            upstream: String::from("echo"),
        }
    }
}

/// A raw status by the name `proxy_wasm::types::Status` gives it (`Debug`), or `Status(N)`.
fn status_name(code: u32) -> String {
    let name = match code {
        0 => "Ok",
        1 => "NotFound",
        2 => "BadArgument",
        3 => "SerializationFailure",
        4 => "ParseFailure",
        5 => "BadExpression",
        6 => "InvalidMemoryAccess",
        7 => "Empty",
        8 => "CasMismatch",
        9 => "ResultMismatch",
        10 => "InternalFailure",
        11 => "BrokenConnection",
        12 => "Unimplemented",
        _ => return format!("Status({code})"),
    };
    String::from(name)
}

/// `Ok`, or the `Debug` name of the error status.
/// A gRPC token no call or stream has.
const UNKNOWN_TOKEN: u32 = 999_999;

fn outcome<T>(result: Result<T, Status>) -> String {
    match result {
        Ok(_) => String::from("Ok"),
        Err(status) => format!("{status:?}"),
    }
}

/// A value as text, `<none>` when absent.
fn text(value: Option<Vec<u8>>) -> String {
    value.map_or_else(
        || String::from("<none>"),
        |v| String::from_utf8_lossy(&v).into_owned(),
    )
}

/// The 0.1.0 `proxy_get_configuration`: `Err(status)` when not OK.
fn legacy_configuration() -> Result<Option<Vec<u8>>, u32> {
    let mut data = std::ptr::null_mut();
    let mut size = 0usize;
    let status = unsafe { raw::proxy_get_configuration(&mut data, &mut size) };
    if status != 0 {
        return Err(status);
    }
    if data.is_null() {
        return Ok(None);
    }
    // The host allocated it with `proxy_on_memory_allocate`, the SDK's `Vec` allocator, as it
    // does for every returned blob.
    Ok(Some(unsafe { Vec::from_raw_parts(data, size, size) }))
}

/// Appends ` word` to shared data `key` (compare-and-swap, retried).
fn cas_append(key: &str, word: &str) {
    for _ in 0..1000 {
        let (value, cas) = hostcalls::get_shared_data(key).unwrap_or((None, None));
        let mut next = value.unwrap_or_default();
        if !next.is_empty() {
            next.push(b' ');
        }
        next.extend_from_slice(word.as_bytes());
        match hostcalls::set_shared_data(key, Some(&next), cas) {
            Ok(()) => return,
            Err(Status::CasMismatch) => continue,
            Err(status) => {
                log::error!("set_shared_data({key}) failed: {status:?}");
                return;
            }
        }
    }
    log::error!("set_shared_data({key}) kept failing with CasMismatch");
}

/// Stores `value` in shared data `key`.
fn store(key: &str, value: &str) {
    if let Err(status) = hostcalls::set_shared_data(key, Some(value.as_bytes()), None) {
        log::error!("set_shared_data({key}) failed: {status:?}");
    }
}

/// Shared data `key` as text, `<none>` when absent.
fn stored(key: &str) -> String {
    text(
        hostcalls::get_shared_data(key)
            .ok()
            .and_then(|(value, _)| value),
    )
}

/// What the root context learned at start-up.
#[derive(Default, Clone)]
struct Startup {
    upstream: String,
    vm_config: String,
    legacy_vm_config: String,
    legacy_config: String,
    plugin_name: String,
    plugin_root_id: String,
}

#[derive(Default)]
struct Root {
    startup: Startup,
    shared: Option<Rc<Startup>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        self.startup.vm_config = text(self.get_vm_configuration());
        self.startup.legacy_vm_config = match legacy_configuration() {
            Ok(value) => text(value),
            Err(status) => status_name(status),
        };
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
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
        let mut startup = self.startup.clone();
        startup.upstream = config.upstream;
        startup.legacy_config = match legacy_configuration() {
            Ok(value) if value.clone().unwrap_or_default() == bytes => String::from("match"),
            Ok(value) => text(value),
            Err(status) => status_name(status),
        };
        startup.plugin_name = text(self.get_property(vec!["plugin_name"]));
        startup.plugin_root_id = text(self.get_property(vec!["plugin_root_id"]));
        log::info!(
            "hostcalls configured: plugin {} root id {}",
            startup.plugin_name,
            startup.plugin_root_id
        );
        self.shared = Some(Rc::new(startup));
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            id: context_id,
            startup: self.shared.clone()?,
            report: Vec::new(),
            pause: false,
            path: String::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    id: u32,
    startup: Rc<Startup>,
    /// Response headers to add: `(x-hc-<name>, value)`.
    report: Vec<(String, String)>,
    pause: bool,
    /// The request `:path`, the key of this stream's records.
    path: String,
}

impl Stream {
    fn report(&mut self, name: &str, value: impl ToString) {
        self.report
            .push((format!("x-hc-{name}"), value.to_string()));
    }

    /// Every value of request header `name`, in order.
    fn request_values(&self, name: &str) -> Vec<String> {
        self.get_http_request_headers()
            .into_iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect()
    }

    fn header_maps(&mut self) {
        self.add_http_request_header("x-dup", "1");
        self.add_http_request_header("x-dup", "2");
        self.report("dup", self.request_values("x-dup").join(","));
        let first = self
            .get_http_request_header("x-dup")
            .map(String::into_bytes);
        self.report("dup-first", text(first));
        self.set_http_request_header("x-dup", Some("3"));
        self.report("replaced", self.request_values("x-dup").join(","));
        self.remove_http_request_header("x-dup");
        self.report("removed", self.request_values("x-dup").len());
        let missing = self
            .get_http_request_header("x-hc-no-such-header")
            .map(String::into_bytes);
        self.report("missing", text(missing));

        let pairs = self.get_http_request_headers_bytes();
        let byte_size: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        let serialized = 4 + pairs
            .iter()
            .map(|(k, v)| 8 + k.len() + 1 + v.len() + 1)
            .sum::<usize>();
        let mut size = 0u32;
        let status = unsafe { raw::proxy_get_header_map_size(HTTP_REQUEST_HEADERS, &mut size) };
        if status == 0 {
            self.report("map-size", size);
            self.report("map-size-bytes", size as usize == byte_size);
            self.report("map-size-serialized", size as usize == serialized);
        } else {
            self.report("map-size", status_name(status));
        }

        let mut all: Vec<(&str, &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        all.push(("x-hc-set-pairs", b"yes"));
        self.set_http_request_headers_bytes(all);
    }

    fn unserved_calls(&mut self) {
        let upstream = self.startup.upstream.clone();
        let timeout = Duration::from_secs(1);
        let call = self.dispatch_grpc_call(
            &upstream,
            "hc.Service",
            "Method",
            vec![],
            Some(b"message"),
            timeout,
        );
        let stream = self.open_grpc_stream(&upstream, "hc.Service", "Method", vec![]);
        self.report("grpc-call", outcome(call));
        self.report("grpc-stream", outcome(stream));
        self.report(
            "grpc-send",
            outcome(hostcalls::send_grpc_stream_message(
                UNKNOWN_TOKEN,
                Some(b"message"),
                false,
            )),
        );
        self.report(
            "grpc-cancel",
            outcome(hostcalls::cancel_grpc_call(UNKNOWN_TOKEN)),
        );
        self.report(
            "grpc-close",
            outcome(hostcalls::close_grpc_stream(UNKNOWN_TOKEN)),
        );
        // No answer is wanted: cancelled before the host starts them.
        for token in [call, stream].into_iter().flatten() {
            self.cancel_grpc_call(token);
        }
        let compressed = self.call_foreign_function("compress", Some(b"hello"));
        let (round_trip, hex) = match &compressed {
            Ok(Some(bytes)) => (
                match self.call_foreign_function("uncompress", Some(bytes)) {
                    Ok(value) => text(value),
                    Err(status) => format!("{status:?}"),
                },
                bytes.iter().map(|b| format!("{b:02x}")).collect(),
            ),
            other => (format!("{other:?}"), String::new()),
        };
        self.report("foreign-compress", outcome(compressed));
        self.report("foreign-compressed", hex);
        self.report("foreign-round-trip", round_trip);
        self.report(
            "foreign-uncompress-garbage",
            outcome(self.call_foreign_function("uncompress", Some(b"not zlib"))),
        );
        self.report(
            "foreign-unknown",
            outcome(self.call_foreign_function("hc_no_such_function", None)),
        );
        self.report(
            "http-call-no-authority",
            outcome(self.dispatch_http_call(
                &upstream,
                vec![(":method", "GET"), (":path", "/")],
                None,
                vec![],
                timeout,
            )),
        );
        self.report(
            "effective-context-unknown",
            outcome(hostcalls::set_effective_context(999_999)),
        );
        self.report(
            "effective-context-self",
            outcome(hostcalls::set_effective_context(self.id)),
        );
    }

    fn stream_types(&mut self) {
        let (continue_down, continue_up, close_down, close_up, invalid) = unsafe {
            (
                raw::proxy_continue_stream(DOWNSTREAM),
                raw::proxy_continue_stream(UPSTREAM),
                raw::proxy_close_stream(DOWNSTREAM),
                raw::proxy_close_stream(UPSTREAM),
                raw::proxy_continue_stream(9),
            )
        };
        self.report("continue-downstream", status_name(continue_down));
        self.report("continue-upstream", status_name(continue_up));
        self.report("close-downstream", status_name(close_down));
        self.report("close-upstream", status_name(close_up));
        self.report("continue-stream-invalid", status_name(invalid));
        let status = unsafe { raw::proxy_clear_route_cache() };
        self.report("clear-route-cache", status_name(status));
    }

    fn clocks(&mut self) {
        let sane = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .is_ok_and(|d| (Y2020..Y2100).contains(&d.as_secs()))
        };
        let host = self.get_current_time();
        let wasi = SystemTime::now();
        self.report("time", sane(host));
        self.report("wasi-time", sane(wasi));
        let apart = wasi.duration_since(host).unwrap_or_else(|e| e.duration());
        self.report("time-agrees", apart < Duration::from_secs(60));
        let start = Instant::now();
        let later = Instant::now();
        self.report("wasi-monotonic", later >= start);

        let mut level = u32::MAX;
        let status = unsafe { raw::proxy_get_log_level(&mut level) };
        let level = match (status, level) {
            (0, 0) => String::from("Trace"),
            (0, 1) => String::from("Debug"),
            (0, 2) => String::from("Info"),
            (0, 3) => String::from("Warn"),
            (0, 4) => String::from("Error"),
            (0, 5) => String::from("Critical"),
            (0, other) => format!("invalid({other})"),
            (status, _) => status_name(status),
        };
        self.report("log-level", level);
    }

    fn wasi(&mut self) {
        let mut map = HashMap::new();
        map.insert(String::from("key"), 1u32);
        self.report("wasi-hashmap", map.get("key") == Some(&1));

        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        let errnos = unsafe {
            (
                raw::random_get(a.as_mut_ptr(), a.len()),
                raw::random_get(b.as_mut_ptr(), b.len()),
            )
        };
        self.report("wasi-random", errnos == (0, 0) && a != b && a != [0u8; 32]);
        let mut big = vec![0u8; 64 * 1024 + 1];
        let errno = unsafe { raw::random_get(big.as_mut_ptr(), big.len()) };
        self.report("wasi-random-over-limit", errno);

        println!("hostcalls: a line on stdout");
        eprintln!("hostcalls: a line on stderr");
        self.report("wasi-stdio", "ok");
        self.report("wasi-environ", std::env::vars_os().count());
        self.report("wasi-args", std::env::args_os().count());

        let stubs = unsafe {
            let mut count = 0usize;
            let fd_read = raw::fd_read(0, std::ptr::null(), 0, &mut count);
            let fd_close = raw::fd_close(99);
            let mut offset = 0u64;
            let fd_seek = raw::fd_seek(1, 0, 0, &mut offset);
            let mut stat = [0u8; 24];
            let fdstat = raw::fd_fdstat_get(1, stat.as_mut_ptr());
            let mut rights = [0u8; 8];
            rights.copy_from_slice(&stat[8..16]);
            let rights = u64::from_le_bytes(rights);
            let fdstat_bad = raw::fd_fdstat_get(99, stat.as_mut_ptr());
            let set_flags = raw::fd_fdstat_set_flags(1, 0);
            let mut prestat = [0u8; 8];
            let prestat_get = raw::fd_prestat_get(3, prestat.as_mut_ptr());
            let mut name = [0u8; 8];
            let dir_name = raw::fd_prestat_dir_name(3, name.as_mut_ptr(), name.len());
            let subscription = [0u8; 48];
            let mut event = [0u8; 32];
            let mut events = usize::MAX;
            let poll = raw::poll_oneoff(subscription.as_ptr(), event.as_mut_ptr(), 1, &mut events);
            let sched = raw::sched_yield();
            let mut resolution = 0u64;
            let res = raw::clock_res_get(1, &mut resolution);
            let mut time = 0u64;
            let cputime = raw::clock_time_get(2, 1, &mut time);
            format!(
                "fd_read={fd_read} fd_close={fd_close} fd_seek={fd_seek} \
                 fd_fdstat_get={fdstat}/{rights} fd_fdstat_get(99)={fdstat_bad} \
                 fd_fdstat_set_flags={set_flags} fd_prestat_get={prestat_get} \
                 fd_prestat_dir_name={dir_name} poll_oneoff={poll}/{events} \
                 sched_yield={sched} clock_res_get={res}/{resolution} \
                 clock_time_get(cputime)={cputime}"
            )
        };
        self.report("wasi-stubs", stubs);
        unsafe { raw::emscripten_notify_memory_growth(0) };
        self.report("env-extras", "emscripten_notify_memory_growth=ok");
    }
}

impl Context for Stream {
    fn on_done(&mut self) -> bool {
        cas_append(&format!("{ENDED}{}", self.path), "done");
        true
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.pause = self.get_http_request_header("x-hc-pause").is_some();
        self.path = self.get_http_request_header(":path").unwrap_or_default();
        if let Some(path) = self.get_http_request_header("x-hc-of") {
            self.report("ended", stored(&format!("{ENDED}{path}")));
            self.report("logged", stored(&format!("{LOGGED}{path}")));
            self.report(
                "response-trailers",
                stored(&format!("{RESPONSE_TRAILERS}{path}")),
            );
        }
        self.header_maps();
        self.unserved_calls();
        self.stream_types();
        self.clocks();
        self.wasi();
        if self.pause {
            let status = unsafe { raw::proxy_continue_request() };
            self.report("continue-request", status_name(status));
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let (mut length, mut flags) = (u32::MAX, u32::MAX);
        let status =
            unsafe { raw::proxy_get_buffer_status(HTTP_REQUEST_BODY, &mut length, &mut flags) };
        self.report(
            "body-status",
            format!("{} length={length} flags={flags}", status_name(status)),
        );
        self.report("body-size", body_size);
        self.report("body", text(self.get_http_request_body(0, body_size)));
        self.report("body-slice", text(self.get_http_request_body(1, 3)));
        self.report(
            "body-past-end",
            text(self.get_http_request_body(body_size + 10, 5)),
        );
        let status = unsafe { raw::proxy_get_buffer_status(99, &mut length, &mut flags) };
        self.report("body-status-invalid", status_name(status));
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        let seen = self
            .get_http_request_trailer("x-client-trailer")
            .map(String::into_bytes);
        self.report("request-trailers", format!("{num_trailers}:{}", text(seen)));
        self.add_http_request_trailer("x-hc-trailer", "added");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let startup = Rc::clone(&self.startup);
        self.report("vm-config", &startup.vm_config);
        self.report("legacy-vm-config", &startup.legacy_vm_config);
        self.report("legacy-config", &startup.legacy_config);
        self.report("plugin-name", &startup.plugin_name);
        self.report("plugin-root-id", &startup.plugin_root_id);
        if self.pause {
            let status = unsafe { raw::proxy_continue_response() };
            self.report("continue-response", status_name(status));
        }
        for (name, value) in std::mem::take(&mut self.report) {
            self.add_http_response_header(&name, &value);
        }
        let pairs = self.get_http_response_headers_bytes();
        let mut all: Vec<(&str, &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        all.push(("x-hc-set-response-pairs", b"yes"));
        self.set_http_response_headers_bytes(all);
        if self.pause {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        let seen = self
            .get_http_response_trailer("x-upstream-trailer")
            .map(String::into_bytes);
        store(
            &format!("{RESPONSE_TRAILERS}{}", self.path),
            &format!("{num_trailers}:{}", text(seen)),
        );
        self.add_http_response_trailer("x-hc-response-trailer", "added");
        Action::Continue
    }

    fn on_log(&mut self) {
        cas_append(&format!("{ENDED}{}", self.path), "log");
        let read = |value: Option<String>| value.unwrap_or_else(|| String::from("<none>"));
        let method = read(self.get_http_request_header(":method"));
        let status = read(self.get_http_response_header(":status"));
        // Body sizes: 8-byte little-endian int64 properties, known once the bodies have passed.
        let size = |path: Vec<&str>| {
            self.get_property(path)
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map_or_else(
                    || String::from("<none>"),
                    |b| i64::from_le_bytes(b).to_string(),
                )
        };
        let request_size = size(vec!["request", "size"]);
        let response_size = size(vec!["response", "size"]);
        store(
            &format!("{LOGGED}{}", self.path),
            &format!("{method} {status} {request_size} {response_size}"),
        );
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        cas_append(&format!("{ENDED}{}", self.path), "delete");
    }
}

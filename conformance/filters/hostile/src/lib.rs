//! Conformance filter `hostile`: behaves as a hostile or broken module would. It calls every
//! host function it imports — the 43 `env` functions of the ABI, Emscripten's two helpers and
//! WASI preview1 — with arguments drawn at random: pointers and lengths inside its memory,
//! across its end and far past it, unknown map, buffer, stream, metric and log kinds, negative
//! numbers, well-formed and torn header maps, property paths and I/O vectors. The host must
//! answer every call with a status (or a trap, which the plugin's failure policy handles) and
//! never fail itself.
//!
//! A request carrying `x-hostile-seed: N` (a decimal u64) unleashes a storm of
//! `x-hostile-calls` calls (default 64) in each of its callbacks: request headers and body,
//! response headers and body, and `on_log`; the seed makes a storm repeatable. Storms may set a
//! tick period (the host function is one of those called); each tick of the root context then
//! makes a storm of 8 calls. The response carries `x-hostile-made: K`, the calls made before its
//! headers left, so that a test can tell the storms ran.
//!
//! A request carrying `x-hostile-hoard: WHAT` instead hands the host `x-hostile-times` (default
//! 256) × 4 MiB of one kind of thing to hold (see [`hoard`]); the response carries
//! `x-hostile-hoarded: K`, how many of those calls were OK. A request carrying
//! `x-hostile-spin` (any value) loops forever in its request headers callback; one carrying
//! `x-hostile-busy: MS` keeps it busy for MS milliseconds (by the host's clock), then passes. A
//! request with none of these headers passes untouched.
//!
//! With the plugin configuration `spin-ticks`, `on_configure` sets a 10 ms tick period and every
//! tick loops forever instead of storming.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::sync::atomic::{AtomicU64, Ordering};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { spin_ticks: false }) });
}}

/// Every import, with the wasm types of the ABI (pointers and sizes are `i32` on wasm32), so
/// that any bit pattern can be passed. Same wasm signatures as the SDK's and std's declarations,
/// so the imports merge.
mod raw {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        pub fn proxy_log(level: i32, ptr: i32, len: i32) -> i32;
        pub fn proxy_get_log_level(out: i32) -> i32;
        pub fn proxy_get_current_time_nanoseconds(out: i32) -> i32;
        pub fn proxy_set_tick_period_milliseconds(period: i32) -> i32;
        pub fn proxy_set_effective_context(context: i32) -> i32;
        pub fn proxy_done() -> i32;
        pub fn proxy_get_buffer_bytes(
            kind: i32,
            start: i32,
            max: i32,
            ptr_out: i32,
            len_out: i32,
        ) -> i32;
        pub fn proxy_set_buffer_bytes(kind: i32, start: i32, size: i32, ptr: i32, len: i32) -> i32;
        pub fn proxy_get_buffer_status(kind: i32, len_out: i32, flags_out: i32) -> i32;
        pub fn proxy_get_configuration(ptr_out: i32, len_out: i32) -> i32;
        pub fn proxy_get_header_map_pairs(map: i32, ptr_out: i32, len_out: i32) -> i32;
        pub fn proxy_get_header_map_size(map: i32, out: i32) -> i32;
        pub fn proxy_set_header_map_pairs(map: i32, ptr: i32, len: i32) -> i32;
        pub fn proxy_get_header_map_value(
            map: i32,
            kp: i32,
            kl: i32,
            ptr_out: i32,
            len_out: i32,
        ) -> i32;
        pub fn proxy_add_header_map_value(map: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> i32;
        pub fn proxy_replace_header_map_value(map: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> i32;
        pub fn proxy_remove_header_map_value(map: i32, kp: i32, kl: i32) -> i32;
        pub fn proxy_continue_stream(stream: i32) -> i32;
        pub fn proxy_close_stream(stream: i32) -> i32;
        pub fn proxy_continue_request() -> i32;
        pub fn proxy_continue_response() -> i32;
        pub fn proxy_clear_route_cache() -> i32;
        pub fn proxy_send_local_response(
            status: i32,
            dp: i32,
            dl: i32,
            bp: i32,
            bl: i32,
            hp: i32,
            hl: i32,
            grpc: i32,
        ) -> i32;
        pub fn proxy_get_status(code_out: i32, ptr_out: i32, len_out: i32) -> i32;
        pub fn proxy_http_call(
            up: i32,
            ul: i32,
            hp: i32,
            hl: i32,
            bp: i32,
            bl: i32,
            tp: i32,
            tl: i32,
            timeout: i32,
            token_out: i32,
        ) -> i32;
        pub fn proxy_grpc_call(
            tp: i32,
            tl: i32,
            sp: i32,
            sl: i32,
            mp: i32,
            ml: i32,
            mdp: i32,
            mdl: i32,
            msgp: i32,
            msgl: i32,
            timeout: i32,
            token_out: i32,
        ) -> i32;
        pub fn proxy_grpc_stream(
            tp: i32,
            tl: i32,
            sp: i32,
            sl: i32,
            mp: i32,
            ml: i32,
            mdp: i32,
            mdl: i32,
            token_out: i32,
        ) -> i32;
        pub fn proxy_grpc_send(token: i32, ptr: i32, len: i32, end: i32) -> i32;
        pub fn proxy_grpc_cancel(token: i32) -> i32;
        pub fn proxy_grpc_close(token: i32) -> i32;
        pub fn proxy_set_shared_data(kp: i32, kl: i32, vp: i32, vl: i32, cas: i32) -> i32;
        pub fn proxy_get_shared_data(
            kp: i32,
            kl: i32,
            ptr_out: i32,
            len_out: i32,
            cas_out: i32,
        ) -> i32;
        pub fn proxy_register_shared_queue(np: i32, nl: i32, id_out: i32) -> i32;
        pub fn proxy_resolve_shared_queue(vp: i32, vl: i32, np: i32, nl: i32, id_out: i32) -> i32;
        pub fn proxy_enqueue_shared_queue(id: i32, ptr: i32, len: i32) -> i32;
        pub fn proxy_dequeue_shared_queue(id: i32, ptr_out: i32, len_out: i32) -> i32;
        pub fn proxy_define_metric(kind: i32, np: i32, nl: i32, id_out: i32) -> i32;
        pub fn proxy_increment_metric(id: i32, delta: i64) -> i32;
        pub fn proxy_record_metric(id: i32, value: i64) -> i32;
        pub fn proxy_get_metric(id: i32, out: i32) -> i32;
        pub fn proxy_get_property(pp: i32, pl: i32, ptr_out: i32, len_out: i32) -> i32;
        pub fn proxy_set_property(pp: i32, pl: i32, vp: i32, vl: i32) -> i32;
        pub fn proxy_call_foreign_function(
            np: i32,
            nl: i32,
            ap: i32,
            al: i32,
            ptr_out: i32,
            len_out: i32,
        ) -> i32;
        pub fn emscripten_notify_memory_growth(memory: i32);
        pub fn pthread_equal(a: i32, b: i32) -> i32;
    }

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        pub fn args_sizes_get(count_out: i32, size_out: i32) -> i32;
        pub fn environ_sizes_get(count_out: i32, size_out: i32) -> i32;
        pub fn args_get(argv: i32, buf: i32) -> i32;
        pub fn environ_get(environ: i32, buf: i32) -> i32;
        pub fn clock_time_get(clock: i32, precision: i64, out: i32) -> i32;
        pub fn clock_res_get(clock: i32, out: i32) -> i32;
        pub fn fd_write(fd: i32, iovs: i32, count: i32, written_out: i32) -> i32;
        pub fn fd_read(fd: i32, iovs: i32, count: i32, read_out: i32) -> i32;
        pub fn fd_close(fd: i32) -> i32;
        pub fn fd_seek(fd: i32, offset: i64, whence: i32, out: i32) -> i32;
        pub fn fd_fdstat_get(fd: i32, out: i32) -> i32;
        pub fn fd_fdstat_set_flags(fd: i32, flags: i32) -> i32;
        pub fn fd_prestat_get(fd: i32, out: i32) -> i32;
        pub fn fd_prestat_dir_name(fd: i32, ptr: i32, len: i32) -> i32;
        pub fn poll_oneoff(subscriptions: i32, events: i32, count: i32, nevents_out: i32) -> i32;
        pub fn sched_yield() -> i32;
        pub fn random_get(ptr: i32, len: i32) -> i32;
        pub fn proc_exit(code: i32);
    }
}

/// How many imports [`Storm::call_one`] chooses from.
const IMPORTS: u32 = 63;

/// The seed of the next tick's storm: the last request's, then counted up.
static TICK_SEED: AtomicU64 = AtomicU64::new(1);

struct Root {
    spin_ticks: bool,
}

impl Context for Root {}

/// Runs until the host's deadline stops it.
fn spin() -> ! {
    loop {
        std::hint::spin_loop();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.spin_ticks = self.get_plugin_configuration().as_deref() == Some(b"spin-ticks");
        if self.spin_ticks {
            self.set_tick_period(std::time::Duration::from_millis(10));
        }
        true
    }

    fn on_tick(&mut self) {
        if self.spin_ticks {
            spin();
        }
        Storm::new(TICK_SEED.fetch_add(1, Ordering::Relaxed), 8).run();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            context: context_id,
            storm: None,
            hoard_body: None,
            hoarded: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    context: u32,
    /// Set when the request asked for storms.
    storm: Option<Storm>,
    /// How many times to hoard in the request body callback.
    hoard_body: Option<u32>,
    /// How many hoarding calls were OK, when the request asked for hoarding.
    hoarded: Option<u32>,
}

impl Stream {
    fn storm(&mut self) -> Action {
        if let Some(storm) = &mut self.storm {
            storm.run();
            // Back to this stream, which the storm may have switched away from.
            unsafe { raw::proxy_set_effective_context(self.context as i32) };
        }
        Action::Continue
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let number = |name: &str| {
            self.get_http_request_header(name)
                .and_then(|value| value.trim().parse::<u64>().ok())
        };
        if self.get_http_request_header("x-hostile-spin").is_some() {
            spin();
        }
        if let Some(ms) = number("x-hostile-busy") {
            let until = self.get_current_time() + std::time::Duration::from_millis(ms);
            while self.get_current_time() < until {
                std::hint::spin_loop();
            }
            return Action::Continue;
        }
        if let Some(what) = self.get_http_request_header("x-hostile-hoard") {
            let times = number("x-hostile-times").unwrap_or(256) as u32;
            if what == "body" {
                // A body buffer exists in the body callback only.
                self.hoard_body = Some(times);
            } else {
                self.hoarded = Some(hoard(&what, times));
            }
            return Action::Continue;
        }
        let Some(seed) = number("x-hostile-seed") else {
            return Action::Continue;
        };
        let calls = number("x-hostile-calls").unwrap_or(64) as u32;
        TICK_SEED.store(seed, Ordering::Relaxed);
        self.storm = Some(Storm::new(seed, calls));
        self.storm()
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if let Some(times) = self.hoard_body.take() {
            self.hoarded = Some(hoard("body", times));
        }
        self.storm()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let action = self.storm();
        if let Some(storm) = &self.storm {
            let made = storm.made.to_string();
            self.set_http_response_header("x-hostile-made", Some(&made));
        }
        if let Some(hoarded) = self.hoarded {
            self.set_http_response_header("x-hostile-hoarded", Some(&hoarded.to_string()));
        }
        action
    }

    fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.storm()
    }

    fn on_log(&mut self) {
        self.storm();
    }
}

/// How much one hoarding call hands the host.
const HOARD_CHUNK: usize = 4 << 20;

/// Hands the host `times` × 4 MiB of one kind, as a module that hoards would: `headers`
/// (request headers under new names), `property` (filter state under new names), `callout`
/// (bodies of HTTP calls to upstream `echo`), `grpc` (messages of gRPC calls to `echo`),
/// `queue` (items of one shared queue), `queue-names` and `metric-names` (queues and metrics
/// with 4 MiB names), `shared-data` (values under new keys), `log` (warnings), `body`
/// (appended to the request body) and `local-response` (bodies of local responses). Stops at
/// the first call that is not OK and returns how many were.
fn hoard(what: &str, times: u32) -> u32 {
    let mut chunk = vec![b'a'; HOARD_CHUNK];
    let (ptr, len) = (chunk.as_ptr() as i32, chunk.len() as i32);
    let text = |s: &str| (s.as_ptr() as i32, s.len() as i32);
    let map = serialized(&[(":method", "POST"), (":path", "/"), (":authority", "echo")]);
    let mut out = [0u32; 2];
    let out = out.as_mut_ptr() as i32;
    let queue = unsafe {
        let (name, name_len) = text("hoard");
        raw::proxy_register_shared_queue(name, name_len, out);
        *(out as *const u32) as i32
    };
    for i in 0..times {
        // A name of its own per call, at the chunk's start.
        let name = format!("hoard-{i:010}");
        chunk[..name.len()].copy_from_slice(name.as_bytes());
        let name = text(&name);
        let status = unsafe {
            match what {
                "headers" => raw::proxy_add_header_map_value(0, name.0, name.1, ptr, len),
                "property" => raw::proxy_set_property(name.0, name.1, ptr, len),
                "callout" => {
                    let (up, up_len) = text("echo");
                    let (m, m_len) = (map.as_ptr() as i32, map.len() as i32);
                    raw::proxy_http_call(up, up_len, m, m_len, ptr, len, 0, 0, 60_000, out)
                }
                "grpc" => {
                    let (up, up_len) = text("echo");
                    let (service, service_len) = text("hoard.Hoard");
                    let (method, method_len) = text("Hoard");
                    raw::proxy_grpc_call(
                        up,
                        up_len,
                        service,
                        service_len,
                        method,
                        method_len,
                        0,
                        0,
                        ptr,
                        len,
                        60_000,
                        out,
                    )
                }
                "queue" => raw::proxy_enqueue_shared_queue(queue, ptr, len),
                "queue-names" => raw::proxy_register_shared_queue(ptr, len, out),
                "metric-names" => raw::proxy_define_metric(0, ptr, len, out),
                "shared-data" => raw::proxy_set_shared_data(name.0, name.1, ptr, len, 0),
                "log" => raw::proxy_log(3, ptr, len),
                // Appended to the request body (in its callback).
                "body" => raw::proxy_set_buffer_bytes(0, i32::MAX, 0, ptr, len),
                "local-response" => raw::proxy_send_local_response(200, 0, 0, ptr, len, 0, 0, -1),
                _ => return 0,
            }
        };
        if status != 0 {
            return i;
        }
    }
    times
}

/// `pairs` in the ABI's map format.
fn serialized(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut map = (pairs.len() as u32).to_le_bytes().to_vec();
    for (key, value) in pairs {
        map.extend_from_slice(&(key.len() as u32).to_le_bytes());
        map.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        for text in [key, value] {
            map.extend_from_slice(text.as_bytes());
            map.push(0);
        }
    }
    map
}

/// xorshift64*: small, and the same sequence for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u32) -> u32 {
        ((self.next() >> 32) % u64::from(n)) as u32
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }
}

/// Where the well-formed inputs lie in the scratch buffer.
const MAP_AT: usize = 0;
const PATH_AT: usize = 1024;
const IOVS_AT: usize = 1536;
const WORDS_AT: usize = 2048;
const WORD_ROOM: usize = 64;
const SCRATCH: usize = 8192;
const OUT: usize = 512;

/// Names a host may know: map keys, property path segments, upstreams, queues, foreign
/// functions.
const WORDS: &[&str] = &[
    ":path",
    ":method",
    ":authority",
    ":status",
    "host",
    "content-length",
    "x-a",
    "x-b",
    "request",
    "response",
    "path",
    "headers",
    "code",
    "plugin_name",
    "plugin_root_id",
    "source",
    "address",
    "connection",
    "filter_state",
    "upstream",
    "echo",
    "compress",
    "uncompress",
    "hostile",
    "q",
    "",
    "\0",
    "é",
    "x\r\ny",
];

/// One callback's worth of random host calls.
struct Storm {
    rng: Rng,
    calls: u32,
    /// Calls made so far, over all the stream's callbacks.
    made: u32,
    /// What the calls read from: random bytes with well-formed inputs at known places.
    scratch: Vec<u8>,
    /// Where most calls write their results.
    out: Vec<u8>,
    map_len: usize,
    path_len: usize,
}

impl Storm {
    fn new(seed: u64, calls: u32) -> Storm {
        Storm {
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            calls,
            made: 0,
            scratch: vec![0; SCRATCH],
            out: vec![0; OUT],
            map_len: 0,
            path_len: 0,
        }
    }

    fn run(&mut self) {
        self.fill();
        for _ in 0..self.calls {
            self.call_one();
            self.made += 1;
        }
    }

    /// Random bytes, then a serialized header map, a property path, two I/O vectors and the
    /// words at their places.
    fn fill(&mut self) {
        for chunk in self.scratch.chunks_mut(8) {
            let bytes = self.rng.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        let entries: Vec<(&str, &str)> = (0..self.rng.below(5))
            .map(|_| (self.word(), self.word()))
            .collect();
        let map = serialized(&entries);
        self.map_len = map.len();
        self.scratch[MAP_AT..MAP_AT + map.len()].copy_from_slice(&map);
        let mut path = Vec::new();
        for i in 0..1 + self.rng.below(3) {
            if i > 0 {
                path.push(0);
            }
            path.extend_from_slice(self.word().as_bytes());
        }
        self.path_len = path.len();
        self.scratch[PATH_AT..PATH_AT + path.len()].copy_from_slice(&path);
        let base = self.scratch.as_ptr() as u32;
        for i in 0..2 {
            let at = IOVS_AT + 8 * i;
            let word = (WORDS_AT + WORD_ROOM * i) as u32;
            self.scratch[at..at + 4].copy_from_slice(&(base + word).to_le_bytes());
            self.scratch[at + 4..at + 8].copy_from_slice(&8u32.to_le_bytes());
        }
        for (i, word) in WORDS.iter().enumerate() {
            let at = WORDS_AT + WORD_ROOM * i;
            self.scratch[at..at + word.len()].copy_from_slice(word.as_bytes());
        }
    }

    /// Fills the scratch buffer with I/O vectors that each name the whole memory (a gigabyte
    /// in one `fd_write`) and returns how many; the storm's well-formed inputs are gone until
    /// the next callback's.
    fn whole_memory_vectors(&mut self) -> i32 {
        let end = (Self::memory_end() as u32).to_le_bytes();
        for iov in self.scratch.chunks_exact_mut(8) {
            iov[..4].copy_from_slice(&0u32.to_le_bytes());
            iov[4..].copy_from_slice(&end);
        }
        (SCRATCH / 8) as i32
    }

    fn word(&mut self) -> &'static str {
        WORDS[self.rng.below(WORDS.len() as u32) as usize]
    }

    /// The first byte past the module's memory.
    fn memory_end() -> i32 {
        (core::arch::wasm32::memory_size::<0>() * 65536) as i32
    }

    /// Any number: edges, the memory's end, or random bits.
    fn any(&mut self) -> i32 {
        match self.rng.below(8) {
            0 => 0,
            1 => 1,
            2 => -1,
            3 => i32::MIN,
            4 => i32::MAX,
            5 => Self::memory_end() - 1,
            6 => Self::memory_end(),
            _ => self.rng.next() as i32,
        }
    }

    /// A map, buffer, stream, metric, log or file kind: mostly small, sometimes anything.
    fn kind(&mut self) -> i32 {
        match self.rng.below(10) {
            0 => -1,
            1 => self.any(),
            2 => 10 + self.rng.below(90) as i32,
            _ => self.rng.below(10) as i32,
        }
    }

    /// Where the host writes a result: mostly the `out` area, sometimes anywhere.
    fn out(&mut self) -> i32 {
        match self.rng.below(20) {
            0 => 0,
            1 => Self::memory_end() - self.rng.below(8) as i32,
            2 => self.any(),
            _ => self.out.as_mut_ptr() as i32 + 8 * self.rng.below((OUT / 8) as u32) as i32,
        }
    }

    /// A pointer and a length to read from.
    fn input(&mut self) -> (i32, i32) {
        let base = self.scratch.as_ptr() as i32;
        match self.rng.below(12) {
            0 | 1 => (base + MAP_AT as i32, self.map_len as i32),
            // A torn map: its head promises more than the bytes hold.
            2 => (
                base + MAP_AT as i32,
                self.rng.below(self.map_len as u32 + 1) as i32,
            ),
            3 => (base + PATH_AT as i32, self.path_len as i32),
            4 | 5 => {
                let i = self.rng.below(WORDS.len() as u32) as usize;
                let at = base + (WORDS_AT + WORD_ROOM * i) as i32;
                (at, WORDS[i].len() as i32)
            }
            6 => {
                let start = self.rng.below(SCRATCH as u32);
                let len = self.rng.below(SCRATCH as u32 - start + 1);
                (base + start as i32, len as i32)
            }
            7 => (base, self.any()),
            8 => (0, self.rng.below(64) as i32),
            9 => (Self::memory_end() - self.rng.below(64) as i32, 64),
            _ => (self.any(), self.any()),
        }
    }

    fn call_one(&mut self) {
        let index = self.rng.below(IMPORTS);
        let (a, b, c) = (self.input(), self.input(), self.input());
        unsafe {
            match index {
                0 => raw::proxy_log(self.kind(), a.0, a.1),
                1 => raw::proxy_get_log_level(self.out()),
                2 => raw::proxy_get_current_time_nanoseconds(self.out()),
                3 => raw::proxy_set_tick_period_milliseconds(match self.rng.below(3) {
                    0 => 0,
                    1 => 1 + self.rng.below(200) as i32,
                    _ => self.any(),
                }),
                4 => raw::proxy_set_effective_context(match self.rng.below(3) {
                    0 => self.any(),
                    _ => self.rng.below(8) as i32,
                }),
                5 => raw::proxy_done(),
                6 => {
                    let (start, max) = (self.kind(), self.any());
                    raw::proxy_get_buffer_bytes(self.kind(), start, max, self.out(), self.out())
                }
                7 => {
                    let (start, size) = (self.kind(), self.kind());
                    raw::proxy_set_buffer_bytes(self.kind(), start, size, a.0, a.1)
                }
                8 => raw::proxy_get_buffer_status(self.kind(), self.out(), self.out()),
                9 => raw::proxy_get_configuration(self.out(), self.out()),
                10 => raw::proxy_get_header_map_pairs(self.kind(), self.out(), self.out()),
                11 => raw::proxy_get_header_map_size(self.kind(), self.out()),
                12 => raw::proxy_set_header_map_pairs(self.kind(), a.0, a.1),
                13 => {
                    raw::proxy_get_header_map_value(self.kind(), a.0, a.1, self.out(), self.out())
                }
                14 => raw::proxy_add_header_map_value(self.kind(), a.0, a.1, b.0, b.1),
                15 => raw::proxy_replace_header_map_value(self.kind(), a.0, a.1, b.0, b.1),
                16 => raw::proxy_remove_header_map_value(self.kind(), a.0, a.1),
                17 => raw::proxy_continue_stream(self.kind()),
                18 => raw::proxy_close_stream(self.kind()),
                19 => raw::proxy_continue_request(),
                20 => raw::proxy_continue_response(),
                21 => raw::proxy_clear_route_cache(),
                22 => {
                    let status = match self.rng.below(3) {
                        0 => self.any(),
                        _ => 100 + self.rng.below(500) as i32,
                    };
                    let grpc = self.kind();
                    raw::proxy_send_local_response(status, a.0, a.1, b.0, b.1, c.0, c.1, grpc)
                }
                23 => raw::proxy_get_status(self.out(), self.out(), self.out()),
                24 => {
                    let (trailers, timeout) = (self.input(), self.any());
                    raw::proxy_http_call(
                        a.0,
                        a.1,
                        b.0,
                        b.1,
                        c.0,
                        c.1,
                        trailers.0,
                        trailers.1,
                        timeout,
                        self.out(),
                    )
                }
                25 => {
                    let (metadata, message, timeout) = (self.input(), self.input(), self.any());
                    raw::proxy_grpc_call(
                        a.0,
                        a.1,
                        b.0,
                        b.1,
                        c.0,
                        c.1,
                        metadata.0,
                        metadata.1,
                        message.0,
                        message.1,
                        timeout,
                        self.out(),
                    )
                }
                26 => {
                    let metadata = self.input();
                    raw::proxy_grpc_stream(
                        a.0,
                        a.1,
                        b.0,
                        b.1,
                        c.0,
                        c.1,
                        metadata.0,
                        metadata.1,
                        self.out(),
                    )
                }
                27 => raw::proxy_grpc_send(self.kind(), a.0, a.1, self.kind()),
                28 => raw::proxy_grpc_cancel(self.kind()),
                29 => raw::proxy_grpc_close(self.kind()),
                30 => raw::proxy_set_shared_data(a.0, a.1, b.0, b.1, self.kind()),
                31 => raw::proxy_get_shared_data(a.0, a.1, self.out(), self.out(), self.out()),
                32 => raw::proxy_register_shared_queue(a.0, a.1, self.out()),
                33 => raw::proxy_resolve_shared_queue(a.0, a.1, b.0, b.1, self.out()),
                34 => raw::proxy_enqueue_shared_queue(self.kind(), a.0, a.1),
                35 => raw::proxy_dequeue_shared_queue(self.kind(), self.out(), self.out()),
                36 => raw::proxy_define_metric(self.kind(), a.0, a.1, self.out()),
                37 => raw::proxy_increment_metric(self.kind(), self.rng.next() as i64),
                38 => raw::proxy_record_metric(self.kind(), self.rng.next() as i64),
                39 => raw::proxy_get_metric(self.kind(), self.out()),
                40 => raw::proxy_get_property(a.0, a.1, self.out(), self.out()),
                41 => raw::proxy_set_property(a.0, a.1, b.0, b.1),
                42 => raw::proxy_call_foreign_function(a.0, a.1, b.0, b.1, self.out(), self.out()),
                43 => {
                    raw::emscripten_notify_memory_growth(self.kind());
                    0
                }
                44 => raw::pthread_equal(self.any(), self.any()),
                45 => raw::args_sizes_get(self.out(), self.out()),
                46 => raw::environ_sizes_get(self.out(), self.out()),
                47 => raw::args_get(self.out(), self.out()),
                48 => raw::environ_get(self.out(), self.out()),
                49 => raw::clock_time_get(self.kind(), self.rng.next() as i64, self.out()),
                50 => raw::clock_res_get(self.kind(), self.out()),
                51 => {
                    let base = self.scratch.as_mut_ptr() as i32;
                    let (iovs, count) = match self.rng.below(4) {
                        0 => (base + IOVS_AT as i32, self.rng.below(3) as i32),
                        1 => (base, self.whole_memory_vectors()),
                        _ => (a.0, self.kind()),
                    };
                    raw::fd_write(1 + self.rng.below(2) as i32, iovs, count, self.out())
                }
                52 => raw::fd_read(self.kind(), a.0, self.kind(), self.out()),
                53 => raw::fd_close(self.kind()),
                54 => raw::fd_seek(self.kind(), self.rng.next() as i64, self.kind(), self.out()),
                55 => raw::fd_fdstat_get(self.kind(), self.out()),
                56 => raw::fd_fdstat_set_flags(self.kind(), self.kind()),
                57 => raw::fd_prestat_get(self.kind(), self.out()),
                58 => raw::fd_prestat_dir_name(self.kind(), self.out(), self.kind()),
                59 => raw::poll_oneoff(a.0, self.out(), self.kind(), self.out()),
                60 => raw::sched_yield(),
                61 => {
                    // Into the scratch buffer: random bytes over the module's own heap would
                    // make most storms end in a trap of the module's making.
                    let len = match self.rng.below(4) {
                        0 => self.any(),
                        _ => self.rng.below(SCRATCH as u32) as i32,
                    };
                    raw::random_get(self.scratch.as_mut_ptr() as i32, len)
                }
                // Ends the module (a trap): rare, or storms would rarely get far.
                _ if self.rng.chance(5) => {
                    raw::proc_exit(self.any());
                    0
                }
                _ => raw::sched_yield(),
            };
        }
    }
}

//! Conformance filter `lifecycle`: logs every HTTP-context callback with its context id, and can
//! resume paused requests and finish contexts from the root's `on_tick`.
//!
//! Configuration (JSON, all optional; absent = `{}`): `{"resume_with": "none", "done_false":
//! false, "flush_upstream": null}`; `resume_with` is `none` or `tick`. An invalid configuration fails `on_configure`
//! (logged at error). If `resume_with` is `tick` or `done_false` is true, `on_configure` sets
//! the tick period to 10 ms.
//!
//! Log lines (info), `<id>` being the HTTP context id:
//! `create <id>` (context created), `request_headers <id> eos=<bool>`,
//! `request_body <id> size=<n> eos=<bool>`, `request_trailers <id>`, `response_headers <id>`,
//! `response_body <id> size=<n> eos=<bool>`, `response_trailers <id>`, `done <id>`,
//! `log <id>`, `delete <id>` (from `Drop`: the SDK drops the context in `proxy_on_delete`).
//!
//! * `on_http_request_headers`: with `resume_with: tick` it queues its id for the root and
//!   returns Pause; otherwise Continue.
//! * `on_http_response_headers`: sets response header `x-lifecycle-context: <id>`. Continue.
//! * `on_done`: returns true; with `done_false` it queues its id for the root and returns false.
//! * every other callback only logs (and continues).
//! * root `on_tick`: for each queued paused id, `proxy_set_effective_context(id)` then
//!   `proxy_continue_stream(HTTP_REQUEST)`, logging `resumed <id>`; then for each queued done id,
//!   `proxy_set_effective_context(id)` then `proxy_done()`, logging `proxy_done <id>`. Each id is
//!   handled once; when `proxy_set_effective_context` fails it logs
//!   `effective context <id> failed: <Status>` at error and skips that id.
//! * root `on_done` (the VM shuts down): logs `root done`; without `flush_upstream` returns true.
//!   With it, dispatches `GET /flush` (`:authority` `flush`, `x-requests: <streams created>`) to
//!   that upstream and returns false; the callout's answer logs `root flushed <status>` and calls
//!   `proxy_done`. Dropping the root (the SDK does in `proxy_on_delete`) logs `root delete`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default, Debug)]
#[serde(rename_all = "lowercase")]
enum ResumeWith {
    #[default]
    None,
    Tick,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default, deny_unknown_fields)]
struct Config {
    resume_with: ResumeWith,
    done_false: bool,
    flush_upstream: Option<String>,
}

type Pending = Rc<RefCell<Vec<u32>>>;

#[derive(Default)]
struct Root {
    config: Option<Config>,
    pending_resume: Pending,
    pending_done: Pending,
    streams_created: std::cell::Cell<u32>,
}

impl Drop for Root {
    fn drop(&mut self) {
        log::info!("root delete");
    }
}

/// Makes `id` the effective context; logs and returns false when the host refuses.
fn enter(id: u32) -> bool {
    match hostcalls::set_effective_context(id) {
        Ok(()) => true,
        Err(status) => {
            log::error!("effective context {id} failed: {status:?}");
            false
        }
    }
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        log::info!("root done");
        let Some(upstream) = self.config.as_ref().and_then(|c| c.flush_upstream.clone()) else {
            return true;
        };
        let requests = self.streams_created.get().to_string();
        let headers = vec![
            (":method", "GET"),
            (":path", "/flush"),
            (":authority", "flush"),
            ("x-requests", requests.as_str()),
        ];
        match self.dispatch_http_call(&upstream, headers, None, vec![], Duration::from_secs(1)) {
            Ok(_) => false,
            Err(status) => {
                log::error!("flush dispatch failed: {status:?}");
                true
            }
        }
    }

    fn on_http_call_response(&mut self, _token: u32, _headers: usize, _body: usize, _: usize) {
        let status = self.get_http_call_response_header(":status");
        log::info!("root flushed {}", status.unwrap_or_default());
        self.done();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let parsed = if bytes.iter().all(u8::is_ascii_whitespace) {
            Ok(Config::default())
        } else {
            serde_json::from_slice::<Config>(&bytes)
        };
        match parsed {
            Ok(config) => {
                log::info!(
                    "lifecycle resume_with={:?} done_false={}",
                    config.resume_with,
                    config.done_false
                );
                if config.resume_with == ResumeWith::Tick || config.done_false {
                    self.set_tick_period(Duration::from_millis(10));
                }
                self.config = Some(config);
                true
            }
            Err(e) => {
                log::error!("bad configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let resume = std::mem::take(&mut *self.pending_resume.borrow_mut());
        for id in resume {
            if enter(id) {
                hostcalls::resume_http_request().unwrap();
                log::info!("resumed {id}");
            }
        }
        let done = std::mem::take(&mut *self.pending_done.borrow_mut());
        for id in done {
            if enter(id) {
                hostcalls::done().unwrap();
                log::info!("proxy_done {id}");
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        log::info!("create {context_id}");
        self.streams_created.set(self.streams_created.get() + 1);
        Some(Box::new(Stream {
            id: context_id,
            config: self.config.clone()?,
            pending_resume: Rc::clone(&self.pending_resume),
            pending_done: Rc::clone(&self.pending_done),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    id: u32,
    config: Config,
    pending_resume: Pending,
    pending_done: Pending,
}

impl Context for Stream {
    fn on_done(&mut self) -> bool {
        log::info!("done {}", self.id);
        if self.config.done_false {
            self.pending_done.borrow_mut().push(self.id);
            return false;
        }
        true
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        log::info!("request_headers {} eos={end_of_stream}", self.id);
        if self.config.resume_with == ResumeWith::Tick {
            self.pending_resume.borrow_mut().push(self.id);
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        log::info!(
            "request_body {} size={body_size} eos={end_of_stream}",
            self.id
        );
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        log::info!("request_trailers {}", self.id);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        log::info!("response_headers {}", self.id);
        self.set_http_response_header("x-lifecycle-context", Some(&self.id.to_string()));
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        log::info!(
            "response_body {} size={body_size} eos={end_of_stream}",
            self.id
        );
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        log::info!("response_trailers {}", self.id);
        Action::Continue
    }

    fn on_log(&mut self) {
        log::info!("log {}", self.id);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        log::info!("delete {}", self.id);
    }
}

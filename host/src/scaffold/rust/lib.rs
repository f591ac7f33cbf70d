//! Plugin `{{name}}`: adds a configured header to every response. A Proxy-Wasm module (ABI
//! 0.2.1) built with the upstream `proxy-wasm` crate and `barbacane-sdk`: it runs in barbacane
//! and, unchanged, in Envoy.

use barbacane_sdk::config;
use barbacane_sdk::root::ConfiguredRoot;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, LogLevel};
use serde::Deserialize;
use std::rc::Rc;

/// The plugin configuration (checked against `schema.json` by `barbacane compile`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_header")]
    header: String,
    #[serde(default = "default_value")]
    value: String,
}

fn default_header() -> String {
    String::from("x-{{name}}")
}

fn default_value() -> String {
    String::from("hello")
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root()) });
}}

// Small allocations from free lists rather than dlmalloc (optional: see barbacane_sdk::allocator).
barbacane_sdk::allocator!();

/// The root context: `on_configure` parses the configuration into `Config` (a refusal is logged,
/// and `barbacane compile` quotes it), and each request gets a `Stream` sharing it. A plugin
/// with more per-VM state (timers, callouts) implements `RootContext` itself.
fn root() -> impl RootContext {
    ConfiguredRoot::new(config::parse::<Config>, |config| {
        Box::new(Stream {
            config: config.clone(),
        })
    })
}

struct Stream {
    config: Rc<Config>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_response_header(&self.config.header, Some(&self.config.value));
        Action::Continue
    }
}

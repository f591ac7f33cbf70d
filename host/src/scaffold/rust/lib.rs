//! Plugin `{{name}}`: adds a configured header to every response. A Proxy-Wasm module (ABI
//! 0.2.1) built with the upstream `proxy-wasm` crate and `barbacane-sdk`: it runs in barbacane
//! and, unchanged, in Envoy.

use barbacane_sdk::config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
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
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { config: None }) });
}}

// Small allocations from free lists rather than dlmalloc (optional: see barbacane_sdk::allocator).
barbacane_sdk::allocator!();

struct Root {
    config: Option<Rc<Config>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match config::parse::<Config>(self.get_plugin_configuration()) {
            Ok(config) => {
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                // `barbacane compile` quotes this line when it refuses the configuration.
                log::error!("{e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            config: self.config.clone()?,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
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

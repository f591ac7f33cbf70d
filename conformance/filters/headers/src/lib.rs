//! Conformance filter `headers`: its plugin configuration is `"name: value"`; it adds that header
//! to every request and `x-conformance: headers` to every response, and logs each step. A request
//! carrying `x-conformance-panic` makes it panic (the guest traps), to test the host's recovery.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    header: Option<(String, String)>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = self.get_plugin_configuration() else {
            log::error!("no configuration");
            return false;
        };
        let text = String::from_utf8_lossy(&config);
        match text.split_once(':') {
            Some((name, value)) if !name.trim().is_empty() => {
                self.header = Some((name.trim().to_string(), value.trim().to_string()));
                log::info!("configured header {}", name.trim());
                true
            }
            _ => {
                log::error!("configuration must be 'name: value', got {text:?}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            header: self.header.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    header: Option<(String, String)>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self
            .get_http_request_header("x-conformance-panic")
            .is_some()
        {
            panic!("asked to panic");
        }
        if let Some((name, value)) = &self.header {
            self.add_http_request_header(name, value);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_response_header("x-conformance", Some("headers"));
        Action::Continue
    }
}

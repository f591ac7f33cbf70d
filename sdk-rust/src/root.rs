//! [`ConfiguredRoot`]: the root context of a plugin whose only per-VM state is its parsed
//! configuration, the shape most gateway plugins have.
//!
//! `on_configure` parses the configuration (a refusal is logged at error level, which
//! `barbacane compile` quotes when it rejects the middleware) and each request's stream is made
//! from the shared result. A plugin with more per-VM state (timers, callouts, caches) writes its
//! own `RootContext`.

use crate::config::ConfigError;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;

/// A root context that parses the configuration into `C` and makes each stream from it:
///
/// ```ignore
/// fn root() -> impl RootContext {
///     ConfiguredRoot::new(config::parse::<Config>, |config| {
///         Box::new(Stream { config: config.clone() })
///     })
/// }
/// ```
///
/// `parse` and `new_stream` are closures rather than function pointers so that each request's
/// `new_stream` is inlined (an indirect call cost ~70 Wasm instructions per request).
pub struct ConfiguredRoot<C, P, S> {
    parse: P,
    new_stream: S,
    /// None until a configuration was accepted: no stream is made without one.
    config: Option<Rc<C>>,
}

impl<C, P, S> ConfiguredRoot<C, P, S>
where
    P: Fn(Option<Vec<u8>>) -> Result<C, ConfigError>,
    S: Fn(&Rc<C>) -> Box<dyn HttpContext>,
{
    /// `parse` turns the configuration's bytes (None when there is none) into `C`; `new_stream`
    /// makes one request's stream.
    pub fn new(parse: P, new_stream: S) -> ConfiguredRoot<C, P, S> {
        ConfiguredRoot {
            parse,
            new_stream,
            config: None,
        }
    }
}

impl<C, P, S> Context for ConfiguredRoot<C, P, S> {}

impl<C, P, S> RootContext for ConfiguredRoot<C, P, S>
where
    P: Fn(Option<Vec<u8>>) -> Result<C, ConfigError>,
    S: Fn(&Rc<C>) -> Box<dyn HttpContext>,
{
    fn on_configure(&mut self, _size: usize) -> bool {
        match (self.parse)(self.get_plugin_configuration()) {
            Ok(config) => {
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                // Logging cannot usefully fail here: the start-up is refused either way.
                let _ = proxy_wasm::hostcalls::log(LogLevel::Error, &e.to_string());
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.config.as_ref().map(&self.new_stream)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

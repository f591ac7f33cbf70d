//! Conformance filter `props`: reads properties and reports them as response headers, and
//! writes one property.
//!
//! Configuration (JSON, all optional; absent = `{}`): `{"properties": [{"path": ["request",
//! "path"], "type": "string"}, ...], "response_properties": [...], "log_properties": [...],
//! "set": {"path": ["my", "key"], "value": "v"}}`; `type` is one of `string`, `int`, `uint`, `bool`, `map`,
//! `bytes_len`. An invalid configuration fails `on_configure` (logged at error).
//!
//! * `on_http_request_headers`: for each listed property, `get_property(path)` formatted by
//!   `type`:
//!   * `string`: the bytes as UTF-8 (lossy);
//!   * `int` / `uint`: 8 bytes little-endian `i64` / `u64`, in decimal;
//!   * `bool`: `true` if byte 0 is non-zero, else `false`;
//!   * `map`: the entry count of the pair format (`u32` LE at offset 0), in decimal (`0` when
//!     fewer than 4 bytes);
//!   * `bytes_len`: the number of bytes, in decimal;
//!   * a value of the wrong size for `int`/`uint` (not 8 bytes) or `bool` (empty):
//!     `<invalid N bytes>`;
//!   * no value (`NotFound` or null): `<absent>`.
//!
//!   Each result is remembered under the header name `x-prop-<path segments joined by "-">`.
//!   Then, if `set` is configured, `set_property(set.path, Some(set.value))`. Continue.
//! * `on_http_response_headers`: adds every remembered header to the response, in
//!   configuration order, then one for each of `response_properties`, read now and formatted
//!   the same way; if `set` is configured also adds `x-prop-set` = `get_property(set.path)` as
//!   UTF-8 (lossy) or `<absent>`; then for each of `log_properties` adds `x-logged-<path
//!   segments joined by "-">` = the shared data value `props.logged.<same>` (what an earlier
//!   request's `on_log` stored), or `<absent>`. Continue.
//! * `on_log`: each of `log_properties` read now (the exchange is over), formatted the same way
//!   and stored in shared data under `props.logged.<path segments joined by "-">`: how a
//!   logging filter reads what is only known at the end (`response.backend_latency`,
//!   `request.duration`), reported by the next request.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Kind {
    String,
    Int,
    Uint,
    Bool,
    Map,
    BytesLen,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Property {
    path: Vec<String>,
    #[serde(rename = "type")]
    kind: Kind,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Set {
    path: Vec<String>,
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Config {
    properties: Vec<Property>,
    response_properties: Vec<Property>,
    log_properties: Vec<Property>,
    set: Option<Set>,
}

fn format(kind: Kind, value: Option<&[u8]>) -> String {
    let Some(value) = value else {
        return String::from("<absent>");
    };
    let invalid = || format!("<invalid {} bytes>", value.len());
    match kind {
        Kind::String => String::from_utf8_lossy(value).into_owned(),
        Kind::Int => <[u8; 8]>::try_from(value)
            .map(|b| i64::from_le_bytes(b).to_string())
            .unwrap_or_else(|_| invalid()),
        Kind::Uint => <[u8; 8]>::try_from(value)
            .map(|b| u64::from_le_bytes(b).to_string())
            .unwrap_or_else(|_| invalid()),
        Kind::Bool => match value.first() {
            Some(0) => String::from("false"),
            Some(_) => String::from("true"),
            None => invalid(),
        },
        Kind::Map => match value.get(..4) {
            Some(count) => u32::from_le_bytes([count[0], count[1], count[2], count[3]]).to_string(),
            None => String::from("0"),
        },
        Kind::BytesLen => value.len().to_string(),
    }
}

/// A property's path segments joined by `-`, as its header and shared data names spell it.
fn joined(property: &Property) -> String {
    property.path.join("-")
}

fn segments(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

#[derive(Default)]
struct Root {
    config: Option<Rc<Config>>,
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
        match parsed {
            Ok(config) => {
                log::info!("props reads {} properties", config.properties.len());
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                log::error!("bad configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            config: self.config.clone()?,
            headers: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    config: Rc<Config>,
    headers: Vec<(String, String)>,
}

impl Context for Stream {}

impl Stream {
    /// `property` read now: its header name and formatted value (also logged).
    fn read(&self, property: &Property) -> (String, String) {
        let value = self.get_property(segments(&property.path));
        let name = format!("x-prop-{}", joined(property));
        let text = format(property.kind, value.as_deref());
        log::info!("{name}: {text}");
        (name, text)
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let config = Rc::clone(&self.config);
        for property in &config.properties {
            let header = self.read(property);
            self.headers.push(header);
        }
        if let Some(set) = &config.set {
            self.set_property(segments(&set.path), Some(set.value.as_bytes()));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.headers {
            self.add_http_response_header(name, value);
        }
        let config = Rc::clone(&self.config);
        for property in &config.response_properties {
            let (name, value) = self.read(property);
            self.add_http_response_header(&name, &value);
        }
        if let Some(set) = &self.config.set {
            let value = self
                .get_property(segments(&set.path))
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_else(|| String::from("<absent>"));
            self.add_http_response_header("x-prop-set", &value);
        }
        for property in &config.log_properties {
            let name = joined(property);
            let (logged, _) = self.get_shared_data(&format!("props.logged.{name}"));
            let value = logged
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_else(|| String::from("<absent>"));
            self.add_http_response_header(&format!("x-logged-{name}"), &value);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let config = Rc::clone(&self.config);
        for property in &config.log_properties {
            let (name, value) = self.read(property);
            let key = format!("props.logged.{}", joined(property));
            if let Err(status) = self.set_shared_data(&key, Some(value.as_bytes()), None) {
                log::error!("{name} not stored: {status:?}");
            }
        }
    }
}

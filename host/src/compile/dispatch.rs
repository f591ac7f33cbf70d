//! `x-barbacane-dispatch`: the dispatcher of each operation (its own or the spec's default) and
//! the config of `mock` and `http-upstream`.

use super::{Compiler, check_template, template_params};
use crate::diag::Code;
use crate::model::{Dispatch, HttpUpstreamDispatch, MockDispatch};
use crate::spec::NodeRef;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The default `http-upstream` timeout when the config gives none.
const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 30_000;

impl Compiler {
    pub(super) fn dispatch(&mut self, op_at: &NodeRef, template: &str) -> Option<Dispatch> {
        let own = op_at.child("x-barbacane-dispatch");
        let at = match (self.sources.get(&own), &self.default_dispatch) {
            (None, Some(default)) => default.clone(),
            _ => own,
        };
        let Some(value) = self.value(&at) else {
            self.error(
                Code::E1020,
                op_at,
                "operation has no x-barbacane-dispatch",
                "add 'x-barbacane-dispatch: {name: mock}' or an http-upstream here, or a default one at the top of the spec",
            );
            return None;
        };
        let name = value.get("name").and_then(Value::as_str).unwrap_or("");
        let config = value
            .get("config")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let config_at = at.child("config");
        match name {
            "mock" => match serde_json::from_value::<MockDispatch>(config) {
                Ok(mock) if (100..=999).contains(&mock.status) => Some(Dispatch::Mock(mock)),
                Ok(mock) => {
                    self.error(
                        Code::E1022,
                        &config_at.child("status"),
                        format!("mock status {} is not an HTTP status", mock.status),
                        "use a status between 100 and 999",
                    );
                    None
                }
                Err(e) => {
                    self.error(
                        Code::E1022,
                        &config_at,
                        format!("invalid mock config: {e}"),
                        "mock takes {status, headers, body}",
                    );
                    None
                }
            },
            "http-upstream" => self.http_upstream(&config_at, config, template),
            _ => {
                self.error(
                    Code::E1021,
                    &at.child("name"),
                    format!("unknown dispatcher '{name}'"),
                    "use one of: mock, http-upstream",
                );
                None
            }
        }
    }

    pub(super) fn http_upstream(
        &mut self,
        at: &NodeRef,
        config: Value,
        template: &str,
    ) -> Option<Dispatch> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            upstream: String,
            path: Option<String>,
            timeout: Option<Value>,
        }
        let raw: Raw = match serde_json::from_value(config) {
            Ok(raw) => raw,
            Err(e) => {
                self.error(
                    Code::E1022,
                    at,
                    format!("invalid http-upstream config: {e}"),
                    "http-upstream takes {upstream, path, timeout}",
                );
                return None;
            }
        };
        let path = raw.path.unwrap_or_else(|| template.to_string());
        let mut ok = true;
        if let Err(why) = check_template(&path) {
            self.error(
                Code::E1022,
                &at.child("path"),
                format!("invalid upstream path '{path}': {why}"),
                "use a path template like '/pets/{id}'",
            );
            ok = false;
        }
        let known = template_params(template);
        for name in template_params(&path) {
            if !known.contains(&name) {
                self.error(
                    Code::E1022,
                    &at.child("path"),
                    format!(
                        "upstream path uses '{{{name}}}', which is not a parameter of '{template}'"
                    ),
                    "use only the operation's path parameters in the upstream path",
                );
                ok = false;
            }
        }
        let timeout_ms = match raw.timeout.as_ref().map(parse_duration_ms) {
            None => DEFAULT_UPSTREAM_TIMEOUT_MS,
            Some(Some(ms)) if ms > 0 => ms,
            Some(_) => {
                self.error(
                    Code::E1022,
                    &at.child("timeout"),
                    "invalid timeout",
                    "write a duration such as '500ms', '5s' or '1m'",
                );
                ok = false;
                0
            }
        };
        self.upstream_uses
            .push((raw.upstream.clone(), at.child("upstream")));
        ok.then_some(Dispatch::HttpUpstream(HttpUpstreamDispatch {
            upstream: raw.upstream,
            path,
            timeout_ms,
        }))
    }
}

/// Parses `500ms`, `5s`, `2m`, `1h` or a bare number of seconds.
pub(super) fn parse_duration_ms(value: &Value) -> Option<u64> {
    if let Some(secs) = value.as_f64() {
        return (secs >= 0.0).then_some((secs * 1000.0) as u64);
    }
    let text = value.as_str()?.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some((number * factor) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms(&json!("500ms")), Some(500));
        assert_eq!(parse_duration_ms(&json!("5s")), Some(5000));
        assert_eq!(parse_duration_ms(&json!("1m")), Some(60_000));
        assert_eq!(parse_duration_ms(&json!("1h")), Some(3_600_000));
        assert_eq!(parse_duration_ms(&json!(2)), Some(2000));
        assert_eq!(parse_duration_ms(&json!("5 parsecs")), None);
    }
}

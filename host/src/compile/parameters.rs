//! Parameters and request bodies: locations, styles, and schemas bundled and compiled once so a
//! bad schema fails the build.

use super::{Compiler, template_params};
use crate::diag::Code;
use crate::model::{MediaType, ParamLocation, ParamStyle, Parameter, RequestBody};
use crate::spec::NodeRef;
use crate::spec::bundle::{Dialect, bundle_schema};
use crate::validate;
use serde::Deserialize;
use serde_json::Value;

impl Compiler {
    pub(super) fn check_path_parameters(
        &mut self,
        at: &NodeRef,
        template: &str,
        parameters: &[Parameter],
    ) {
        let names = template_params(template);
        for p in parameters
            .iter()
            .filter(|p| p.location == ParamLocation::Path)
        {
            if !names.contains(&p.name.as_str()) {
                self.error(
                    Code::E1050,
                    &at.child("parameters"),
                    format!(
                        "path parameter '{}' does not appear in '{template}'",
                        p.name
                    ),
                    "rename the parameter or add '{name}' to the path",
                );
            }
        }
    }

    pub(super) fn parameters(&mut self, at: &NodeRef, dialect: Dialect) -> Vec<Parameter> {
        let Some(value) = self.value(at) else {
            return Vec::new();
        };
        let Value::Array(list) = value else {
            self.error(
                Code::E1005,
                at,
                "'parameters' must be a list",
                "write '- name: …' entries",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for i in 0..list.len() {
            let entry_at = at.child(&i.to_string());
            let param_at = match self.sources.deref(&entry_at) {
                Ok(n) => n,
                Err(d) => {
                    self.diagnostics.push(d);
                    continue;
                }
            };
            if let Some(p) = self.parameter(&param_at, dialect) {
                out.push(p);
            }
        }
        out
    }

    pub(super) fn parameter(&mut self, at: &NodeRef, dialect: Dialect) -> Option<Parameter> {
        #[derive(Deserialize)]
        struct Raw {
            name: String,
            #[serde(rename = "in")]
            location: ParamLocation,
            #[serde(default)]
            required: bool,
            style: Option<String>,
            explode: Option<bool>,
        }
        let raw: Raw = match self.value(at).map(serde_json::from_value) {
            Some(Ok(raw)) => raw,
            Some(Err(e)) => {
                self.error(
                    Code::E1050,
                    at,
                    format!("invalid parameter: {e}"),
                    "a parameter needs 'name' and 'in' (path, query, header or cookie)",
                );
                return None;
            }
            None => return None,
        };
        let style = match (raw.style.as_deref(), raw.location) {
            (None, ParamLocation::Path | ParamLocation::Header) | (Some("simple"), _) => {
                ParamStyle::Simple
            }
            (None, ParamLocation::Query | ParamLocation::Cookie) | (Some("form"), _) => {
                ParamStyle::Form
            }
            (Some("label"), ParamLocation::Path) => ParamStyle::Label,
            (Some("matrix"), ParamLocation::Path) => ParamStyle::Matrix,
            (Some("spaceDelimited"), ParamLocation::Query) => ParamStyle::SpaceDelimited,
            (Some("pipeDelimited"), ParamLocation::Query) => ParamStyle::PipeDelimited,
            (Some("deepObject"), ParamLocation::Query) => ParamStyle::DeepObject,
            (Some(other), location) => {
                self.error(
                    Code::E1050,
                    &at.child("style"),
                    format!(
                        "parameter '{}': style '{other}' is not supported for {} parameters",
                        raw.name,
                        location.as_str()
                    ),
                    "use simple, label or matrix (path), simple (header), form (cookie), or form, spaceDelimited, pipeDelimited or deepObject (query)",
                );
                return None;
            }
        };
        if raw.location == ParamLocation::Path && !raw.required {
            self.error(
                Code::E1050,
                &at.child("required"),
                format!("path parameter '{}' must be required", raw.name),
                "add 'required: true' (OpenAPI requires it for path parameters)",
            );
        }
        let schema = self.schema(&at.child("schema"), dialect);
        let name = match raw.location {
            ParamLocation::Header => raw.name.to_ascii_lowercase(),
            _ => raw.name,
        };
        Some(Parameter {
            name,
            location: raw.location,
            required: raw.required,
            style,
            explode: raw.explode.unwrap_or(style == ParamStyle::Form),
            schema,
        })
    }

    pub(super) fn request_body(&mut self, at: &NodeRef, dialect: Dialect) -> Option<RequestBody> {
        let body_at = match self.sources.deref(at) {
            Ok(n) => n,
            Err(d) => {
                self.diagnostics.push(d);
                return None;
            }
        };
        let Some(Value::Object(body)) = self.value(&body_at) else {
            self.error(
                Code::E1005,
                at,
                "'requestBody' must be a mapping",
                "write 'requestBody: {content: …}'",
            );
            return None;
        };
        let required = body
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut content = Vec::new();
        if let Some(Value::Object(types)) = body.get("content") {
            for media_type in types.keys() {
                let schema = self.schema(
                    &body_at.child("content").child(media_type).child("schema"),
                    dialect,
                );
                content.push(MediaType {
                    media_type: media_type.to_ascii_lowercase(),
                    schema,
                });
            }
        }
        Some(RequestBody { required, content })
    }

    /// Bundles the schema at `at` (if present) and checks that it compiles.
    pub(super) fn schema(&mut self, at: &NodeRef, dialect: Dialect) -> Option<Value> {
        self.sources.get(at)?;
        match bundle_schema(&mut self.sources, at, dialect) {
            Ok(schema) => match validate::compile_schema(&schema, dialect) {
                Ok(_) => Some(schema),
                Err(why) => {
                    self.error(
                        Code::E1051,
                        at,
                        format!("invalid schema: {why}"),
                        "fix the schema so that it is valid JSON Schema",
                    );
                    None
                }
            },
            Err(d) => {
                self.diagnostics.push(d);
                None
            }
        }
    }
}

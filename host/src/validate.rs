//! Request validation, precompiled per operation when an artifact is loaded: parameters (path,
//! query, header, cookie; typed from their string form by the schema's type and the parameter's
//! style/explode), the request content type, and JSON bodies against their schemas.
//!
//! The result of a check is a list of [`FieldError`]s naming where in the request each problem is;
//! whether the reasons reach the client is the server's decision (`--dev`).

use crate::model::{Operation, ParamLocation, ParamStyle, Parameter};
use crate::spec::bundle::Dialect;
use http::HeaderMap;
use jsonschema::Validator;
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// One failing field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Where in the request, e.g. `query.limit`, `path.id`, `body/name`.
    pub location: String,
    /// Why it fails.
    pub reason: String,
}

/// Builds a validator for `schema` in `dialect`, with the formats OpenAPI users rely on.
pub fn compile_schema(schema: &Value, dialect: Dialect) -> Result<Validator, String> {
    let draft = match dialect {
        Dialect::OpenApi30 => jsonschema::Draft::Draft4,
        Dialect::OpenApi31 => jsonschema::Draft::Draft202012,
    };
    jsonschema::options()
        .with_draft(draft)
        .should_validate_formats(true)
        // Draft 4 has no built-in `uuid` format; OpenAPI 3.0 specs use it all the time.
        .with_format("uuid", is_uuid)
        .build(schema)
        .map_err(|e| e.to_string())
}

fn is_uuid(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// How a request body will be handled, decided from its `Content-Type` before reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// No contract applies: stream it through.
    Stream,
    /// Buffer it and validate it as JSON with validator number `usize`.
    ValidateJson(usize),
    /// The content type is not one the operation accepts.
    UnsupportedMediaType,
}

struct ParamCheck {
    param: Parameter,
    validator: Option<Validator>,
    /// `param.location.name`, the prefix of its error locations.
    location: String,
    /// The schema's top-level type(s), to type the string form.
    types: Vec<String>,
    /// The type(s) of array items.
    item_types: Vec<String>,
}

struct MediaCheck {
    media_type: String,
    is_json: bool,
    validator: Option<Validator>,
}

/// Everything needed to validate requests for one operation.
pub struct OperationValidator {
    params: Vec<ParamCheck>,
    body_required: bool,
    media: Vec<MediaCheck>,
}

/// The parts of a request that parameters come from.
pub struct RequestParts<'a> {
    /// Decoded path parameter values by name.
    pub path_params: &'a [(String, String)],
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

impl OperationValidator {
    /// Precompiles the validators of `op`.
    pub fn new(op: &Operation) -> Result<Self, String> {
        let compile = |schema: &Option<Value>| {
            schema
                .as_ref()
                .map(|s| compile_schema(s, op.dialect))
                .transpose()
        };
        let params = op
            .parameters
            .iter()
            .map(|p| {
                let root = p.schema.as_ref();
                Ok(ParamCheck {
                    param: p.clone(),
                    validator: compile(&p.schema)?,
                    location: format!("{}.{}", p.location.as_str(), p.name),
                    types: root.map(|r| types_of(r, r, 0)).unwrap_or_default(),
                    item_types: root
                        .and_then(|r| {
                            resolve(r, r, 0)
                                .get("items")
                                .map(|items| types_of(items, r, 0))
                        })
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<_, String>>()?;
        let (body_required, media) = match &op.request_body {
            None => (false, Vec::new()),
            Some(body) => (
                body.required,
                body.content
                    .iter()
                    .map(|m| {
                        let is_json = is_json_media_type(&m.media_type);
                        Ok(MediaCheck {
                            media_type: m.media_type.clone(),
                            is_json,
                            validator: if is_json { compile(&m.schema)? } else { None },
                        })
                    })
                    .collect::<Result<_, String>>()?,
            ),
        };
        Ok(OperationValidator {
            params,
            body_required,
            media,
        })
    }

    /// Whether the operation requires a request body.
    pub fn body_required(&self) -> bool {
        self.body_required
    }

    /// Checks every parameter; returns all failures.
    pub fn check_params(&self, request: &RequestParts<'_>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let query: Vec<(Cow<'_, str>, Cow<'_, str>)> = request
            .query
            .map(|q| url::form_urlencoded::parse(q.as_bytes()).collect())
            .unwrap_or_default();
        for check in &self.params {
            let p = &check.param;
            let location = || check.location.clone();
            let raw = match p.location {
                ParamLocation::Path => Ok(request
                    .path_params
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map(|(_, v)| check.styled(v))),
                ParamLocation::Query => Ok(check.query_value(&query)),
                ParamLocation::Header => check.header_value(request.headers),
                ParamLocation::Cookie => Ok(check.cookie_value(request.headers)),
            };
            let value = match raw {
                Ok(Some(raw)) => raw,
                Ok(None) => {
                    if p.required {
                        errors.push(FieldError {
                            location: location(),
                            reason: String::from("required parameter is missing"),
                        });
                    }
                    continue;
                }
                Err(reason) => {
                    errors.push(FieldError {
                        location: location(),
                        reason,
                    });
                    continue;
                }
            };
            let Some(validator) = &check.validator else {
                continue;
            };
            let typed = check.coerce(value);
            for e in validator.iter_errors(&typed) {
                let pointer = e.instance_path().to_string();
                errors.push(FieldError {
                    location: format!("{}{pointer}", check.location),
                    reason: e.to_string(),
                });
            }
        }
        errors
    }

    /// Decides how to treat a body with this `Content-Type` (None when absent).
    pub fn body_plan(&self, content_type: Option<&str>) -> BodyPlan {
        if self.media.is_empty() {
            return BodyPlan::Stream;
        }
        let Some(content_type) = content_type else {
            return BodyPlan::UnsupportedMediaType;
        };
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let matched = self
            .media
            .iter()
            .enumerate()
            .find(|(_, m)| media_matches(&m.media_type, &essence));
        match matched {
            None => BodyPlan::UnsupportedMediaType,
            Some((i, m)) if m.validator.is_some() && m.is_json => BodyPlan::ValidateJson(i),
            Some((i, _)) if is_json_media_type(&essence) && self.media[i].validator.is_some() => {
                BodyPlan::ValidateJson(i)
            }
            Some(_) => BodyPlan::Stream,
        }
    }

    /// Validates a buffered JSON body against media type `index`.
    pub fn check_json_body(&self, index: usize, body: &[u8]) -> Vec<FieldError> {
        let instance: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return vec![FieldError {
                    location: String::from("body"),
                    reason: format!("invalid JSON: {e}"),
                }];
            }
        };
        let Some(validator) = self.media.get(index).and_then(|m| m.validator.as_ref()) else {
            return Vec::new();
        };
        validator
            .iter_errors(&instance)
            .map(|e| FieldError {
                location: format!("body{}", e.instance_path()),
                reason: e.to_string(),
            })
            .collect()
    }
}

impl ParamCheck {
    fn is(&self, t: &str) -> bool {
        self.types.iter().any(|x| x == t)
    }

    /// Splits a path, header or cookie value by the parameter's style (`simple`, `label`,
    /// `matrix`) and explode flag into its raw parts.
    fn styled(&self, value: &str) -> RawValue {
        let p = &self.param;
        let named = format!("{}=", p.name);
        let (body, separator) = match p.style {
            ParamStyle::Label => (
                value.strip_prefix('.').unwrap_or(value),
                if p.explode { '.' } else { ',' },
            ),
            ParamStyle::Matrix => {
                let body = value.strip_prefix(';').unwrap_or(value);
                if p.explode && !self.is("object") {
                    // `;id=3;id=4`: every part repeats the name.
                    let parts = body
                        .split(';')
                        .map(|part| part.strip_prefix(named.as_str()).unwrap_or(part));
                    if self.is("array") {
                        return RawValue::Many(parts.map(str::to_owned).collect());
                    }
                    return RawValue::One(parts.collect::<Vec<_>>().join(";"));
                }
                let body = if p.explode {
                    body
                } else {
                    body.strip_prefix(named.as_str()).unwrap_or(body)
                };
                (body, if p.explode { ';' } else { ',' })
            }
            _ => (value, ','),
        };
        if self.is("array") {
            RawValue::Many(
                body.split(separator)
                    .map(|v| v.trim().to_string())
                    .collect(),
            )
        } else if self.is("object") {
            let parts: Vec<&str> = body.split(separator).collect();
            if p.explode {
                RawValue::Object(
                    parts
                        .iter()
                        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )
            } else {
                RawValue::Object(alternating_pairs(&parts))
            }
        } else {
            RawValue::One(body.to_string())
        }
    }

    fn header_value(&self, headers: &HeaderMap) -> Result<Option<RawValue>, String> {
        let mut joined: Option<String> = None;
        for value in headers.get_all(self.param.name.as_str()) {
            let text = value
                .to_str()
                .map_err(|_| String::from("header value is not visible ASCII"))?;
            match &mut joined {
                Some(j) => {
                    j.push(',');
                    j.push_str(text);
                }
                None => joined = Some(text.to_string()),
            }
        }
        Ok(joined.map(|j| self.styled(&j)))
    }

    fn cookie_value(&self, headers: &HeaderMap) -> Option<RawValue> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|text| text.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.param.name)
            .map(|(_, value)| self.styled(value))
    }

    fn query_value(&self, query: &[(Cow<'_, str>, Cow<'_, str>)]) -> Option<RawValue> {
        let p = &self.param;
        let mut named = query
            .iter()
            .filter(|(k, _)| k == &p.name)
            .map(|(_, v)| v.as_ref());
        if self.is("object") {
            let pairs: Vec<(String, String)> = match p.style {
                ParamStyle::DeepObject => {
                    let prefix = format!("{}[", p.name);
                    query
                        .iter()
                        .filter_map(|(k, v)| {
                            let prop = k.strip_prefix(prefix.as_str())?.strip_suffix(']')?;
                            Some((prop.to_string(), v.to_string()))
                        })
                        .collect()
                }
                ParamStyle::Form if p.explode => {
                    let props = p
                        .schema
                        .as_ref()
                        .map(|r| resolve(r, r, 0))
                        .and_then(|s| s.get("properties"))
                        .and_then(Value::as_object);
                    query
                        .iter()
                        .filter(|(k, _)| props.is_some_and(|m| m.contains_key(k.as_ref())))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }
                _ => alternating_pairs(&named.next()?.split(',').collect::<Vec<_>>()),
            };
            return (!pairs.is_empty()).then_some(RawValue::Object(pairs));
        }
        if !self.is("array") {
            return named.next().map(|v| RawValue::One(v.to_string()));
        }
        if p.style == ParamStyle::Form && p.explode {
            let values: Vec<String> = named.map(str::to_owned).collect();
            return (!values.is_empty()).then_some(RawValue::Many(values));
        }
        let separator = match p.style {
            ParamStyle::SpaceDelimited => ' ',
            ParamStyle::PipeDelimited => '|',
            _ => ',',
        };
        named
            .next()
            .map(|v| RawValue::Many(v.split(separator).map(|v| v.trim().to_string()).collect()))
    }

    /// Turns the raw (string) form into the JSON value the schema describes.
    fn coerce(&self, raw: RawValue) -> Value {
        match raw {
            RawValue::One(s) => coerce_scalar(s, &self.types),
            RawValue::Many(items) => Value::Array(
                items
                    .into_iter()
                    .map(|s| coerce_scalar(s, &self.item_types))
                    .collect(),
            ),
            RawValue::Object(pairs) => {
                let root = self.param.schema.as_ref();
                let props = root
                    .map(|r| resolve(r, r, 0))
                    .and_then(|s| s.get("properties"));
                let mut map = Map::new();
                for (k, v) in pairs {
                    let types = match (props.and_then(|p| p.get(&k)), root) {
                        (Some(prop), Some(r)) => types_of(prop, r, 0),
                        _ => Vec::new(),
                    };
                    map.insert(k, coerce_scalar(v, &types));
                }
                Value::Object(map)
            }
        }
    }
}

/// `k1,v1,k2,v2` (a non-exploded object) → pairs.
fn alternating_pairs(parts: &[&str]) -> Vec<(String, String)> {
    parts
        .chunks(2)
        .map(|c| {
            (
                c[0].to_string(),
                c.get(1).copied().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// A parameter's raw form before typing.
enum RawValue {
    One(String),
    Many(Vec<String>),
    Object(Vec<(String, String)>),
}

/// Follows local `$ref`s and single-entry `allOf` wrappers (as bundling produces) to the schema
/// that carries the type.
fn resolve<'a>(schema: &'a Value, root: &'a Value, depth: usize) -> &'a Value {
    if depth > 16 {
        return schema;
    }
    if let Some(pointer) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        && let Some(target) = root.pointer(pointer)
    {
        return resolve(target, root, depth + 1);
    }
    match schema.get("allOf").and_then(Value::as_array) {
        Some(list) if list.len() == 1 && schema.get("type").is_none() => {
            resolve(&list[0], root, depth + 1)
        }
        _ => schema,
    }
}

fn types_of(schema: &Value, root: &Value, depth: usize) -> Vec<String> {
    match resolve(schema, root, depth).get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn coerce_scalar(raw: String, types: &[String]) -> Value {
    for t in types {
        match t.as_str() {
            "integer" => {
                if let Ok(i) = raw.parse::<i64>() {
                    return Value::Number(i.into());
                }
            }
            "number" => {
                if let Some(n) = raw.parse::<f64>().ok().and_then(Number::from_f64) {
                    return Value::Number(n);
                }
            }
            "boolean" => match raw.as_str() {
                "true" => return Value::Bool(true),
                "false" => return Value::Bool(false),
                _ => {}
            },
            "null" if raw.is_empty() || raw == "null" => return Value::Null,
            _ => {}
        }
    }
    Value::String(raw)
}

fn is_json_media_type(media_type: &str) -> bool {
    media_type == "application/json" || media_type.ends_with("+json")
}

fn media_matches(declared: &str, actual: &str) -> bool {
    if declared == actual || declared == "*/*" {
        return true;
    }
    match declared.strip_suffix("/*") {
        Some(kind) => actual.split('/').next() == Some(kind),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MediaType, RequestBody};
    use serde_json::json;

    fn op(parameters: Vec<Parameter>, body: Option<RequestBody>) -> Operation {
        Operation {
            parameters,
            request_body: body,
            ..Operation::default()
        }
    }

    fn param(
        name: &str,
        location: ParamLocation,
        style: ParamStyle,
        explode: bool,
        schema: Value,
    ) -> Parameter {
        Parameter {
            name: name.into(),
            location,
            required: true,
            style,
            explode,
            schema: Some(schema),
        }
    }

    /// Locations of the failing parameters for a request with `path_params` and `query`.
    fn failing(
        v: &OperationValidator,
        path_params: &[(String, String)],
        query: Option<&str>,
    ) -> Vec<String> {
        let headers = HeaderMap::new();
        let parts = RequestParts {
            path_params,
            query,
            headers: &headers,
        };
        v.check_params(&parts)
            .into_iter()
            .map(|e| e.location)
            .collect()
    }

    fn check(v: &OperationValidator, query: &str) -> Vec<String> {
        failing(v, &[], Some(query))
    }

    #[test]
    fn query_parameters_are_typed_and_styled() {
        let v = OperationValidator::new(&op(
            vec![
                param("limit", ParamLocation::Query, ParamStyle::Form, true, json!({"type": "integer", "maximum": 10})),
                param("ids", ParamLocation::Query, ParamStyle::Form, false, json!({"type": "array", "items": {"type": "integer"}})),
                param("tags", ParamLocation::Query, ParamStyle::PipeDelimited, false, json!({"type": "array", "items": {"enum": ["a", "b"]}})),
                param("f", ParamLocation::Query, ParamStyle::DeepObject, true, json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})),
            ],
            None,
        ))
        .unwrap();
        assert!(check(&v, "limit=3&ids=1,2&tags=a|b&f[n]=1").is_empty());
        assert_eq!(
            check(&v, "limit=11&ids=1,x&tags=a|c&f[n]=z"),
            vec!["query.limit", "query.ids/1", "query.tags/1", "query.f/n"]
        );
        assert_eq!(
            check(&v, "ids=1"),
            vec!["query.limit", "query.tags", "query.f"]
        );
    }

    fn check_path(v: &OperationValidator, value: &str) -> Vec<String> {
        failing(v, &[(String::from("id"), value.to_string())], None)
    }

    #[test]
    fn path_styles_simple_label_and_matrix() {
        let array = json!({"type": "array", "items": {"type": "integer"}, "minItems": 2});
        let object =
            json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
        let cases = [
            (ParamStyle::Simple, false, array.clone(), "3,4", "3,x"),
            (ParamStyle::Label, false, array.clone(), ".3,4", ".3,x"),
            (ParamStyle::Label, true, array.clone(), ".3.4", ".3.x"),
            (
                ParamStyle::Matrix,
                false,
                array.clone(),
                ";id=3,4",
                ";id=3,x",
            ),
            (
                ParamStyle::Matrix,
                true,
                array.clone(),
                ";id=3;id=4",
                ";id=3;id=x",
            ),
            (
                ParamStyle::Matrix,
                false,
                json!({"type": "integer"}),
                ";id=5",
                ";id=x",
            ),
            (ParamStyle::Simple, false, object.clone(), "n,5", "n,x"),
            (ParamStyle::Simple, true, object.clone(), "n=5", "m=5"),
            (ParamStyle::Label, true, object.clone(), ".n=5", ".n=x"),
            (ParamStyle::Matrix, true, object.clone(), ";n=5", ";n=x"),
        ];
        for (style, explode, schema, good, bad) in cases {
            let v = OperationValidator::new(&op(
                vec![param("id", ParamLocation::Path, style, explode, schema)],
                None,
            ))
            .unwrap();
            assert!(
                check_path(&v, good).is_empty(),
                "{style:?} {explode} {good}"
            );
            assert!(!check_path(&v, bad).is_empty(), "{style:?} {explode} {bad}");
        }
    }

    #[test]
    fn json_bodies_are_checked_by_content_type() {
        let body = RequestBody {
            required: true,
            content: vec![MediaType {
                media_type: String::from("application/json"),
                schema: Some(
                    json!({"type": "object", "required": ["name"], "properties": {"email": {"type": "string", "format": "email"}}}),
                ),
            }],
        };
        let v = OperationValidator::new(&op(Vec::new(), Some(body))).unwrap();
        assert_eq!(
            v.body_plan(Some("application/json; charset=utf-8")),
            BodyPlan::ValidateJson(0)
        );
        assert_eq!(
            v.body_plan(Some("text/plain")),
            BodyPlan::UnsupportedMediaType
        );
        assert!(v.check_json_body(0, br#"{"name": "x"}"#).is_empty());
        let errors = v.check_json_body(0, br#"{"email": "nope"}"#);
        assert_eq!(
            errors
                .iter()
                .map(|e| e.location.as_str())
                .collect::<Vec<_>>(),
            vec!["body", "body/email"]
        );
        assert_eq!(v.check_json_body(0, b"{").len(), 1);
    }

    #[test]
    fn uuid_format_is_checked_in_openapi_30() {
        let v = compile_schema(
            &json!({"type": "string", "format": "uuid"}),
            Dialect::OpenApi30,
        )
        .unwrap();
        assert!(v.is_valid(&json!("6f1c2a86-3b8e-4a43-9d55-0c6f6b0f1b2e")));
        assert!(!v.is_valid(&json!("not-a-uuid")));
    }
}

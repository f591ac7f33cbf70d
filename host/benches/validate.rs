//! Request validation cost: parameters (typed from strings) and a JSON body against its schema.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane::model::{MediaType, Operation, ParamLocation, ParamStyle, Parameter, RequestBody};
use barbacane::validate::{OperationValidator, RequestParts};
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use serde_json::json;
use std::hint::black_box;

fn operation() -> Operation {
    let param = |name: &str, location, schema| Parameter {
        name: name.into(),
        location,
        required: true,
        style: if location == ParamLocation::Query {
            ParamStyle::Form
        } else {
            ParamStyle::Simple
        },
        explode: location == ParamLocation::Query,
        schema: Some(schema),
    };
    Operation {
        id: "createOrder".into(),
        method: "POST".into(),
        path: "/stores/{storeId}/orders".into(),
        servers: Vec::new(),
        parameters: vec![
            param(
                "storeId",
                ParamLocation::Path,
                json!({"type": "integer", "minimum": 1}),
            ),
            param("dry_run", ParamLocation::Query, json!({"type": "boolean"})),
            param(
                "x-tenant",
                ParamLocation::Header,
                json!({"type": "string", "pattern": "^[a-z0-9-]{3,32}$"}),
            ),
        ],
        request_body: Some(RequestBody {
            required: true,
            content: vec![MediaType {
                media_type: "application/json".into(),
                schema: Some(json!({
                    "type": "object",
                    "required": ["customer", "items"],
                    "properties": {
                        "customer": {"type": "object", "required": ["email"], "properties": {
                            "email": {"type": "string", "format": "email"},
                            "id": {"type": "string", "format": "uuid"}}},
                        "items": {"type": "array", "minItems": 1, "items": {"type": "object",
                            "required": ["sku", "qty"],
                            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}}},
                        "placed_at": {"type": "string", "format": "date-time"}
                    }
                })),
            }],
        }),
        ..Operation::default()
    }
}

fn bench(c: &mut Criterion) {
    let validator = OperationValidator::new(&operation()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", "acme-eu".parse().unwrap());
    let path_params = vec![("storeId".to_string(), "42".to_string())];
    let parts = RequestParts {
        path_params: &path_params,
        query: Some("dry_run=false"),
        headers: &headers,
    };
    assert!(validator.check_params(&parts).is_empty());
    c.bench_function("validate_params", |b| {
        b.iter(|| black_box(validator.check_params(black_box(&parts))))
    });

    let body = json!({
        "customer": {"email": "a@example.com", "id": "6f1c2a86-3b8e-4a43-9d55-0c6f6b0f1b2e"},
        "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
        "placed_at": "2026-11-22T10:00:00Z"
    })
    .to_string();
    assert!(validator.check_json_body(0, body.as_bytes()).is_empty());
    c.bench_function("validate_json_body_200b", |b| {
        b.iter(|| black_box(validator.check_json_body(0, black_box(body.as_bytes()))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

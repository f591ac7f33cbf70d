//! Route lookup on a 1,000-operation API: static, parameterised and missing paths.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane::model::{Operation, ServerMatch};
use barbacane::router::{Router, normalize};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use std::hint::black_box;

/// 250 resources × 4 operations: list, create, get by id, a nested static action.
fn operations() -> Vec<Operation> {
    let mut ops = Vec::new();
    for r in 0..250 {
        for (method, path) in [
            ("GET", format!("/api/v1/resource{r}")),
            ("POST", format!("/api/v1/resource{r}")),
            ("GET", format!("/api/v1/resource{r}/{{id}}")),
            (
                "POST",
                format!("/api/v1/resource{r}/{{id}}/actions/archive"),
            ),
        ] {
            ops.push(Operation {
                id: format!("{method} {path}"),
                method: method.into(),
                path,
                servers: vec![ServerMatch::default()],
                ..Operation::default()
            });
        }
    }
    ops
}

fn bench(c: &mut Criterion) {
    let ops = operations();
    assert_eq!(ops.len(), 1000);
    let router = Router::new(&ops);
    let mut group = c.benchmark_group("route_lookup_1000_ops");
    for (name, method, path) in [
        ("static", Method::GET, "/api/v1/resource199"),
        ("param", Method::GET, "/api/v1/resource199/12345"),
        (
            "nested",
            Method::POST,
            "/api/v1/resource42/abc/actions/archive",
        ),
        ("miss", Method::GET, "/api/v1/unknown/1"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let segments = normalize(black_box(path)).unwrap_or_default();
                black_box(router.lookup(&method, "localhost", &segments))
            })
        });
    }
    group.finish();
    c.bench_function("router_build_1000_ops", |b| {
        b.iter(|| black_box(Router::new(black_box(&ops))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

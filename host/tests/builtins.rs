//! Built-in plugins: embedded in the binary by `host/build.rs` from `plugins/`, usable by name
//! without `barbacane.yaml`, overridable by a declared plugin, and their configs checked against
//! their JSON Schema at compile time (E1062). Also `schema:` files for declared plugins and
//! `barbacane plugin list`.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::builtins::{self, Builtin};
use barbacane::model::Middleware;
use barbacane::proxywasm::{self, PluginConfig, PluginModule, Vm};
use barbacane::server::Config;
use serde_json::Value;
use std::sync::Arc;
use support::{echo_upstream, get, project, run, send, validate};

/// The built-in these tests exercise; it must be in the build (no silent skip).
fn builtin(name: &str) -> &'static Builtin {
    builtins::find(name).unwrap_or_else(|| {
        panic!(
            "built-in plugin '{name}' is missing from this build (built-ins: {:?}): \
             plugins/{name} must exist, be a member of plugins/Cargo.toml and build, and the \
             binary must not be built with BARBACANE_NO_BUILTINS=1",
            builtins::all().iter().map(|b| b.name).collect::<Vec<_>>()
        )
    })
}

fn correlation_id() -> &'static Builtin {
    builtin("correlation-id")
}

/// A spec whose global chain is `middlewares` (YAML list items, indented by two), in front of
/// the echo upstream on `port`.
fn spec(port: u16, middlewares: &str) -> String {
    format!(
        "openapi: 3.1.0
info: {{title: builtins, version: '1'}}
x-barbacane-upstreams:
  echo: {{endpoints: ['http://127.0.0.1:{port}']}}
x-barbacane-middlewares:
{middlewares}
paths:
  /echo:
    get:
      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: echo}}}}
"
    )
}

fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[test]
fn every_builtin_has_a_valid_schema_and_a_module_that_loads_and_starts() {
    let all = builtins::all();
    assert!(
        !all.is_empty(),
        "no built-in plugins in this build (BARBACANE_NO_BUILTINS=1?)"
    );
    let engine = proxywasm::engine().unwrap();
    for (i, b) in all.iter().enumerate() {
        if let Some(previous) = i.checked_sub(1).map(|p| &all[p]) {
            assert!(previous.name < b.name, "sorted and unique: {}", b.name);
        }
        assert!(std::ptr::eq(builtins::find(b.name).unwrap(), b));
        assert!(!b.version.is_empty() && !b.description.is_empty(), "{b:?}");

        let schema: Value = serde_json::from_str(b.schema)
            .unwrap_or_else(|e| panic!("{}: schema is not JSON: {e}", b.name));
        let validator = barbacane::compile::plugin_schema(&schema)
            .unwrap_or_else(|e| panic!("{}: invalid schema: {e}", b.name));

        let module = PluginModule::compile(&engine, b.wasm)
            .unwrap_or_else(|e| panic!("{}: module does not load: {e}", b.name));
        assert_eq!(module.info.abi.as_str(), b.abi, "{}: ABI marker", b.name);

        // When the schema allows no config, the plugin must start without one (the compiler
        // checks a missing config as `{}`).
        if validator.is_valid(&serde_json::json!({})) {
            let middleware = Middleware {
                plugin: b.name.to_string(),
                config: String::new(),
                root_id: String::new(),
                vm_config: String::new(),
                failure: Default::default(),
                backoff: Default::default(),
                allow_on_headers_stop_iteration: false,
                deadline_ms: barbacane::model::default_deadline_ms(),
            };
            let config = PluginConfig::for_middleware(&middleware, Arc::from(Vec::new()));
            if let Err(e) = Vm::start(&engine, &module, config) {
                panic!(
                    "{}: the schema accepts {{}} but the plugin refuses it: {e}",
                    b.name
                );
            }
        }
    }
}

#[tokio::test]
async fn a_builtin_is_usable_by_name_without_a_manifest() {
    correlation_id();
    let up = echo_upstream().await;
    let gw = support::gateway_project(
        &[(
            "api.yaml",
            &spec(
                up.addr.port(),
                "  - name: correlation-id\n    config: {header: X-Trace-Id}",
            ),
        )],
        Config::default(),
    )
    .await;

    let reply = get(&gw.url("/echo")).await;
    assert_eq!(reply.status, 200);
    let id = reply.header("x-trace-id").to_string();
    assert!(is_uuid(&id), "{id:?}");
    assert_eq!(reply.json()["headers"]["x-trace-id"], id.as_str());

    let reply = send(
        http::Method::GET,
        &gw.url("/echo"),
        &[("x-trace-id", "abc-123")],
        b"",
    )
    .await;
    assert_eq!(reply.header("x-trace-id"), "abc-123");
}

#[tokio::test]
async fn builtins_travel_inside_the_artifact() {
    correlation_id();
    let up = echo_upstream().await;
    let dir = project(&[(
        "api.yaml",
        &spec(up.addr.port(), "  - name: correlation-id"),
    )]);
    let (code, _, stderr) = run(
        dir.path(),
        &["compile", "--spec", "api.yaml", "--dev", "-o", "api.bca"],
    );
    assert_eq!(code, 0, "{stderr}");
    let artifact = barbacane::artifact::read(&dir.path().join("api.bca")).unwrap();
    assert!(
        artifact
            .manifest
            .entries
            .iter()
            .any(|e| e.name == "plugins/correlation-id.wasm"),
        "{:?}",
        artifact.manifest.entries
    );
    let gw = support::serve_artifact(artifact, Config::default(), dir).await;
    assert!(is_uuid(
        get(&gw.url("/echo")).await.header("x-correlation-id")
    ));
}

#[test]
fn a_config_that_does_not_match_the_schema_is_e1062_at_the_failing_node() {
    correlation_id();
    let dir = project(&[(
        "api.yaml",
        &spec(
            1,
            "  - name: correlation-id
    config:
      header: x-trace
      generate: \"yes\"
      unknown: 1",
        ),
    )]);
    let (code, doc) = validate(&dir, false);
    assert_eq!(code, 1, "{doc}");
    let diagnostics = doc["diagnostics"].as_array().unwrap();
    let found: Vec<(&str, &str, u64, u64)> = diagnostics
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap(),
                d["message"].as_str().unwrap(),
                d["line"].as_u64().unwrap(),
                d["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        found.contains(&(
            "E1062",
            "plugin 'correlation-id': /generate: \"yes\" is not of type \"boolean\"",
            9,
            17
        )),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|(code, message, line, _)| *code == "E1062"
            && message.starts_with("plugin 'correlation-id': config: ")
            && message.contains("'unknown'")
            && *line == 7),
        "{found:#?}"
    );
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        diagnostics[0]["hint"]
            .as_str()
            .unwrap()
            .contains("built-in plugin 'correlation-id'"),
        "{doc}"
    );

    // A config that is not a mapping at all, and a string that is not JSON, fail at `config`.
    for config in ["[1, 2]", "'not json'"] {
        let dir = project(&[(
            "api.yaml",
            &spec(
                1,
                &format!("  - name: correlation-id\n    config: {config}"),
            ),
        )]);
        let (code, doc) = validate(&dir, false);
        let d = &doc["diagnostics"][0];
        assert_eq!(
            (code, d["code"].as_str(), d["line"].as_u64()),
            (1, Some("E1062"), Some(7)),
            "{doc}"
        );
        assert!(
            d["message"]
                .as_str()
                .unwrap()
                .ends_with("is not of type \"object\""),
            "{doc}"
        );
    }

    // A JSON string is checked as the JSON it holds.
    let dir = project(&[(
        "api.yaml",
        &spec(
            1,
            "  - name: correlation-id\n    config: '{\"generate\": false}'",
        ),
    )]);
    assert_eq!(validate(&dir, false).0, 0);
}

#[test]
fn an_unknown_plugin_names_the_builtins_in_its_hint() {
    correlation_id();
    let dir = project(&[("api.yaml", &spec(1, "  - name: nope"))]);
    let (code, doc) = validate(&dir, false);
    let d = &doc["diagnostics"][0];
    assert_eq!((code, d["code"].as_str()), (1, Some("E1060")), "{doc}");
    assert_eq!(d["message"], "unknown plugin 'nope'");
    assert!(
        d["hint"].as_str().unwrap().contains("correlation-id"),
        "{doc}"
    );
}

#[tokio::test]
async fn a_declared_plugin_overrides_the_builtin_of_the_same_name() {
    correlation_id();
    let up = echo_upstream().await;
    // This config would fail correlation-id's schema: the declared module gets it instead.
    let dir = project(&[
        (
            "api.yaml",
            &spec(
                up.addr.port(),
                "  - name: correlation-id\n    config: 'x-added: yes'",
            ),
        ),
        (
            "barbacane.yaml",
            "plugins:\n  correlation-id: {source: 'file:filters/headers.wasm'}\n",
        ),
    ]);
    support::write_filter(&dir, "filters/headers.wasm", "headers");
    let gw = support::gateway_in(dir, Config::default()).await;
    let reply = get(&gw.url("/echo")).await;
    assert_eq!(reply.json()["headers"]["x-added"], "yes");
    assert_eq!(reply.header("x-conformance"), "headers");
    assert_eq!(reply.header("x-correlation-id"), "");
}

#[tokio::test]
async fn a_builtin_source_gives_a_builtin_another_name() {
    correlation_id();
    let up = echo_upstream().await;
    let dir = project(&[
        (
            "api.yaml",
            &spec(
                up.addr.port(),
                "  - name: trace\n    config: {header: x-trace}",
            ),
        ),
        (
            "barbacane.yaml",
            "plugins:\n  trace: {source: 'builtin:correlation-id'}\n",
        ),
    ]);
    let gw = support::gateway_in(dir, Config::default()).await;
    assert!(is_uuid(get(&gw.url("/echo")).await.header("x-trace")));

    // Its schema comes along.
    let dir = project(&[
        (
            "api.yaml",
            &spec(1, "  - name: trace\n    config: {generate: 1}"),
        ),
        (
            "barbacane.yaml",
            "plugins:\n  trace: {source: 'builtin:correlation-id'}\n",
        ),
    ]);
    let (code, doc) = validate(&dir, true);
    let d = &doc["diagnostics"][0];
    assert_eq!((code, d["code"].as_str()), (1, Some("E1062")), "{doc}");
    assert_eq!(
        d["message"],
        "plugin 'trace': /generate: 1 is not of type \"boolean\""
    );

    // A built-in that does not exist is a manifest error at its source.
    std::fs::write(
        dir.path().join("barbacane.yaml"),
        "plugins:\n  trace:\n    source: 'builtin:nope'\n",
    )
    .unwrap();
    let (code, doc) = validate(&dir, true);
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (code, d["code"].as_str(), d["line"].as_u64()),
        (1, Some("E1070"), Some(3)),
        "{doc}"
    );
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .starts_with("plugin 'trace': source 'builtin:nope' names no built-in plugin"),
        "{doc}"
    );
}

#[test]
fn a_declared_plugin_may_bring_a_schema_file() {
    let manifest = "plugins:
  add-header:
    source: 'file:filters/headers.wasm'
    schema: filters/headers.schema.yaml
";
    let dir = project(&[
        (
            "api.yaml",
            &spec(1, "  - name: add-header\n    config: 'Not A Header'"),
        ),
        ("barbacane.yaml", manifest),
        (
            "filters/headers.schema.yaml",
            "{type: string, pattern: '^[a-z-]+: '}",
        ),
    ]);
    support::write_filter(&dir, "filters/headers.wasm", "headers");
    let (code, doc) = validate(&dir, true);
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (code, d["code"].as_str(), d["line"].as_u64()),
        (1, Some("E1062"), Some(7)),
        "{doc}"
    );
    assert_eq!(
        d["message"],
        "plugin 'add-header': config: \"Not A Header\" does not match \"^[a-z-]+: \""
    );
    assert!(
        d["hint"]
            .as_str()
            .unwrap()
            .contains("filters/headers.schema.yaml"),
        "{doc}"
    );

    std::fs::write(
        dir.path().join("api.yaml"),
        spec(1, "  - name: add-header\n    config: 'x-ok: yes'"),
    )
    .unwrap();
    assert_eq!(validate(&dir, true).0, 0);

    // A schema that is not a JSON Schema, or no file at all, is a manifest error at `schema:`.
    std::fs::write(dir.path().join("filters/headers.schema.yaml"), "{type: 5}").unwrap();
    let (code, doc) = validate(&dir, true);
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (code, d["code"].as_str(), d["line"].as_u64()),
        (1, Some("E1070"), Some(4)),
        "{doc}"
    );
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("not a valid JSON Schema"),
        "{doc}"
    );
    std::fs::remove_file(dir.path().join("filters/headers.schema.yaml")).unwrap();
    let (code, doc) = validate(&dir, true);
    assert_eq!(
        (code, doc["diagnostics"][0]["code"].as_str()),
        (1, Some("E1070")),
        "{doc}"
    );
}

#[test]
fn plugin_list_prints_the_builtins() {
    let b = correlation_id();
    let dir = project(&[]);
    let (code, stdout, stderr) = run(dir.path(), &["plugin", "list"]);
    assert_eq!(code, 0, "{stderr}");
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "VERSION", "KIND", "CAPABILITIES", "DESCRIPTION"]
    );
    let row = lines
        .find(|l| l.starts_with("correlation-id "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let fields: Vec<&str> = row.split_whitespace().take(4).collect();
    assert_eq!(fields, ["correlation-id", b.version, "transform", "-"]);
    assert!(row.ends_with(b.description), "{row}");
    let jwt = builtin("jwt-auth");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("jwt-auth "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        row.split_whitespace().nth(3),
        Some(jwt.capabilities.join(",").as_str())
    );
    assert_eq!(stdout.lines().count(), builtins::all().len() + 1);

    let (code, stdout, _) = run(dir.path(), &["plugin", "list", "--format", "json"]);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&stdout).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "correlation-id")
        .unwrap();
    assert_eq!(entry["kind"], "transform");
    assert_eq!(entry["abi"], b.abi);
    assert_eq!(entry["capabilities"], serde_json::json!([]));
    assert_eq!(
        entry["schema"],
        serde_json::from_str::<Value>(b.schema).unwrap()
    );
}

#[test]
fn cors_config_errors_name_the_field_and_the_missing_property() {
    builtin("cors");
    let dir = project(&[(
        "api.yaml",
        &spec(
            1,
            "  - name: cors\n    config: {allow_origins: ['https://app.example'], max_age: x}",
        ),
    )]);
    let (code, doc) = validate(&dir, false);
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (code, d["code"].as_str(), d["line"].as_u64()),
        (1, Some("E1062"), Some(7)),
        "{doc}"
    );
    assert_eq!(
        d["message"],
        "plugin 'cors': /max_age: \"x\" is not of type \"integer\""
    );

    let dir = project(&[("api.yaml", &spec(1, "  - name: cors"))]);
    let (code, doc) = validate(&dir, false);
    let d = &doc["diagnostics"][0];
    assert_eq!((code, d["code"].as_str()), (1, Some("E1062")), "{doc}");
    assert_eq!(
        d["message"],
        "plugin 'cors': config: \"allow_origins\" is a required property"
    );
}

/// A CORS preflight reaches the chain of the operation it asks about, though the path declares no
/// `options`: the `cors` plugin answers it. Without the header it is still a 405.
#[tokio::test]
async fn a_preflight_is_answered_by_the_chain_of_the_method_it_asks_about() {
    builtin("cors");
    let up = echo_upstream().await;
    let cors = "  - name: cors\n    config: {allow_origins: ['https://app.example'], max_age: 600}";
    let gw = support::gateway_project(
        &[("api.yaml", &spec(up.addr.port(), cors))],
        Config::default(),
    )
    .await;

    let preflight = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "GET"),
    ];
    let reply = send(http::Method::OPTIONS, &gw.url("/echo"), &preflight, b"").await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(reply.header("access-control-max-age"), "600");

    // Asking about a method the path does not have, or not a preflight at all: 405 with Allow.
    for headers in [
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "DELETE"),
        ][..],
        &[("origin", "https://app.example")][..],
    ] {
        let reply = send(http::Method::OPTIONS, &gw.url("/echo"), headers, b"").await;
        reply.problem(405, "method-not-allowed");
        assert_eq!(reply.header("allow"), "GET, HEAD");
    }
}

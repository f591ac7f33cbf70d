//! The plugin conformance check: every built-in plugin in this build (whatever `plugins/` holds),
//! held to its `plugin.toml` and its JSON Schema, and run through the real gateway with
//! randomised traffic and with its dependencies down. A plugin's own behaviour is tested in its
//! crate (`plugins/<name>/tests/`); what is here applies to all of them alike.
//!
//! Each plugin's schema carries a working configuration as `examples[0]` (also the one its docs
//! show). Upstreams a configuration names are the string values of its `upstream` keys.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::builtins::{self, Builtin};
use barbacane::compile::{self, Options};
use barbacane::diag::Code;
use barbacane::model::Middleware;
use barbacane::proxywasm::http::Pairs;
use barbacane::proxywasm::{
    self, Capability, Direction, MapType, PluginConfig, PluginModule, StreamCallbacks, Vm,
};
use barbacane::server::Config;
use serde_json::{Value, json};
use std::sync::Arc;
use support::{echo_upstream, get, project, send};

/// Every built-in; an empty build is a failure, not a silent pass.
fn all() -> &'static [Builtin] {
    let all = builtins::all();
    assert!(
        !all.is_empty(),
        "no built-in plugins in this build (BARBACANE_NO_BUILTINS=1?)"
    );
    all
}

fn schema(b: &Builtin) -> Value {
    serde_json::from_str(b.schema).unwrap()
}

/// The working configuration the plugin's schema documents as `examples[0]`.
fn example(b: &Builtin) -> Value {
    let schema = schema(b);
    let example = schema["examples"][0].clone();
    assert!(
        example.is_object(),
        "{}: schema.json needs a working configuration as examples[0]",
        b.name
    );
    let validator = compile::plugin_schema(&schema).unwrap();
    assert!(
        validator.is_valid(&example),
        "{}: examples[0] does not match the schema",
        b.name
    );
    example
}

/// The upstream names a configuration refers to: the string values of `upstream` keys.
fn upstream_names(config: &Value) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![config];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match value {
                        Value::String(name) if key == "upstream" => names.push(name.clone()),
                        _ => stack.push(value),
                    }
                }
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    names.sort();
    names.dedup();
    names
}

/// A spec whose global chain is `plugin` with `config`, dispatching `/r` (GET, POST, PUT,
/// DELETE) and `/r/{id}` to upstream `echo` at `echo_port`; the plugin's own upstreams point at
/// `dependency_port`.
fn spec(plugin: &str, config: &Value, echo_port: u16, dependency_port: u16) -> String {
    let mut upstreams = format!("  echo: {{endpoints: ['http://127.0.0.1:{echo_port}']}}\n");
    for name in upstream_names(config) {
        upstreams.push_str(&format!(
            "  {name}: {{endpoints: ['http://127.0.0.1:{dependency_port}']}}\n"
        ));
    }
    let dispatch = "x-barbacane-dispatch: {name: http-upstream, config: {upstream: echo}}";
    let operations = ["get", "post", "put", "delete"]
        .map(|m| format!("    {m}: {{{dispatch}}}\n"))
        .concat();
    format!(
        "openapi: 3.1.0
info: {{title: conformance, version: '1'}}
x-barbacane-upstreams:
{upstreams}x-barbacane-middlewares:
  - name: {plugin}
    config: {config}
paths:
  /r:
{operations}  /r/{{id}}:
    parameters: [{{name: id, in: path, required: true, schema: {{type: string}}}}]
{operations}"
    )
}

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// Printable ASCII of up to `max` bytes, with the characters parsers trip on.
    fn text(&mut self, max: usize) -> String {
        const ALPHABET: &[u8] = b"abcXYZ0189-_.~+/=:;,\"' {}[]()<>@%$#!?*&|\\^`eyJ.Bearer Basic \t";
        let len = self.below(max + 1);
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// A credential-shaped value: what auth plugins parse.
    fn credential(&mut self) -> String {
        match self.below(6) {
            0 => format!("Bearer {}", self.text(80)),
            1 => format!(
                "Bearer eyJ{}.eyJ{}.{}",
                self.text(30),
                self.text(60),
                self.text(40)
            ),
            2 => format!("Basic {}", self.text(40)),
            3 => format!("Basic {}", base64(self.text(30).as_bytes())),
            4 => self.text(60),
            _ => String::from("Bearer "),
        }
    }

    /// Request headers: the ones plugins read, with random values, and random others.
    fn headers(&mut self) -> Vec<(String, String)> {
        const NAMES: &[&str] = &[
            "authorization",
            "x-api-key",
            "apikey",
            "cookie",
            "origin",
            "access-control-request-method",
            "access-control-request-headers",
            "x-forwarded-for",
            "x-real-ip",
            "content-type",
            "x-correlation-id",
            "x-consumer-id",
            "x-consumer-groups",
            "x-request-id",
            "forwarded",
        ];
        let mut headers = Vec::new();
        for _ in 0..self.below(8) {
            let name = self.pick(NAMES);
            let value = match name {
                "authorization" => self.credential(),
                "x-forwarded-for" => {
                    let hops: Vec<String> = (0..self.below(4))
                        .map(|_| match self.below(3) {
                            0 => format!(
                                "10.{}.{}.{}",
                                self.below(256),
                                self.below(256),
                                self.below(256)
                            ),
                            1 => String::from("2001:db8::1"),
                            _ => self.text(15),
                        })
                        .collect();
                    hops.join(", ")
                }
                "content-type" => String::from(self.pick(&[
                    "application/json",
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "application/json; charset=utf-8",
                ])),
                "origin" => format!("https://{}.example", self.text(10)),
                _ => self.text(60),
            };
            headers.push((String::from(name), value));
        }
        if self.below(4) == 0 {
            headers.push((format!("x-{}", self.below(1000)), self.text(100)));
        }
        headers
    }

    /// A body: empty, JSON of sorts, or bytes.
    fn body(&mut self) -> Vec<u8> {
        match self.below(4) {
            0 => Vec::new(),
            1 => format!(
                "{{\"a\":{},\"b\":\"{}\",\"c\":[1,2,{{\"d\":null}}]}}",
                self.below(100),
                self.text(20).replace(['"', '\\'], "")
            )
            .into_bytes(),
            2 => self.text(200).into_bytes(),
            _ => self.bytes(300),
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        out.push_str(&"=".repeat(3 - chunk.len()));
    }
    out
}

/// `plugin.toml`'s capabilities are real names, and a VM driven with the example configuration
/// through start-up, ticks and randomised streams does nothing it did not declare (the host
/// records which capabilities each VM opens).
#[test]
fn every_builtin_does_only_what_its_manifest_declares() {
    let engine = proxywasm::engine().unwrap();
    for b in all() {
        let declared: Vec<Capability> = b
            .capabilities
            .iter()
            .map(|name| {
                Capability::from_name(name)
                    .unwrap_or_else(|| panic!("{}: unknown capability '{name}'", b.name))
            })
            .collect();
        let module = PluginModule::compile(&engine, b.wasm).unwrap();
        assert_eq!(module.info.abi.as_str(), b.abi, "{}: ABI marker", b.name);
        assert_ne!(
            module.info.callbacks,
            StreamCallbacks::ALL,
            "{}: declares no stream callbacks (barbacane_sdk::stream_callbacks!)",
            b.name
        );
        let config = example(b);
        let middleware = Middleware {
            plugin: b.name.to_string(),
            config: config.to_string(),
            root_id: String::new(),
            vm_config: String::new(),
            failure: Default::default(),
            backoff: Default::default(),
            allow_on_headers_stop_iteration: false,
            deadline_ms: barbacane::model::default_deadline_ms(),
        };
        let upstreams: Arc<[String]> = upstream_names(&config).into();
        let mut vm = Vm::start(
            &engine,
            &module,
            PluginConfig::for_middleware(&middleware, upstreams),
        )
        .unwrap_or_else(|e| panic!("{}: does not start with examples[0]: {e}", b.name));
        let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ b.name.len() as u64);
        for _ in 0..50 {
            let context = vm.create_stream(Arc::default()).unwrap();
            let mut request = Pairs::from([
                (":method", String::from("GET")),
                (":path", format!("/r?{}", random.text(20))),
                (":authority", String::from("gateway.test")),
                (":scheme", String::from("http")),
            ]);
            request.extend(random.headers());
            // Results are the plugin's to choose; a trap is what this test is not about (the
            // gateway test below counts those), so errors end the stream.
            let _ = vm.map_callback(context, MapType::RequestHeaders, &mut request, false);
            let body = random.body();
            let size = vm.append_body(context, Direction::Request, body.into());
            let _ = vm.on_body(context, Direction::Request, size, true);
            let mut response =
                Pairs::from([(":status", "200"), ("content-type", "application/json")]);
            let _ = vm.map_callback(context, MapType::ResponseHeaders, &mut response, false);
            let body = bytes::Bytes::from_static(br#"{"ok":true}"#);
            let size = vm.append_body(context, Direction::Response, body);
            let _ = vm.on_body(context, Direction::Response, size, true);
            let _ = vm.end_stream(context);
        }
        let _ = vm.on_tick();
        for used in vm.capabilities_used().iter() {
            assert!(
                declared.contains(&used),
                "{}: uses '{used}' but plugin.toml does not declare it (capabilities = {:?})",
                b.name,
                b.capabilities
            );
        }
    }
}

/// Compiling a chain entry whose configuration breaks the plugin's schema fails with E1062 at
/// the entry, naming the plugin and the JSON pointer: an unknown field, and each top-level
/// property given a value of the wrong type.
#[test]
fn every_builtin_refuses_bad_configurations_at_compile_time() {
    for b in all() {
        let good = example(b);
        let schema = schema(b);
        // An unknown field is reported at the object that may not have it.
        let mut bad_configs = vec![{
            let mut config = good.clone();
            config["not-a-field"] = json!(true);
            (config, String::from("config: Additional properties"))
        }];
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            let wrong = match property["type"].as_str() {
                Some("string") => json!(12345),
                Some("integer" | "number" | "boolean" | "array" | "object") => {
                    json!("not the right type")
                }
                _ => continue,
            };
            let mut config = good.clone();
            config[name] = wrong;
            bad_configs.push((config, format!("/{name}: ")));
        }
        for (config, pointer) in bad_configs {
            let dir = project(&[("api.yaml", &spec(b.name, &config, 1, 1))]);
            let diagnostics =
                compile::compile(&[dir.path().join("api.yaml")], None, Options { dev: true })
                    .err()
                    .unwrap_or_else(|| panic!("{}: {config} compiled", b.name));
            let expected = format!("plugin '{}': {pointer}", b.name);
            assert!(
                diagnostics
                    .iter()
                    .any(|d| d.code == Code::E1062 && d.message.starts_with(&expected)),
                "{}: {config}: expected E1062 '{expected}…', got {diagnostics:#?}",
                b.name
            );
        }
        // The example itself compiles (so the failures above are the bad fields').
        let dir = project(&[("api.yaml", &spec(b.name, &good, 1, 1))]);
        compile::compile(&[dir.path().join("api.yaml")], None, Options { dev: true })
            .unwrap_or_else(|d| panic!("{}: examples[0] does not compile: {d:#?}", b.name));
    }
}

/// How many times the gateway replaced `plugin`'s VM after a failure, from the metrics endpoint.
async fn failures(gw: &support::TestGateway, plugin: &str) -> u64 {
    let metrics = get(&gw.url("/__barbacane/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let prefix = format!("barbacane_plugin_failures_total{{plugin=\"{plugin}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Randomised requests (methods, paths, queries, the headers plugins parse, bodies) through each
/// plugin with its example configuration, its upstreams answered by an echo server (so callouts
/// get answers they do not expect): no answer is a plugin failure, and no VM is ever replaced.
#[tokio::test]
async fn every_builtin_survives_randomised_traffic() {
    let echo = echo_upstream().await;
    for b in all() {
        let config = example(b);
        let port = echo.addr.port();
        let dir = project(&[("api.yaml", &spec(b.name, &config, port, port))]);
        let gw = support::gateway_in(dir, Config::default()).await;
        let mut random = Random(0x2545_f491_4f6c_dd1d ^ b.name.len() as u64);
        for i in 0..150 {
            let method = random.pick(&["GET", "POST", "PUT", "DELETE", "OPTIONS"]);
            let path = match random.below(3) {
                0 => String::from("/r"),
                1 => format!("/r/{}", random.below(1000)),
                _ => format!(
                    "/r?{}={}&limit={}",
                    random.pick(&["apikey", "q", "token", "a"]),
                    random.text(10).replace(
                        [
                            '#', ' ', '%', '\t', '"', '<', '>', '\\', '^', '`', '{', '|', '}'
                        ],
                        ""
                    ),
                    random.below(10)
                ),
            };
            let headers = random.headers();
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let body = random.body();
            let reply = send(method.parse().unwrap(), &gw.url(&path), &headers, &body).await;
            let text = String::from_utf8_lossy(&reply.body);
            assert!(
                !text.contains("urn:barbacane:error:plugin-failed"),
                "{}: request {i} ({method} {path} {headers:?}) failed the plugin: {text}",
                b.name
            );
        }
        assert_eq!(failures(&gw, b.name).await, 0, "{}: VM replaced", b.name);
    }
}

/// With its upstreams down (nothing listens), an auth plugin lets nothing through: every
/// answer is its own refusal (4xx or 503), never the upstream's; a plugin of another kind never
/// fails the request because of them.
#[tokio::test]
async fn every_builtin_fails_closed_or_stays_out_of_the_way_when_its_dependencies_are_down() {
    let echo = echo_upstream().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    for b in all() {
        let config = example(b);
        if upstream_names(&config).is_empty() {
            continue;
        }
        let dir = project(&[("api.yaml", &spec(b.name, &config, echo.addr.port(), closed))]);
        let gw = support::gateway_in(dir, Config::default()).await;
        let mut random = Random(7 ^ b.name.len() as u64);
        for _ in 0..20 {
            let credential = random.credential();
            let reply = send(
                http::Method::GET,
                &gw.url("/r"),
                &[("authorization", &credential), ("x-api-key", &credential)],
                b"",
            )
            .await;
            let reached_upstream = reply.header("x-upstream") == "echo";
            if b.kind == builtins::Kind::Auth {
                assert!(
                    !reached_upstream,
                    "{}: let a request through with its dependency down",
                    b.name
                );
                let status = reply.status.as_u16();
                assert!(
                    (400..500).contains(&status) || status == 503,
                    "{}: answered {status} with its dependency down",
                    b.name
                );
            } else {
                assert!(
                    reached_upstream && reply.status == 200,
                    "{}: failed the request ({}) with its dependency down",
                    b.name,
                    reply.status
                );
            }
        }
        assert_eq!(failures(&gw, b.name).await, 0, "{}: VM replaced", b.name);
    }
}

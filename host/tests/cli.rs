//! `barbacane validate` / `compile` / `serve --artifact` as a user runs them: diagnostics with
//! codes and positions, JSON output, exit codes, artifacts and their refusals.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use support::{project, run};

const HEAD: &str = "openapi: 3.1.0\ninfo: {title: t, version: '1'}\n";

fn mock_op(path: &str) -> String {
    format!(
        "  {path}:\n    get:\n      x-barbacane-dispatch: {{name: mock, config: {{status: 200}}}}\n"
    )
}

/// (name, spec text, expected code, expected line:col)
fn broken_specs() -> Vec<(&'static str, String, &'static str, (usize, usize))> {
    vec![
        (
            "syntax",
            "openapi: 3.1.0\npaths: {\n  /a: [\n".into(),
            "E1002",
            (4, 1),
        ),
        (
            "tabs",
            "openapi: 3.1.0\n\tpaths: {}\n".into(),
            "E1002",
            (1, 10),
        ),
        (
            "json-syntax",
            "{\"openapi\": \"3.1.0\", \"paths\": {,}}".into(),
            "E1002",
            (1, 32),
        ),
        (
            "not-a-mapping",
            "- just\n- a list\n".into(),
            "E1003",
            (1, 1),
        ),
        (
            "no-openapi",
            "info: {title: t}\npaths: {}\n".into(),
            "E1003",
            (1, 1),
        ),
        (
            "swagger",
            "swagger: '2.0'\npaths: {}\n".into(),
            "E1004",
            (1, 10),
        ),
        (
            "version",
            "openapi: 4.0.0\npaths: {}\n".into(),
            "E1004",
            (1, 10),
        ),
        (
            "unquoted-version",
            "openapi: 3.1\npaths: {}\n".into(),
            "E1004",
            (1, 10),
        ),
        ("paths-list", format!("{HEAD}paths: [1]\n"), "E1005", (3, 1)),
        (
            "unresolved-ref",
            format!(
                "{HEAD}paths:\n  /a:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: {{$ref: '#/components/schemas/Nope'}}\n      x-barbacane-dispatch: {{name: mock}}\n"
            ),
            "E1010",
            (9, 28),
        ),
        (
            "missing-ref-file",
            format!("{HEAD}paths:\n  /a:\n    $ref: 'missing.yaml#/a'\n"),
            "E1010",
            (5, 11),
        ),
        (
            "ref-loop",
            format!(
                "{HEAD}paths:\n  /a:\n    $ref: '#/components/pathItems/x'\ncomponents:\n  pathItems:\n    x: {{$ref: '#/components/pathItems/y'}}\n    y: {{$ref: '#/components/pathItems/x'}}\n"
            ),
            "E1011",
            (4, 3),
        ),
        (
            "no-dispatch",
            format!("{HEAD}paths:\n  /a:\n    get: {{}}\n"),
            "E1020",
            (5, 5),
        ),
        (
            "unknown-dispatcher",
            format!(
                "{HEAD}paths:\n  /a:\n    get:\n      x-barbacane-dispatch: {{name: lambda}}\n"
            ),
            "E1021",
            (6, 36),
        ),
        (
            "bad-mock-config",
            format!(
                "{HEAD}paths:\n  /a:\n    get:\n      x-barbacane-dispatch: {{name: mock, config: {{status: ok}}}}\n"
            ),
            "E1022",
            (6, 42),
        ),
        (
            "bad-timeout",
            format!(
                "{HEAD}x-barbacane-upstreams:\n  u: {{endpoints: ['https://u.test']}}\npaths:\n  /a:\n    get:\n      x-barbacane-dispatch:\n        name: http-upstream\n        config: {{upstream: u, timeout: soon}}\n"
            ),
            "E1022",
            (10, 40),
        ),
        (
            "unknown-upstream",
            format!(
                "{HEAD}paths:\n  /a:\n    get:\n      x-barbacane-dispatch:\n        name: http-upstream\n        config: {{upstream: nowhere}}\n"
            ),
            "E1030",
            (8, 28),
        ),
        (
            "bad-upstream-url",
            format!(
                "{HEAD}x-barbacane-upstreams:\n  u: {{endpoints: ['ftp://u.test']}}\npaths: {{}}\n"
            ),
            "E1031",
            (4, 19),
        ),
        (
            "plaintext-upstream",
            format!(
                "{HEAD}x-barbacane-upstreams:\n  u: {{endpoints: ['http://u.test']}}\npaths: {{}}\n"
            ),
            "E1032",
            (4, 19),
        ),
        (
            "conflict",
            format!(
                "{HEAD}paths:\n{}{}",
                mock_op("/pets/{id}"),
                mock_op("/pets/{petId}/")
            ),
            "E1040",
            (8, 5),
        ),
        (
            "partial-template",
            format!("{HEAD}paths:\n{}", mock_op("/files/{name}.json")),
            "E1041",
            (4, 3),
        ),
        (
            "path-param-not-in-template",
            format!(
                "{HEAD}paths:\n  /a:\n    get:\n      parameters: [{{name: id, in: path, required: true}}]\n      x-barbacane-dispatch: {{name: mock}}\n"
            ),
            "E1050",
            (6, 7),
        ),
        (
            "bad-schema",
            format!(
                "{HEAD}paths:\n  /a:\n    get:\n      parameters: [{{name: q, in: query, schema: {{type: 12}}}}]\n      x-barbacane-dispatch: {{name: mock}}\n"
            ),
            "E1051",
            (6, 41),
        ),
        (
            "middleware",
            format!("{HEAD}x-barbacane-middlewares: [{{name: no-such-plugin}}]\npaths: {{}}\n"),
            "E1060",
            (3, 27),
        ),
    ]
}

#[test]
fn broken_specs_get_their_code_and_position_and_never_panic() {
    let mut mismatches = Vec::new();
    for (name, text, code, (line, column)) in broken_specs() {
        let dir = project(&[("api.yaml", &text)]);
        let (status, stdout, stderr) = run(
            dir.path(),
            &["validate", "--spec", "api.yaml", "--format", "json"],
        );
        assert_eq!(status, 1, "{name}: exit code; stderr: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let doc: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{name}: {e}: {stdout}"));
        let first = &doc["diagnostics"][0];
        assert_eq!(first["file"], "api.yaml", "{name}");
        assert!(
            first["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "{name}"
        );
        let got = (
            first["code"].as_str().unwrap_or(""),
            first["line"].as_u64().unwrap_or(0) as usize,
            first["column"].as_u64().unwrap_or(0) as usize,
        );
        if got != (code, line, column) {
            mismatches.push(format!(
                "{name}: expected {code} at {line}:{column}, got {got:?}: {}",
                first["message"]
            ));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

#[test]
fn human_diagnostics_show_code_position_hint_and_source_line() {
    let dir = project(&[(
        "api.yaml",
        &format!(
            "{HEAD}paths:\n  /a:\n    get:\n      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: nowhere}}}}\n"
        ),
    )]);
    let (status, _, stderr) = run(dir.path(), &["validate", "--spec", "api.yaml"]);
    assert_eq!(status, 1);
    assert!(
        stderr.contains("error[E1030]: unknown upstream 'nowhere'"),
        "{stderr}"
    );
    assert!(stderr.contains("--> api.yaml:6:70"), "{stderr}");
    assert!(
        stderr.contains("= hint: declare it under x-barbacane-upstreams"),
        "{stderr}"
    );
    assert!(
        stderr.contains("6 |       x-barbacane-dispatch"),
        "{stderr}"
    );
}

#[test]
fn every_error_is_reported_in_one_run() {
    let dir = project(&[(
        "api.yaml",
        &format!(
            "{HEAD}paths:\n  /a:\n    get: {{}}\n  /b:\n    get:\n      x-barbacane-dispatch: {{name: nope}}\n"
        ),
    )]);
    let (status, stdout, _) = run(
        dir.path(),
        &["validate", "--spec", "api.yaml", "--format", "json"],
    );
    assert_eq!(status, 1);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let codes: Vec<&str> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["E1020", "E1021"]);
}

#[test]
fn refs_across_files_and_both_versions_and_formats_validate() {
    let dir = project(&[
        (
            "v30.yaml",
            "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /pets:\n    post:\n      requestBody:\n        $ref: 'shared/bodies.yaml#/Pet'\n      x-barbacane-dispatch: {name: mock, config: {status: 201}}\n",
        ),
        (
            "shared/bodies.yaml",
            "Pet:\n  required: true\n  content:\n    application/json:\n      schema: {$ref: 'schemas.json#/Pet'}\n",
        ),
        (
            "shared/schemas.json",
            "{\"Pet\": {\"type\": \"object\", \"properties\": {\"tag\": {\"type\": \"string\", \"nullable\": true}}}}",
        ),
        (
            "v31.json",
            "{\"openapi\": \"3.1.0\", \"info\": {\"title\": \"t\", \"version\": \"1\"}, \"paths\": {\"/owners\": {\"get\": {\"x-barbacane-dispatch\": {\"name\": \"mock\"}}}}}",
        ),
    ]);
    let (status, stdout, stderr) = run(
        dir.path(),
        &["validate", "--spec", "v30.yaml", "--spec", "v31.json"],
    );
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok: 2 operations"), "{stdout}");

    let (status, _, stderr) = run(
        dir.path(),
        &[
            "compile", "--spec", "v30.yaml", "--spec", "v31.json", "-o", "both.bca",
        ],
    );
    assert_eq!(status, 0, "{stderr}");
    let manifest = barbacane::artifact::read(&dir.path().join("both.bca"))
        .unwrap()
        .manifest;
    let sources: Vec<&str> = manifest.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        sources,
        vec![
            "v30.yaml",
            "shared/bodies.yaml",
            "shared/schemas.json",
            "v31.json"
        ]
    );
    let routes: Vec<&str> = manifest.routes.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(routes, vec!["/pets", "/owners"]);
}

#[test]
fn errors_in_referenced_files_point_into_them() {
    let dir = project(&[
        (
            "api.yaml",
            &format!("{HEAD}paths:\n  /a:\n    $ref: 'items.yaml#/a'\n"),
        ),
        (
            "items.yaml",
            "a:\n  get:\n    x-barbacane-dispatch: {name: nope}\n",
        ),
    ]);
    let (status, stdout, _) = run(
        dir.path(),
        &["validate", "--spec", "api.yaml", "--format", "json"],
    );
    assert_eq!(status, 1);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["file"].as_str(), d["line"].as_u64()),
        (Some("E1021"), Some("items.yaml"), Some(3))
    );
}

#[test]
fn route_conflicts_are_found_across_specs() {
    let dir = project(&[
        (
            "a.yaml",
            &format!("{HEAD}paths:\n{}", mock_op("/pets/{id}")),
        ),
        (
            "b.yaml",
            &format!("{HEAD}paths:\n{}", mock_op("/pets/{name}")),
        ),
    ]);
    let (status, stdout, _) = run(
        dir.path(),
        &[
            "compile", "--spec", "a.yaml", "--spec", "b.yaml", "-o", "api.bca", "--format", "json",
        ],
    );
    assert_eq!(status, 1);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["file"].as_str()),
        (Some("E1040"), Some("b.yaml"))
    );
    assert!(d["message"].as_str().unwrap().contains("a.yaml:5:5"), "{d}");
    assert!(
        !dir.path().join("api.bca").exists(),
        "nothing written on error"
    );
}

#[test]
fn plaintext_upstreams_need_dev_or_an_explicit_opt_in() {
    let spec = |extra: &str| {
        format!(
            "{HEAD}x-barbacane-upstreams:\n  u: {{endpoints: ['http://127.0.0.1:1']{extra}}}\npaths:\n  /a:\n    get:\n      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: u}}}}\n"
        )
    };
    let dir = project(&[
        ("plain.yaml", &spec("")),
        ("optin.yaml", &spec(", allow_plaintext: true")),
    ]);
    assert_eq!(run(dir.path(), &["validate", "--spec", "plain.yaml"]).0, 1);
    assert_eq!(
        run(dir.path(), &["validate", "--spec", "plain.yaml", "--dev"]).0,
        0
    );
    assert_eq!(run(dir.path(), &["validate", "--spec", "optin.yaml"]).0, 0);
}

#[test]
fn manifest_errors_are_reported() {
    let dir = project(&[
        ("api.yaml", &format!("{HEAD}paths: {{}}\n")),
        (
            "barbacane.yaml",
            "plugins:\n  waf: {source: 'http://x/waf.wasm'}\n",
        ),
        ("unknown.yaml", "plugin: {}\n"),
    ]);
    for manifest in ["barbacane.yaml", "unknown.yaml"] {
        let (status, stdout, _) = run(
            dir.path(),
            &[
                "validate",
                "--spec",
                "api.yaml",
                "--manifest",
                manifest,
                "--format",
                "json",
            ],
        );
        assert_eq!(status, 1, "{manifest}");
        assert!(stdout.contains("E1070"), "{manifest}: {stdout}");
    }
}

#[test]
fn compile_writes_a_deterministic_artifact_with_a_manifest() {
    let dir = project(&[("api.yaml", &format!("{HEAD}paths:\n{}", mock_op("/a")))]);
    let (status, stdout, stderr) = run(
        dir.path(),
        &["compile", "--spec", "api.yaml", "-o", "one.bca"],
    );
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.contains("compiled 1 operations"), "{stdout}");
    assert_eq!(
        run(
            dir.path(),
            &["compile", "--spec", "api.yaml", "-o", "two.bca"]
        )
        .0,
        0
    );
    let one = std::fs::read(dir.path().join("one.bca")).unwrap();
    assert_eq!(
        one,
        std::fs::read(dir.path().join("two.bca")).unwrap(),
        "same inputs, same bytes"
    );
    let artifact = barbacane::artifact::read(&dir.path().join("one.bca")).unwrap();
    let m = &artifact.manifest;
    assert_eq!(
        (m.format.as_str(), m.format_version),
        ("barbacane-artifact", 1)
    );
    assert_eq!(m.compiler_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(m.sources.len(), 1);
    assert_eq!(m.sources[0].sha256.len(), 64);
    assert_eq!(
        (m.routes[0].method.as_str(), m.routes[0].path.as_str()),
        ("GET", "/a")
    );
    assert!(m.entries.iter().any(|e| e.name == "routes.json"));
}

/// Rewrites the artifact's tar so that `edit` applies to entry `name`, keeping the tar valid.
fn rewrite_entry(path: &std::path::Path, name: &str, edit: impl Fn(&mut Vec<u8>)) {
    let bytes = std::fs::read(path).unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut out = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let entry_name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if entry_name == name {
            edit(&mut data);
        }
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        out.append_data(&mut header, &entry_name, data.as_slice())
            .unwrap();
    }
    std::fs::write(path, out.into_inner().unwrap()).unwrap();
}

#[test]
fn serve_refuses_bad_artifacts_with_distinct_codes() {
    let dir = project(&[("api.yaml", &format!("{HEAD}paths:\n{}", mock_op("/a")))]);
    assert_eq!(
        run(
            dir.path(),
            &["compile", "--spec", "api.yaml", "-o", "good.bca"]
        )
        .0,
        0
    );
    let good = std::fs::read(dir.path().join("good.bca")).unwrap();
    let serve = |file: &str| {
        run(
            dir.path(),
            &["serve", "--artifact", file, "--listen", "127.0.0.1:0"],
        )
    };

    std::fs::write(dir.path().join("truncated.bca"), &good[..good.len() / 2]).unwrap();
    let (code, _, err) = serve("truncated.bca");
    assert_eq!(code, 10, "{err}");
    assert!(
        err.contains("truncated") || err.contains("missing"),
        "{err}"
    );

    std::fs::write(dir.path().join("garbage.bca"), b"not an artifact at all").unwrap();
    assert_eq!(serve("garbage.bca").0, 10);

    std::fs::copy(dir.path().join("good.bca"), dir.path().join("tampered.bca")).unwrap();
    rewrite_entry(&dir.path().join("tampered.bca"), "routes.json", |d| {
        let text = String::from_utf8(d.clone())
            .unwrap()
            .replace("\"status\":200", "\"status\":201");
        *d = text.into_bytes();
    });
    let (code, _, err) = serve("tampered.bca");
    assert_eq!(code, 11, "{err}");
    assert!(
        err.contains("routes.json") && err.contains("sha256"),
        "{err}"
    );

    std::fs::copy(dir.path().join("good.bca"), dir.path().join("newer.bca")).unwrap();
    rewrite_entry(&dir.path().join("newer.bca"), "manifest.json", |d| {
        let text = String::from_utf8(d.clone())
            .unwrap()
            .replace("\"format_version\": 1", "\"format_version\": 99");
        *d = text.into_bytes();
    });
    let (code, _, err) = serve("newer.bca");
    assert_eq!(code, 12, "{err}");
    assert!(err.contains("newer") && err.contains("99"), "{err}");

    assert_eq!(serve("absent.bca").0, 3);
}

#[test]
fn usage_errors_exit_2() {
    let dir = project(&[]);
    assert_eq!(run(dir.path(), &["compile", "--spec", "x.yaml"]).0, 2);
    assert_eq!(run(dir.path(), &["frobnicate"]).0, 2);
}

#[test]
fn a_root_dispatch_is_the_default_for_operations_without_one() {
    let spec = format!(
        "{HEAD}x-barbacane-upstreams:\n  api: {{endpoints: ['https://api.internal']}}\nx-barbacane-dispatch: {{name: http-upstream, config: {{upstream: api}}}}\npaths:\n  /a/{{id}}:\n    get: {{}}\n  /health:\n    get:\n      x-barbacane-dispatch: {{name: mock}}\n"
    );
    let dir = project(&[("api.yaml", &spec)]);
    assert_eq!(
        run(
            dir.path(),
            &["compile", "--spec", "api.yaml", "-o", "api.bca"]
        )
        .0,
        0
    );
    let api = barbacane::artifact::read(&dir.path().join("api.bca"))
        .unwrap()
        .api;
    let dispatch = |path: &str| {
        api.operations
            .iter()
            .find(|o| o.path == path)
            .unwrap()
            .dispatch
            .clone()
    };
    match dispatch("/a/{id}") {
        barbacane::model::Dispatch::HttpUpstream(h) => {
            assert_eq!((h.upstream.as_str(), h.path.as_str()), ("api", "/a/{id}"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        dispatch("/health"),
        barbacane::model::Dispatch::Mock(_)
    ));
}

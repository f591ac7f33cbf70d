//! Signed plugin distribution end to end: the real `barbacane` binary against a real registry
//! process (Debian's `docker-registry`, htpasswd auth, deletes enabled; started per test by the
//! registry crate's harness), with the `headers` conformance filter as the plugin and
//! credentials from a Docker config file (`DOCKER_CONFIG`).
//!
//! * the plugin verbs: keygen → push → inspect → pull → sign → verify, and their refusals;
//! * `compile` with an `oci://` source: verify, pull by digest, bundle, `barbacane.lock`; the
//!   artifact then serves with the registry stopped;
//! * the lock pins a digest across a moved tag until `compile --update`;
//! * each refusal's exit code and hint, with no artifact, no lock change and nothing cached.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

#[path = "../../registry/tests/common/mod.rs"]
mod registry_harness;

use barbacane_registry::Lockfile;
use registry_harness::{PASS, TestRegistry, USER, files_under, filter_wasm, filter_wasm_variant};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A user's environment: a working directory, a Docker config with credentials for the test
/// registry, a private plugin cache, and `COSIGN_PASSWORD`.
struct User {
    dir: tempfile::TempDir,
    docker: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl User {
    /// Logged in to `reg` with `password` (through `$DOCKER_CONFIG/config.json`).
    fn new(reg: &TestRegistry, password: &str) -> Self {
        use base64::Engine;
        let docker = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        std::fs::write(
            docker.path().join("config.json"),
            format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, reg.host()),
        )
        .unwrap();
        User {
            dir: tempfile::tempdir().unwrap(),
            docker,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(support::bin());
        c.args(args)
            .current_dir(self.dir.path())
            .env("DOCKER_CONFIG", self.docker.path())
            .env("BARBACANE_CACHE_DIR", self.cache.path())
            .env("HOME", self.dir.path())
            .env("COSIGN_PASSWORD", "pw")
            .stdin(Stdio::null());
        c
    }

    /// Runs `barbacane args…`: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let out = self
            .command(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(args);
        assert_eq!(
            code, 0,
            "barbacane {args:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    /// Runs and asserts exit `code`; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let (got, stdout, stderr) = self.run(args);
        assert_eq!(
            got, code,
            "barbacane {args:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        stderr
    }

    /// The module layers in the plugin cache (`blobs/`; compiled modules live in `wasm/`).
    fn cached(&self) -> Vec<PathBuf> {
        files_under(&self.cache.path().join("blobs"))
    }

    /// Starts `barbacane serve args…` on an ephemeral port.
    fn serve(&self, args: &[&str]) -> Server {
        let mut child = self
            .command(&["serve"])
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .parse()
            .unwrap();
        Server { child, addr }
    }
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The manifest digest `barbacane plugin push` printed.
fn pushed_digest(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("manifest "))
        .unwrap_or_else(|| panic!("no manifest digest in {stdout}"))
        .trim()
        .to_string()
}

/// A spec whose one operation runs plugin `waf` (the headers filter), answered by a mock.
const SPEC: &str = "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      x-barbacane-middlewares:\n        - {name: waf, config: 'x-added: yes'}\n      x-barbacane-dispatch: {name: mock, config: {status: 200, body: ok}}\n";

/// Writes api.yaml and barbacane.yaml (plugin `waf` from `source`, trusting `keys`).
fn write_project(user: &User, source: &str, keys: &[&str], allow_unsigned: bool) {
    user.write("api.yaml", SPEC);
    let keys: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
    user.write(
        "barbacane.yaml",
        format!(
            "plugins:\n  waf: {{source: '{source}'}}\ntrust:\n  keys: [{}]\n  allow_unsigned: {allow_unsigned}\n",
            keys.join(", ")
        ),
    );
}

const COMPILE: &[&str] = &[
    "compile",
    "--spec",
    "api.yaml",
    "--manifest",
    "barbacane.yaml",
    "-o",
    "api.bca",
];

fn lock(user: &User) -> Option<String> {
    std::fs::read_to_string(user.path("barbacane.lock")).ok()
}

fn artifact_plugin(user: &User, name: &str) -> Vec<u8> {
    let artifact = barbacane::artifact::read(&user.path(name)).unwrap();
    artifact.plugins.get("waf").unwrap().clone()
}

/// Keys `alice` (trusted) and `bob` under keys/, made with `plugin keygen`.
fn keys(user: &User) {
    for who in ["alice", "bob"] {
        user.ok(&["plugin", "keygen", "--output-dir", &format!("keys/{who}")]);
    }
}

/// Pushes the filter (or a variant) to `repo_tag`, signed by `signer` when given.
fn push(
    user: &User,
    reg: &TestRegistry,
    wasm: &[u8],
    repo_tag: &str,
    signer: Option<&str>,
) -> String {
    user.write("plugin.wasm", wasm);
    let reference = reg.oci(repo_tag);
    let key = signer.map(|s| format!("keys/{s}/cosign.key"));
    let mut args = vec!["plugin", "push", "plugin.wasm", reference.as_str()];
    if let Some(key) = &key {
        args.extend(["--key", key.as_str()]);
    }
    pushed_digest(&user.ok(&args))
}

#[test]
fn plugin_verbs_keygen_push_inspect_pull_sign_verify() {
    let reg = TestRegistry::start();
    let user = User::new(&reg, PASS);
    let wasm = filter_wasm();
    user.write("headers.wasm", &wasm);
    user.write(
        "plugin.toml",
        "name = 'headers'\nversion = '1.0.0'\nkind = 'middleware'\nschema = 'schema.json'\n",
    );
    user.write("schema.json", r#"{"type": "string"}"#);

    // keygen: cosign's files, password from COSIGN_PASSWORD; never overwrites.
    keys(&user);
    let private = std::fs::read_to_string(user.path("keys/alice/cosign.key")).unwrap();
    assert!(
        private.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"),
        "{private}"
    );
    let public = std::fs::read_to_string(user.path("keys/alice/cosign.pub")).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    let stderr = user.fails(&["plugin", "keygen", "--output-dir", "keys/alice"], 24);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(user.path("keys/alice/cosign.key")).unwrap(),
        private
    );

    // push: the CNCF Wasm layout.
    let reference = reg.oci("filters/headers:1.0.0");
    let out = user.ok(&[
        "plugin",
        "push",
        "headers.wasm",
        &reference,
        "--manifest",
        "plugin.toml",
    ]);
    let digest = pushed_digest(&out);
    let manifest: serde_json::Value =
        serde_json::from_slice(&reg.manifest("filters/headers", "1.0.0")).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["layers"][0]["size"], wasm.len());
    assert_eq!(
        manifest["annotations"]["io.barbacane.plugin.name"],
        "headers"
    );
    assert_eq!(
        barbacane_registry::module::sha256_digest(&reg.manifest("filters/headers", "1.0.0")),
        digest
    );

    // inspect a reference: manifest, digests, size, ABI marker, imports, plugin.toml.
    let out = user.ok(&["plugin", "inspect", &reference]);
    for expected in [
        digest.as_str(),
        &barbacane_registry::module::sha256_digest(&wasm),
        &format!("{} bytes", wasm.len()),
        "proxy_abi_version_0_2_1",
        "env.proxy_log (func)",
        "plugin:    headers 1.0.0 (middleware)",
        "\"artifactType\": \"application/vnd.barbacane.plugin.v1+wasm\"",
    ] {
        assert!(out.contains(expected), "{expected:?} not in:\n{out}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&user.ok(&["plugin", "inspect", &reference, "--format", "json"]))
            .unwrap();
    assert_eq!(json["manifest_digest"], digest.as_str());
    assert_eq!(json["plugin"]["config_schema"]["type"], "string");
    // … and a local file.
    let out = user.ok(&["plugin", "inspect", "headers.wasm"]);
    assert!(
        out.contains(&barbacane_registry::module::sha256_digest(&wasm)),
        "{out}"
    );
    assert!(out.contains("proxy_abi_version_0_2_1"), "{out}");
    assert!(out.contains("env.proxy_log (func)"), "{out}");

    // pull: identical bytes.
    user.ok(&["plugin", "pull", &reference, "-o", "pulled.wasm"]);
    assert_eq!(std::fs::read(user.path("pulled.wasm")).unwrap(), wasm);

    // Not signed yet: verify and a verifying pull refuse with the unsigned code.
    let stderr = user.fails(
        &[
            "plugin",
            "verify",
            &reference,
            "--key",
            "keys/alice/cosign.pub",
        ],
        11,
    );
    assert!(stderr.contains("barbacane plugin sign"), "{stderr}");
    let stderr = user.fails(
        &[
            "plugin",
            "pull",
            &reference,
            "-o",
            "verified.wasm",
            "--key",
            "keys/alice/cosign.pub",
        ],
        11,
    );
    assert!(stderr.contains("not signed"), "{stderr}");
    assert!(!user.path("verified.wasm").exists());

    // push --key with a wrong password: refused before anything is pushed.
    let (code, _, stderr) = user.run_with(
        &[
            "plugin",
            "push",
            "headers.wasm",
            &reg.oci("filters/other:1"),
            "--key",
            "keys/alice/cosign.key",
        ],
        &[("COSIGN_PASSWORD", "wrong")],
    );
    assert_eq!(code, 22, "{stderr}");
    assert!(stderr.contains("wrong password"), "{stderr}");
    let tags = reg.http("GET", "/v2/filters/other/tags/list", &[], b"");
    assert_eq!(tags.status, 404, "{}", String::from_utf8_lossy(&tags.body));

    // sign with a wrong password: bad key; then sign: the cosign signature tag.
    let (code, _, stderr) = user.run_with(
        &[
            "plugin",
            "sign",
            &reference,
            "--key",
            "keys/alice/cosign.key",
        ],
        &[("COSIGN_PASSWORD", "wrong")],
    );
    assert_eq!(code, 22, "{stderr}");
    user.ok(&[
        "plugin",
        "sign",
        &reference,
        "--key",
        "keys/alice/cosign.key",
    ]);
    let sig_tag = format!("sha256-{}.sig", &digest["sha256:".len()..]);
    let sig: serde_json::Value =
        serde_json::from_slice(&reg.manifest("filters/headers", &sig_tag)).unwrap();
    assert_eq!(
        sig["layers"][0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );

    // verify: alice's key verifies, bob's is not trusted.
    let out = user.ok(&[
        "plugin",
        "verify",
        &reference,
        "--key",
        "keys/alice/cosign.pub",
    ]);
    assert!(out.contains(&digest), "{out}");
    let stderr = user.fails(
        &[
            "plugin",
            "verify",
            &reference,
            "--key",
            "keys/bob/cosign.pub",
        ],
        12,
    );
    assert!(stderr.contains("trust.keys"), "{stderr}");
    user.ok(&[
        "plugin",
        "pull",
        &reference,
        "-o",
        "verified.wasm",
        "--key",
        "keys/alice/cosign.pub",
    ]);
    assert_eq!(std::fs::read(user.path("verified.wasm")).unwrap(), wasm);

    // Garbage references.
    for garbage in [
        "not a reference",
        "https://example.com/x:1",
        "127.0.0.1/UPPER:1",
        "x",
    ] {
        let stderr = user.fails(&["plugin", "pull", garbage, "-o", "g.wasm"], 10);
        assert!(stderr.contains("bad plugin reference"), "{stderr}");
    }
    user.fails(
        &["plugin", "push", "headers.wasm", "127.0.0.1:1/a/b@sha256:0"],
        10,
    );
    assert!(!user.path("g.wasm").exists());

    // Not Proxy-Wasm: refused before anything is pushed.
    user.write("text.wasm", "hello, not wasm");
    user.write("bare.wasm", b"\0asm\x01\0\0\0");
    for file in ["text.wasm", "bare.wasm"] {
        let stderr = user.fails(&["plugin", "push", file, &reg.oci("filters/bad:1")], 17);
        assert!(stderr.contains("not a Proxy-Wasm module"), "{stderr}");
    }
    let tags = reg.http("GET", "/v2/filters/bad/tags/list", &[], b"");
    assert_eq!(tags.status, 404, "{}", String::from_utf8_lossy(&tags.body));
    user.fails(&["plugin", "inspect", "text.wasm"], 17);

    // A tag that does not exist.
    user.fails(&["plugin", "pull", &reg.oci("filters/headers:9.9.9")], 20);
}

#[test]
fn compile_pins_a_signed_oci_plugin_and_the_artifact_serves_without_the_registry() {
    let reg = TestRegistry::start();
    let user = User::new(&reg, PASS);
    keys(&user);
    let wasm = filter_wasm();
    let digest = push(&user, &reg, &wasm, "filters/waf:1.2.0", Some("alice"));
    let source = reg.oci("filters/waf:1.2.0");
    write_project(&user, &source, &["keys/alice/cosign.pub"], false);

    // serve --spec resolves like compile but writes no lock.
    {
        let server = user.serve(&["--spec", "api.yaml", "--manifest", "barbacane.yaml"]);
        let reply = get(server.addr, "/a");
        assert!(reply.contains("x-conformance: headers"), "{reply}");
    }
    assert_eq!(lock(&user), None);

    let out = user.ok(COMPILE);
    assert!(out.contains("barbacane.lock"), "{out}");
    assert_eq!(artifact_plugin(&user, "api.bca"), wasm);
    let lockfile = Lockfile::read(&user.path("barbacane.lock")).unwrap();
    let entry = lockfile.get(&source).unwrap();
    assert_eq!(entry.manifest_digest, digest);
    assert_eq!(
        entry.layer_digest,
        barbacane_registry::module::sha256_digest(&wasm)
    );
    assert_eq!(entry.media_type, "application/wasm");
    let alice = barbacane_registry::key_fingerprint(
        &std::fs::read_to_string(user.path("keys/alice/cosign.pub")).unwrap(),
    )
    .unwrap();
    assert_eq!(entry.signer.as_deref(), Some(alice.as_str()));
    // The module is cached under its layer digest.
    assert_eq!(user.cached().len(), 1);

    // A second compile with nothing changed leaves the lock as it was.
    let before = lock(&user).unwrap();
    user.ok(COMPILE);
    assert_eq!(lock(&user).unwrap(), before);

    // The registry goes away.
    drop(reg);

    // serve --artifact needs nothing but the artifact: the filter runs.
    {
        let server = user.serve(&["--artifact", "api.bca"]);
        let reply = get(server.addr, "/a");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("x-conformance: headers"), "{reply}");
    }

    // validate needs no network: the lock and the cache suffice.
    let (code, stdout, stderr) = user.run(&[
        "validate",
        "--spec",
        "api.yaml",
        "--manifest",
        "barbacane.yaml",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("not checked"), "{stderr}");

    // compile cannot reach the registry: refused, nothing written.
    let stderr = user.fails(
        &[
            "compile",
            "--spec",
            "api.yaml",
            "--manifest",
            "barbacane.yaml",
            "-o",
            "new.bca",
        ],
        15,
    );
    assert!(stderr.contains("cannot reach registry"), "{stderr}");
    assert!(stderr.contains("check the registry address"), "{stderr}");
    assert!(!user.path("new.bca").exists());
    assert_eq!(lock(&user).unwrap(), before);
}

#[test]
fn the_lock_pins_a_moved_tag_until_update() {
    let reg = TestRegistry::start();
    let user = User::new(&reg, PASS);
    keys(&user);
    let v1 = filter_wasm();
    let d1 = push(&user, &reg, &v1, "filters/waf:1", Some("alice"));
    let source = reg.oci("filters/waf:1");
    write_project(&user, &source, &["keys/alice/cosign.pub"], false);
    user.ok(COMPILE);
    let pinned = lock(&user).unwrap();
    assert!(pinned.contains(&d1), "{pinned}");

    // The tag moves to new, unsigned bytes.
    let v2 = filter_wasm_variant("v2");
    let d2 = push(&user, &reg, &v2, "filters/waf:1", None);
    assert_ne!(d1, d2);

    // compile still uses the locked digest.
    std::fs::remove_file(user.path("api.bca")).unwrap();
    user.ok(COMPILE);
    assert_eq!(artifact_plugin(&user, "api.bca"), v1);
    assert_eq!(lock(&user).unwrap(), pinned);

    // --update re-resolves the tag: the new digest is unsigned, so it is refused.
    let mut update = COMPILE.to_vec();
    update[6] = "updated.bca";
    update.push("--update");
    let stderr = user.fails(&update, 11);
    assert!(stderr.contains("is not signed"), "{stderr}");
    assert!(!user.path("updated.bca").exists());
    assert_eq!(lock(&user).unwrap(), pinned);

    // Once signed, --update takes it and re-pins.
    user.ok(&["plugin", "sign", &source, "--key", "keys/alice/cosign.key"]);
    user.ok(&update);
    assert_eq!(artifact_plugin(&user, "updated.bca"), v2);
    let repinned = lock(&user).unwrap();
    assert!(
        repinned.contains(&d2) && !repinned.contains(&d1),
        "{repinned}"
    );
}

#[test]
fn refusals_have_distinct_codes_and_hints_and_write_nothing() {
    let reg = TestRegistry::start();
    let admin = User::new(&reg, PASS);
    keys(&admin);
    let alice_pub = std::fs::read(admin.path("keys/alice/cosign.pub")).unwrap();

    // A fresh project (own dir, cache, lock) for each case; `prepare` may compile first.
    let case = |source: &str, allow_unsigned: bool, password: &str| {
        let user = User::new(&reg, password);
        user.write("keys/alice.pub", &alice_pub);
        write_project(&user, source, &["keys/alice.pub"], allow_unsigned);
        user
    };
    let refused = |user: &User, code: i32, hint: &str| {
        let lock_before = lock(user);
        let cached_before = user.cached();
        let stderr = user.fails(COMPILE, code);
        assert!(stderr.contains(hint), "{hint:?} not in: {stderr}");
        assert!(!user.path("api.bca").exists(), "artifact written");
        assert_eq!(lock(user), lock_before, "lock changed");
        assert_eq!(user.cached(), cached_before, "cache changed");
    };

    // Unsigned.
    push(
        &admin,
        &reg,
        &filter_wasm_variant("unsigned"),
        "p/unsigned:1",
        None,
    );
    let user = case(&reg.oci("p/unsigned:1"), false, PASS);
    refused(&user, 11, "barbacane plugin sign");
    // … accepted with allow_unsigned: true.
    let user = case(&reg.oci("p/unsigned:1"), true, PASS);
    user.ok(COMPILE);
    let entry = Lockfile::read(&user.path("barbacane.lock")).unwrap();
    assert_eq!(entry.get(&reg.oci("p/unsigned:1")).unwrap().signer, None);

    // Signed by a key that is not trusted.
    push(
        &admin,
        &reg,
        &filter_wasm_variant("bob"),
        "p/bob:1",
        Some("bob"),
    );
    refused(&case(&reg.oci("p/bob:1"), false, PASS), 12, "trust.keys");

    // Tampered: the tag is re-pushed with other bytes and the old signature is copied to the
    // new digest, so the signed payload names a digest that is no longer the manifest's.
    let d1 = push(
        &admin,
        &reg,
        &filter_wasm_variant("t1"),
        "p/tampered:1",
        Some("alice"),
    );
    let d2 = push(
        &admin,
        &reg,
        &filter_wasm_variant("t2"),
        "p/tampered:1",
        None,
    );
    let sig = reg.manifest("p/tampered", &format!("sha256-{}.sig", &d1[7..]));
    assert_eq!(
        reg.put_manifest(
            "p/tampered",
            &format!("sha256-{}.sig", &d2[7..]),
            OCI_MANIFEST,
            &sig
        ),
        201
    );
    refused(
        &case(&reg.oci("p/tampered:1"), false, PASS),
        13,
        "do not use it",
    );

    // The layer's bytes change in the registry's storage after signing (same size).
    let layer = filter_wasm_variant("layer");
    push(&admin, &reg, &layer, "p/layer:1", Some("alice"));
    let layer_digest = barbacane_registry::module::sha256_digest(&layer);
    corrupt_blob(&reg, &layer_digest, &|b| {
        let i = b.len() / 2;
        b[i] ^= 1;
    });
    refused(
        &case(&reg.oci("p/layer:1"), false, PASS),
        13,
        "do not use it",
    );

    // The manifest's bytes change in storage after signing (same size, still JSON).
    let m = push(
        &admin,
        &reg,
        &filter_wasm_variant("manifest"),
        "p/manifest:1",
        Some("alice"),
    );
    corrupt_blob(&reg, &m, &|b| {
        let text = String::from_utf8(b.clone()).unwrap();
        assert!(text.contains("proxy-wasm-0.2.1"), "{text}");
        *b = text
            .replace("proxy-wasm-0.2.1", "proxy-wasm-0.2.2")
            .into_bytes();
    });
    refused(
        &case(&reg.oci("p/manifest:1"), false, PASS),
        13,
        "do not use it",
    );

    // The digest pinned in the lock is deleted from the registry.
    let d = push(
        &admin,
        &reg,
        &filter_wasm_variant("gone"),
        "p/gone:1",
        Some("alice"),
    );
    let user = case(&reg.oci("p/gone:1"), false, PASS);
    user.ok(COMPILE);
    std::fs::remove_file(user.path("api.bca")).unwrap();
    for f in user.cached() {
        std::fs::remove_file(f).unwrap();
    }
    assert_eq!(reg.delete_manifest("p/gone", &d), 202);
    refused(&user, 14, "barbacane compile --update");

    // The registry refuses the credentials (wrong password in the Docker config).
    push(
        &admin,
        &reg,
        &filter_wasm_variant("auth"),
        "p/auth:1",
        Some("alice"),
    );
    refused(
        &case(&reg.oci("p/auth:1"), false, "wrong"),
        16,
        "docker login",
    );

    // Nothing listens at the registry's address.
    let port = registry_harness::free_port();
    refused(
        &case(&format!("oci://127.0.0.1:{port}/p/x:1"), false, PASS),
        15,
        "cannot reach registry",
    );
}

#[test]
fn oci_sources_are_checked_when_the_manifest_loads() {
    let reg = TestRegistry::start();
    let user = User::new(&reg, PASS);
    user.write("api.yaml", SPEC);
    user.write(
        "barbacane.yaml",
        "plugins:\n  waf:\n    source: 'oci://127.0.0.1:5000/Bad Name:1'\n",
    );
    let (code, _, stderr) = user.run(&[
        "validate",
        "--spec",
        "api.yaml",
        "--manifest",
        "barbacane.yaml",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("E1070"), "{stderr}");
    assert!(stderr.contains("barbacane.yaml:3:13"), "{stderr}");
    assert!(stderr.contains("bad plugin reference"), "{stderr}");

    // A trust key that is not a public key, at its own position.
    user.write("keys/cosign.pub", "not a key");
    user.write(
        "barbacane.yaml",
        format!(
            "plugins:\n  waf: {{source: '{}'}}\ntrust:\n  keys:\n    - keys/cosign.pub\n",
            reg.oci("p/x:1")
        ),
    );
    let (code, _, stderr) = user.run(&[
        "validate",
        "--spec",
        "api.yaml",
        "--manifest",
        "barbacane.yaml",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("barbacane.yaml:5:7"), "{stderr}");
    assert!(stderr.contains("trust key"), "{stderr}");

    // A valid source that is not resolved yet: validate stays offline and says so.
    user.write(
        "barbacane.yaml",
        format!(
            "plugins:\n  waf: {{source: '{}'}}\ninsecure_registries: ['registry.internal:5000']\n",
            reg.oci("p/x:1")
        ),
    );
    let (code, _, stderr) = user.run(&[
        "validate",
        "--spec",
        "api.yaml",
        "--manifest",
        "barbacane.yaml",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("not checked"), "{stderr}");
    assert_eq!(lock(&user), None);
}

/// Rewrites blob `digest` in the registry's filesystem storage with `edit` applied.
fn corrupt_blob(reg: &TestRegistry, digest: &str, edit: &dyn Fn(&mut Vec<u8>)) {
    let hex = &digest["sha256:".len()..];
    let path = reg.dir.path().join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&path).unwrap();
    edit(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
}

/// GET `path` over a raw HTTP/1.1 connection; returns the response head and body.
fn get(addr: SocketAddr, path: &str) -> String {
    support::raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Push and pull draw a progress bar when stderr is a terminal (here a pseudo-terminal made by
/// `script`), and print none when it is not.
#[test]
fn push_and_pull_show_progress_on_a_terminal_only() {
    let reg = TestRegistry::start();
    let user = User::new(&reg, PASS);
    user.write("plugin.wasm", filter_wasm());
    let reference = reg.oci("filters/progress:1");
    let in_terminal = |args: &str| {
        let command = format!("{} {args}", support::bin().display());
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(user.dir.path())
            .env("DOCKER_CONFIG", user.docker.path())
            .env("BARBACANE_CACHE_DIR", user.cache.path())
            .env("HOME", user.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{args}: {text}");
        text
    };
    let size = filter_wasm().len();
    for args in [
        format!("plugin push plugin.wasm {reference}"),
        format!("plugin pull {reference} -o pulled.wasm"),
    ] {
        let shown = in_terminal(&args);
        // The bar's template: `[====>   ] DONE/TOTAL`, TOTAL in indicatif's binary units.
        assert!(
            shown.contains('[') && shown.contains('='),
            "{args}: {shown:?}"
        );
        assert!(shown.contains("KiB"), "{args}: {shown:?} ({size} bytes)");
    }
    let (code, _, stderr) = user.run(&["plugin", "pull", &reference, "-o", "again.wasm"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains('[') && !stderr.contains("KiB"),
        "{stderr:?}"
    );
}

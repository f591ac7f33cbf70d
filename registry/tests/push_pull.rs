//! Push and pull against a real registry: the CNCF layout written byte for byte as documented,
//! round trips, refusals (non-Wasm push, size caps, a connection cut mid-blob), concurrent pulls
//! into one cache, inspect, and progress reporting.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use barbacane_registry::{
    ErrorKind, Layout, Limits, NoProgress, PluginManifest, PluginRef, Progress, Registry,
    inspect_file,
};
use common::{CuttingProxy, TestRegistry, files_under, filter_wasm};

fn plugin_manifest() -> PluginManifest {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plugin.toml"),
        "name = \"headers\"\nversion = \"1.2.0\"\nkind = \"middleware\"\nabi = \"0.2.1\"\n\
         schema = \"schema.json\"\ndescription = \"Adds headers\"\ncapabilities = [\"timers\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("schema.json"),
        r#"{"type":"object","properties":{"header":{"type":"string"}}}"#,
    )
    .unwrap();
    PluginManifest::load(&dir.path().join("plugin.toml")).unwrap()
}

#[tokio::test]
async fn push_writes_the_cncf_layout_and_pull_round_trips() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    let wasm = filter_wasm();
    let r = PluginRef::parse(&reg.oci("filters/headers:1.2.0")).unwrap();
    let pushed = client
        .push(&wasm, &r, Some(&plugin_manifest()), &NoProgress)
        .await
        .unwrap();
    assert_eq!(pushed.size, wasm.len() as u64);
    assert_eq!(
        pushed.layer_digest,
        barbacane_registry::module::sha256_digest(&wasm)
    );

    // The manifest as the registry stores it.
    let raw = reg.manifest("filters/headers", "1.2.0");
    assert_eq!(
        barbacane_registry::module::sha256_digest(&raw),
        pushed.manifest_digest
    );
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["artifactType"],
        "application/vnd.barbacane.plugin.v1+wasm"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    assert_eq!(layers[0]["digest"], pushed.layer_digest.as_str());
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        "plugin.wasm"
    );
    let a = &m["annotations"];
    assert_eq!(a["org.opencontainers.image.version"], "1.2.0");
    assert_eq!(a["org.opencontainers.image.title"], "headers");
    assert!(
        a["org.opencontainers.image.created"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(a["io.barbacane.plugin.name"], "headers");
    assert_eq!(a["io.barbacane.plugin.kind"], "middleware");
    assert_eq!(a["io.barbacane.plugin.abi"], "proxy-wasm-0.2.1");

    // The config blob.
    let cfg = reg.http(
        "GET",
        &format!(
            "/v2/filters/headers/blobs/{}",
            m["config"]["digest"].as_str().unwrap()
        ),
        &[],
        b"",
    );
    assert_eq!(cfg.status, 200);
    let cfg: serde_json::Value = serde_json::from_slice(&cfg.body).unwrap();
    assert_eq!(cfg["architecture"], "wasm");
    assert_eq!(cfg["os"], "wasip1");
    assert_eq!(
        cfg["layerDigests"],
        serde_json::json!([pushed.layer_digest])
    );
    assert!(cfg["created"].is_string());
    let plugin = &cfg["io.barbacane.plugin"];
    assert_eq!(plugin["name"], "headers");
    assert_eq!(plugin["kind"], "middleware");
    assert_eq!(plugin["capabilities"], serde_json::json!(["timers"]));
    assert_eq!(
        plugin["config_schema"]["properties"]["header"]["type"],
        "string"
    );

    // Pull by tag and by digest, from a fresh client and cache.
    let cache2 = tempfile::tempdir().unwrap();
    let other = reg.client(cache2.path());
    let pulled = other.pull(&r, &NoProgress).await.unwrap();
    assert_eq!(pulled.bytes, wasm);
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
    assert_eq!(pulled.layer_digest, pushed.layer_digest);
    assert_eq!(pulled.layout, Layout::Cncf);
    assert_eq!(pulled.module.abi_marker, "proxy_abi_version_0_2_1");
    assert!(
        pulled
            .module
            .imports
            .iter()
            .any(|i| i.module == "env" && i.name.starts_with("proxy_"))
    );
    let by_digest = other.pull(&pushed.reference, &NoProgress).await.unwrap();
    assert_eq!(by_digest.bytes, wasm);
    // The layer is in the cache under its digest, and nothing else is.
    let files = files_under(cache2.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(pushed.layer_digest.trim_start_matches("sha256:")));
}

#[tokio::test]
async fn push_refuses_non_wasm_and_non_proxy_wasm_bytes() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    let r = PluginRef::parse(&reg.oci("filters/bad:1")).unwrap();
    let e = client
        .push(b"#!/bin/sh\necho not wasm\n", &r, None, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotProxyWasm);
    assert!(e.to_string().contains("magic"), "{e}");
    // A valid core module without a Proxy-Wasm ABI marker.
    let e = client
        .push(b"\0asm\x01\0\0\0", &r, None, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotProxyWasm);
    assert!(e.to_string().contains("proxy_abi_version"), "{e}");
    // Nothing reached the registry.
    let tags = reg.http("GET", "/v2/filters/bad/tags/list", &[], b"");
    assert_eq!(tags.status, 404);
    // Push needs a tag.
    let by_digest = r.with_digest(&format!("sha256:{}", "0".repeat(64)));
    let e = client
        .push(&filter_wasm(), &by_digest, None, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadReference);
}

#[tokio::test]
async fn size_caps_refuse_large_modules_and_manifests() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let wasm = filter_wasm();
    let r = PluginRef::parse(&reg.oci("filters/headers:1")).unwrap();
    reg.client(cache.path())
        .push(&wasm, &r, Some(&plugin_manifest()), &NoProgress)
        .await
        .unwrap();

    let mut small_module = reg.options(cache.path());
    small_module.limits = Limits {
        max_module_bytes: 1000,
        ..Limits::default()
    };
    let e = Registry::new(small_module)
        .pull(&r, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");

    let mut small_manifest = reg.options(cache.path());
    small_manifest.limits = Limits {
        max_manifest_bytes: 200,
        ..Limits::default()
    };
    let e = Registry::new(small_manifest)
        .pull(&r, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert!(e.to_string().contains("manifest"), "{e}");

    // (A manifest over the default 4 MiB cap cannot be staged: Distribution 2.8 itself answers
    // 400 to manifests over 4 MiB, so the cap is exercised with a lowered limit above.)
}

#[tokio::test]
async fn a_connection_cut_mid_blob_is_a_clear_error_and_leaves_no_file() {
    let reg = TestRegistry::start();
    let seed_cache = tempfile::tempdir().unwrap();
    let wasm = filter_wasm();
    let r = PluginRef::parse(&reg.oci("filters/headers:1")).unwrap();
    reg.client(seed_cache.path())
        .push(&wasm, &r, None, &NoProgress)
        .await
        .unwrap();

    let proxy = CuttingProxy::start(reg.port, 20_000);
    let via = format!("127.0.0.1:{}", proxy.port);
    let cache = tempfile::tempdir().unwrap();
    let mut options = reg.options(cache.path());
    let creds = options.credentials.remove(&reg.host()).unwrap();
    options.credentials.insert(via.clone(), creds);
    let client = Registry::new(options);
    let r = PluginRef::parse(&format!("oci://{via}/filters/headers:1")).unwrap();
    let e = client.pull(&r, &NoProgress).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.to_string().contains("plugin.wasm"), "{e}");
    assert!(
        files_under(cache.path()).is_empty(),
        "{:?}",
        files_under(cache.path())
    );
}

#[tokio::test]
async fn concurrent_pulls_share_one_cache() {
    let reg = TestRegistry::start();
    let wasm = filter_wasm();
    let seed = tempfile::tempdir().unwrap();
    let r = PluginRef::parse(&reg.oci("filters/headers:1")).unwrap();
    let pushed = reg
        .client(seed.path())
        .push(&wasm, &r, None, &NoProgress)
        .await
        .unwrap();

    let cache = tempfile::tempdir().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        // Separate clients (separate connections), one cache directory.
        let client = reg.client(cache.path());
        let r = r.clone();
        tasks.push(tokio::spawn(
            async move { client.pull(&r, &NoProgress).await },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().bytes, wasm);
    }
    let files = files_under(cache.path());
    assert_eq!(files.len(), 1, "temporary files left behind: {files:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), wasm);
    assert!(files[0].ends_with(pushed.layer_digest.trim_start_matches("sha256:")));

    // Reading it back re-checks the digest.
    let cached = barbacane_registry::Cache::new(cache.path())
        .get(&pushed.layer_digest)
        .unwrap();
    assert_eq!(cached.as_deref(), Some(&wasm[..]));
}

#[derive(Default)]
struct Recorder {
    starts: Mutex<Vec<(String, Option<u64>)>>,
    bytes: AtomicU64,
    finishes: AtomicU64,
}

impl Progress for Recorder {
    fn start(&self, what: &str, total: Option<u64>) {
        self.starts.lock().unwrap().push((what.to_string(), total));
    }
    fn advance(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }
    fn finish(&self) {
        self.finishes.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn progress_reports_module_bytes_and_inspect_describes_the_plugin() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    // Bigger than one 1 MiB push chunk, to see several advances.
    let wasm = common::filter_wasm_variant(&"p".repeat(3 * 1024 * 1024));
    let r = PluginRef::parse(&reg.oci("filters/headers:2")).unwrap();
    let up = Recorder::default();
    client
        .push(&wasm, &r, Some(&plugin_manifest()), &up)
        .await
        .unwrap();
    assert_eq!(
        *up.starts.lock().unwrap(),
        vec![("plugin.wasm".to_string(), Some(wasm.len() as u64))]
    );
    assert_eq!(up.bytes.load(Ordering::SeqCst), wasm.len() as u64);
    assert_eq!(up.finishes.load(Ordering::SeqCst), 1);

    let down = Recorder::default();
    let fresh = tempfile::tempdir().unwrap();
    reg.client(fresh.path()).pull(&r, &down).await.unwrap();
    assert_eq!(down.bytes.load(Ordering::SeqCst), wasm.len() as u64);
    assert_eq!(down.finishes.load(Ordering::SeqCst), 1);

    let info = client.inspect(&r, &NoProgress).await.unwrap();
    assert_eq!(info.layout, Layout::Cncf);
    assert_eq!(info.module.size, wasm.len() as u64);
    assert_eq!(info.module.abi_marker, "proxy_abi_version_0_2_1");
    assert_eq!(
        info.manifest["artifactType"],
        "application/vnd.barbacane.plugin.v1+wasm"
    );
    assert_eq!(info.plugin.as_ref().unwrap()["name"], "headers");
    assert!(!info.module.imports.is_empty());

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &wasm).unwrap();
    let local = inspect_file(file.path()).unwrap();
    assert_eq!(local.digest, info.layer_digest);
    assert_eq!(local.imports, info.module.imports);
    std::fs::write(file.path(), b"not wasm").unwrap();
    assert_eq!(
        inspect_file(file.path()).unwrap_err().kind(),
        ErrorKind::NotProxyWasm
    );
}

fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[tokio::test]
async fn docker_schema2_image_with_plugin_wasm_is_accepted() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    let wasm = filter_wasm();
    let put_image = |tag: &str, layer: &[u8]| {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": reg.put_blob("filters/docker", config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": reg.put_blob("filters/docker", layer), "size": layer.len()}],
        });
        let status = reg.put_manifest(
            "filters/docker",
            tag,
            "application/vnd.docker.distribution.manifest.v2+json",
            &serde_json::to_vec(&m).unwrap(),
        );
        assert_eq!(status, 201);
    };
    put_image(
        "good",
        &tar_gz(&[("runtime-config.json", b"{}"), ("./plugin.wasm", &wasm)]),
    );
    let r = PluginRef::parse(&reg.oci("filters/docker:good")).unwrap();
    let pulled = client.pull(&r, &NoProgress).await.unwrap();
    assert_eq!(pulled.layout, Layout::SoloCompat);
    assert_eq!(
        pulled.media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(pulled.bytes, wasm);

    put_image("empty", &tar_gz(&[("filter.wasm", &wasm)]));
    let r = PluginRef::parse(&reg.oci("filters/docker:empty")).unwrap();
    let e = client.pull(&r, &NoProgress).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadLayout, "{e}");
    assert!(e.to_string().contains("plugin.wasm"), "{e}");
}

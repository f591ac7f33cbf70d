//! Interop with an independent client, oras-py (from PyPI, in a virtualenv under target/reg):
//! barbacane push → oras pull; oras push in each accepted layout → barbacane pull; a non-Wasm
//! layer → refused; barbacane sign → signature checked with Python `cryptography`.

#![allow(clippy::unwrap_used)]

mod common;

use barbacane_registry::{ErrorKind, Layout, NoProgress, PluginRef, keygen};
use common::{TestRegistry, filter_wasm, python};

const ORAS_PUSH: &str = r#"
import sys, os, json, oras.client
host, target, workdir, files, config = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
os.chdir(workdir)
c = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
c.login(username="testuser", password="testpass", hostname=host)
kw = {"manifest_config": config} if config else {}
c.push(f"{host}/{target}", files=files, **kw)
"#;

const ORAS_PULL: &str = r#"
import sys, json, oras.client
host, target, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
c = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
c.login(username="testuser", password="testpass", hostname=host)
files = c.pull(target=f"{host}/{target}", outdir=outdir)
print(json.dumps({"files": files, "manifest": c.get_manifest(f"{host}/{target}")}))
"#;

fn oras_push(
    reg: &TestRegistry,
    target: &str,
    dir: &std::path::Path,
    files: &[&str],
    config: &str,
) {
    python(
        ORAS_PUSH,
        &[
            &reg.host(),
            target,
            dir.to_str().unwrap(),
            &serde_json::to_string(files).unwrap(),
            config,
        ],
    );
}

#[tokio::test]
async fn barbacane_push_then_oras_pull() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let wasm = filter_wasm();
    let r = PluginRef::parse(&reg.oci("filters/headers:1.0.0")).unwrap();
    reg.client(cache.path())
        .push(&wasm, &r, None, &NoProgress)
        .await
        .unwrap();

    let out = tempfile::tempdir().unwrap();
    let answer = python(
        ORAS_PULL,
        &[
            &reg.host(),
            "filters/headers:1.0.0",
            out.path().to_str().unwrap(),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(answer.trim().lines().last().unwrap()).unwrap();
    assert_eq!(std::fs::read(out.path().join("plugin.wasm")).unwrap(), wasm);
    let m = &v["manifest"];
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["artifactType"],
        "application/vnd.barbacane.plugin.v1+wasm"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(m["layers"][0]["mediaType"], "application/wasm");
}

#[tokio::test]
async fn oras_pushed_layouts_are_accepted() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    let wasm = filter_wasm();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugin.wasm"), &wasm).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        br#"{"architecture":"wasm","os":"wasip1"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("runtime-config.json"),
        br#"{"type":"envoy_proxy","abiVersions":["v0-4689a30309abf31aee9ae36e73d34b1bb182685f"],"config":{"rootIds":["headers"]}}"#,
    )
    .unwrap();
    // A Solo "compat" / docker-build layer: tar.gz holding plugin.wasm.
    python(
        "import sys, tarfile, os\nos.chdir(sys.argv[1])\nwith tarfile.open('layer.tar.gz', 'w:gz') as t:\n    t.add('runtime-config.json')\n    t.add('plugin.wasm')\n",
        &[dir.path().to_str().unwrap()],
    );
    std::fs::write(
        dir.path().join("notwasm.bin"),
        b"PK\x03\x04 this is a zip, not wasm",
    )
    .unwrap();

    let cases: &[(&str, &[&str], &str, Layout)] = &[
        (
            "cncf:1",
            &["plugin.wasm:application/wasm"],
            "config.json:application/vnd.wasm.config.v0+json",
            Layout::Cncf,
        ),
        (
            "wasm-to-oci:1",
            &["plugin.wasm:application/vnd.wasm.content.layer.v1+wasm"],
            "config.json:application/vnd.wasm.config.v1+json",
            Layout::WasmToOci,
        ),
        (
            "solo:1",
            &[
                "runtime-config.json:application/vnd.module.wasm.config.v1+json",
                "plugin.wasm:application/vnd.module.wasm.content.layer.v1+wasm",
            ],
            "",
            Layout::SoloOci,
        ),
        (
            "compat:1",
            &["layer.tar.gz:application/vnd.oci.image.layer.v1.tar+gzip"],
            "",
            Layout::SoloCompat,
        ),
    ];
    for (tag, files, config, layout) in cases {
        let target = format!("filters/{tag}");
        oras_push(&reg, &target, dir.path(), files, config);
        let r = PluginRef::parse(&reg.oci(&target)).unwrap();
        let pulled = client
            .pull(&r, &NoProgress)
            .await
            .unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(pulled.layout, *layout, "{tag}");
        assert_eq!(pulled.bytes, wasm, "{tag}");
    }

    // A layer that claims application/wasm but is not WebAssembly.
    oras_push(
        &reg,
        "filters/fake:1",
        dir.path(),
        &["notwasm.bin:application/wasm"],
        "",
    );
    let r = PluginRef::parse(&reg.oci("filters/fake:1")).unwrap();
    let e = client.pull(&r, &NoProgress).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotProxyWasm, "{e}");
    // A layer of an unrelated type.
    oras_push(
        &reg,
        "filters/text:1",
        dir.path(),
        &["config.json:text/plain"],
        "",
    );
    let r = PluginRef::parse(&reg.oci("filters/text:1")).unwrap();
    let e = client.pull(&r, &NoProgress).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadLayout, "{e}");
    // Neither refused pull left anything in the cache besides the accepted modules' layers.
    let cached = common::files_under(cache.path());
    assert_eq!(cached.len(), 2, "{cached:?}"); // the raw module (4 layouts share it) + the tar.gz
}

const CHECK_SIGNATURE: &str = r#"
import sys, json, base64, requests
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
host, repo, digest, pubfile = sys.argv[1:5]
auth = ("testuser", "testpass")
tag = digest.replace(":", "-") + ".sig"
m = requests.get(f"http://{host}/v2/{repo}/manifests/{tag}", auth=auth,
                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
key = load_pem_public_key(open(pubfile, "rb").read())
ok = 0
for layer in m["layers"]:
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    blob = requests.get(f"http://{host}/v2/{repo}/blobs/{layer['digest']}", auth=auth).content
    sig = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    try:
        key.verify(sig, blob, ec.ECDSA(hashes.SHA256()))
    except Exception:
        continue
    payload = json.loads(blob)
    assert payload["critical"]["image"]["docker-manifest-digest"] == digest, payload
    assert payload["critical"]["type"] == "cosign container image signature"
    assert payload["critical"]["identity"]["docker-reference"] == f"{host}/{repo}"
    ok += 1
print(ok)
"#;

#[tokio::test]
async fn barbacane_signature_checks_out_with_python_cryptography() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = reg.client(cache.path());
    let r = PluginRef::parse(&reg.oci("filters/headers:1")).unwrap();
    let pushed = client
        .push(&filter_wasm(), &r, None, &NoProgress)
        .await
        .unwrap();
    let alice = keygen(b"alice-pw").unwrap();
    let bob = keygen(b"bob-pw").unwrap();
    client
        .sign(&r, alice.private_pem.as_bytes(), b"alice-pw")
        .await
        .unwrap();
    client
        .sign(&r, bob.private_pem.as_bytes(), b"bob-pw")
        .await
        .unwrap();
    let keys = tempfile::tempdir().unwrap();
    for (name, pair) in [("alice.pub", &alice), ("bob.pub", &bob)] {
        std::fs::write(keys.path().join(name), &pair.public_pem).unwrap();
        let out = python(
            CHECK_SIGNATURE,
            &[
                &reg.host(),
                "filters/headers",
                &pushed.manifest_digest,
                keys.path().join(name).to_str().unwrap(),
            ],
        );
        assert_eq!(
            out.trim(),
            "1",
            "{name}: exactly one layer verifies with this key"
        );
    }
    let stranger = keygen(b"x").unwrap();
    std::fs::write(keys.path().join("stranger.pub"), &stranger.public_pem).unwrap();
    let out = python(
        CHECK_SIGNATURE,
        &[
            &reg.host(),
            "filters/headers",
            &pushed.manifest_digest,
            keys.path().join("stranger.pub").to_str().unwrap(),
        ],
    );
    assert_eq!(out.trim(), "0");
}

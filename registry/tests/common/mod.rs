//! Test harness: a real registry process (Debian's CNCF Distribution 2.8, `docker-registry`,
//! htpasswd auth — or Docker's token auth with a real token server —, filesystem storage with
//! deletes enabled) per test, a real Proxy-Wasm module
//! (the `headers` conformance filter built from source for wasm32-wasip1), an oras-py virtualenv
//! for interop, a raw HTTP client for checks the crate does not offer (DELETE, raw manifests),
//! and a TCP proxy that cuts blob downloads short.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use barbacane_registry::{Cache, Credentials, DockerConfig, Options, Registry};

pub const USER: &str = "testuser";
pub const PASS: &str = "testpass";

/// `target/reg`, where the harness keeps what it builds.
pub fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/reg");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A private `docker-registry serve` on 127.0.0.1, killed on drop.
pub struct TestRegistry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl TestRegistry {
    pub fn start() -> Self {
        Self::start_with(&Auth::Htpasswd)
    }

    /// A registry whose auth is `auth`.
    pub fn start_with(auth: &Auth) -> Self {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "the registry tests need Debian's CNCF Distribution and htpasswd: \
             apt-get install docker-registry apache2-utils"
        );
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(auth) {
                Ok(r) => return r,
                Err(e) => last = e,
            }
        }
        panic!("cannot start docker-registry: {last}");
    }

    fn try_start(auth: &Auth) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let out = Command::new("htpasswd")
            .args(["-Bbn", USER, PASS])
            .output()
            .map_err(|e| format!("htpasswd (apt-get install apache2-utils): {e}"))?;
        assert!(out.status.success(), "htpasswd failed");
        std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
        let config = format!(
            "version: 0.1\n\
             log: {{ level: warn }}\n\
             storage:\n  filesystem: {{ rootdirectory: {root}/data }}\n  delete: {{ enabled: true }}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: test-only-secret\n\
             auth:\n{auth}",
            root = dir.path().display(),
            auth = match auth {
                Auth::Htpasswd => format!(
                    "  htpasswd: {{ realm: barbacane-test, path: {}/htpasswd }}\n",
                    dir.path().display()
                ),
                Auth::Token(server) => format!(
                    "  token: {{ realm: 'http://127.0.0.1:{}/token', service: {TOKEN_SERVICE}, issuer: {TOKEN_ISSUER}, rootcertbundle: {} }}\n",
                    server.port,
                    server.cert.display()
                ),
            }
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let mut reg = TestRegistry { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(resp) = http(port, "GET", "/v2/", None, &[], b"") {
                let challenge = match auth {
                    Auth::Htpasswd => "barbacane-test",
                    Auth::Token(_) => "Bearer realm=",
                };
                if resp.status == 401
                    && resp
                        .header("www-authenticate")
                        .is_some_and(|h| h.contains(challenge))
                {
                    return Ok(reg);
                }
                return Err(format!("unexpected answer on /v2/: {}", resp.status));
            }
            if let Ok(Some(status)) = reg.child.try_wait() {
                let log = std::fs::read_to_string(reg.dir.path().join("registry.log"))
                    .unwrap_or_default();
                return Err(format!("registry exited ({status}): {log}"));
            }
            if Instant::now() > deadline {
                return Err("registry did not answer within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `oci://127.0.0.1:PORT/REPO_AND_TAG`.
    pub fn oci(&self, repo_and_tag: &str) -> String {
        format!("oci://{}/{}", self.host(), repo_and_tag)
    }

    /// Options with the test credentials, no Docker config, and `cache` as the cache root.
    pub fn options(&self, cache: &Path) -> Options {
        let mut o = Options {
            docker_config: DockerConfig::Disabled,
            cache: Some(Cache::new(cache)),
            ..Options::default()
        };
        o.credentials
            .insert(self.host(), Credentials::basic(USER, PASS));
        o
    }

    /// A client with the test credentials and its own cache directory.
    pub fn client(&self, cache: &Path) -> Registry {
        Registry::new(self.options(cache))
    }

    /// An authenticated raw request to this registry.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        http(self.port, method, path, Some((USER, PASS)), headers, body).unwrap()
    }

    /// `DELETE /v2/REPO/manifests/DIGEST`; returns the status.
    pub fn delete_manifest(&self, repo: &str, digest: &str) -> u16 {
        self.http(
            "DELETE",
            &format!("/v2/{repo}/manifests/{digest}"),
            &[],
            b"",
        )
        .status
    }

    /// The raw manifest bytes at `repo:reference`.
    pub fn manifest(&self, repo: &str, reference: &str) -> Vec<u8> {
        let r = self.http(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
            b"",
        );
        assert_eq!(
            r.status,
            200,
            "GET manifest {repo}:{reference}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.body
    }

    /// Uploads a blob monolithically; returns its digest.
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = barbacane_registry::module::sha256_digest(data);
        let r = self.http("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(r.status, 202, "start upload");
        let location = r.header("location").unwrap().to_string();
        let path = location
            .strip_prefix(&format!("http://{}", self.host()))
            .unwrap_or(&location)
            .to_string();
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = self.http(
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(
            r.status,
            201,
            "finish upload: {}",
            String::from_utf8_lossy(&r.body)
        );
        digest
    }

    /// Puts manifest bytes at `repo:reference`; returns the status.
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> u16 {
        self.http(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body,
        )
        .status
    }
}

/// How a [`TestRegistry`] authenticates clients.
pub enum Auth {
    /// HTTP Basic against an htpasswd file (`USER`/`PASS`).
    Htpasswd,
    /// Docker's token protocol: a `Bearer` challenge naming `server`, which hands out tokens to
    /// `USER`/`PASS`.
    Token(TokenServer),
}

pub const TOKEN_SERVICE: &str = "barbacane-test-registry";
pub const TOKEN_ISSUER: &str = "barbacane-test-issuer";

/// A real token server for Docker's token authentication (the protocol of Docker Hub, GHCR,
/// Harbor): Python's http.server with `cryptography`, in the oras venv. It checks Basic
/// credentials (`USER`/`PASS`) and answers with an ES256 JWT for the scope asked, with its
/// self-signed certificate in `x5c` (the registry trusts that certificate); it counts the tokens
/// it issued in `issued`.
pub struct TokenServer {
    pub port: u16,
    pub cert: PathBuf,
    pub issued: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

const TOKEN_SERVER: &str = r#"
import base64, datetime, http.server, json, sys, time, urllib.parse, uuid
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

port, workdir, user, password, service, issuer = sys.argv[1:7]
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "barbacane test token issuer")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
open(workdir + "/cert.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
issued = 0

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        global issued
        url = urllib.parse.urlparse(self.path)
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if url.path != "/token" or self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        query = urllib.parse.parse_qs(url.query)
        access = []
        for scope in query.get("scope", []):
            kind, repo, actions = scope.split(":")
            access.append({"type": kind, "name": repo, "actions": actions.split(",")})
        t = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [x5c]}
        claims = {"iss": issuer, "sub": user, "aud": service, "exp": t + 300, "nbf": t - 10,
                  "iat": t, "jti": str(uuid.uuid4()), "access": access}
        signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        token = signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        issued += 1
        open(workdir + "/issued", "w").write(str(issued))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = http.server.HTTPServer(("127.0.0.1", int(port)), Handler)
print("ready", flush=True)
server.serve_forever()
"#;

impl TokenServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(oras_python())
            .arg("-c")
            .arg(TOKEN_SERVER)
            .arg(port.to_string())
            .arg(dir.path())
            .args([USER, PASS, TOKEN_SERVICE, TOKEN_ISSUER])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready", "the token server did not start");
        TokenServer {
            port,
            cert: dir.path().join("cert.pem"),
            issued: dir.path().join("issued"),
            child,
            _dir: dir,
        }
    }

    /// How many tokens it has handed out.
    pub fn issued(&self) -> u32 {
        std::fs::read_to_string(&self.issued)
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A raw HTTP/1.1 response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    basic: Option<(&str, &str)>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    use base64::Engine;
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some((u, p)) = basic {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let end = find(&raw, b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(data, b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..i]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[i + 2..i + 2 + size]);
        data = &data[i + 2 + size + 2..];
    }
    out
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `headers` conformance filter (Rust, upstream `proxy-wasm` crate), built from source for
/// wasm32-wasip1 into `target/reg/filters` once per test binary.
pub fn filter_wasm() -> Vec<u8> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let path = BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = work_dir().join("filters");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--release", "--target", "wasm32-wasip1", "-p", "conformance-headers", "--manifest-path"])
            .arg(root.join("conformance/filters/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building conformance/filters/headers failed (rustup target add wasm32-wasip1?):\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(target.join("wasm32-wasip1/release/conformance_headers.wasm"))
    });
    let path = path.as_ref().unwrap_or_else(|e| panic!("{e}"));
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A second, different real Proxy-Wasm module: the filter with an extra custom section (same
/// code, different bytes and digest).
pub fn filter_wasm_variant(tag: &str) -> Vec<u8> {
    let mut bytes = filter_wasm();
    let name = b"barbacane-test";
    let payload = tag.as_bytes();
    let mut section = Vec::new();
    leb(&mut section, name.len() as u64);
    section.extend_from_slice(name);
    section.extend_from_slice(payload);
    bytes.push(0); // custom section id
    leb(&mut bytes, section.len() as u64);
    bytes.extend_from_slice(&section);
    bytes
}

fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The python of a virtualenv at `target/reg/oras-venv` with oras-py (and `cryptography`)
/// installed from PyPI, created on first use.
pub fn oras_python() -> PathBuf {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let py = VENV.get_or_init(|| {
        let venv = work_dir().join("oras-venv");
        let py = venv.join("bin/python");
        let ready = |py: &Path| {
            Command::new(py)
                .args(["-c", "import oras.client, cryptography"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if ready(&py) {
            return Ok(py);
        }
        let lock = venv.with_extension("lock");
        // Several test binaries may race to create it: serialise on a lock directory.
        let deadline = Instant::now() + Duration::from_secs(600);
        while std::fs::create_dir(&lock).is_err() {
            if ready(&py) {
                return Ok(py);
            }
            if Instant::now() > deadline {
                return Err("timed out waiting for another test to build the oras venv".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let result = (|| {
            if !py.exists() {
                let s = Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status()
                    .map_err(|e| e.to_string())?;
                if !s.success() {
                    return Err("python3 -m venv failed".to_string());
                }
            }
            let out = Command::new(venv.join("bin/pip"))
                .args(["install", "-q", ORAS_PIN, CRYPTOGRAPHY_PIN])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "pip install failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(py.clone())
        })();
        let _ = std::fs::remove_dir(&lock);
        result
    });
    py.as_ref().unwrap_or_else(|e| panic!("{e}")).clone()
}

pub const ORAS_PIN: &str = "oras==0.2.43";
pub const CRYPTOGRAPHY_PIN: &str = "cryptography==50.0.2";

/// Runs a python script in the oras venv with `args`; panics with its output on failure.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new(oras_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A TCP proxy to `upstream` that forwards everything, except that once a client asks for a
/// blob (`GET /v2/…/blobs/…`) it forwards only `body_bytes` bytes of that response's body and
/// then closes both sides.
pub struct CuttingProxy {
    pub port: u16,
}

impl CuttingProxy {
    pub fn start(upstream: u16, body_bytes: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                std::thread::spawn(move || proxy_conn(client, upstream, body_bytes));
            }
        });
        CuttingProxy { port }
    }
}

fn proxy_conn(client: TcpStream, upstream: u16, body_bytes: usize) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let flag = cut.clone();
    // client → server: watch for a blob GET.
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        let mut seen = Vec::new();
        loop {
            let n = match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            seen.extend_from_slice(&buf[..n]);
            if find(&seen, b"GET /v2/").is_some() && find(&seen, b"/blobs/sha256:").is_some() {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            if seen.len() > 65536 {
                seen.drain(..seen.len() - 1024);
            }
            if s_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(std::net::Shutdown::Write);
    });
    // server → client: once cut is armed, forward the headers and `body_bytes` of the body.
    let (mut s_read, mut c_write) = (server, client);
    let mut buf = [0u8; 16384];
    let mut pending: Vec<u8> = Vec::new();
    let mut body_sent: Option<usize> = None;
    loop {
        let n = match s_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !cut.load(std::sync::atomic::Ordering::SeqCst) {
            if c_write.write_all(&buf[..n]).is_err() {
                break;
            }
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        let sent = match body_sent {
            Some(s) => s,
            None => {
                let Some(end) = find(&pending, b"\r\n\r\n") else {
                    continue;
                };
                let head: Vec<u8> = pending.drain(..end + 4).collect();
                if c_write.write_all(&head).is_err() {
                    break;
                }
                0
            }
        };
        let room = body_bytes.saturating_sub(sent);
        let take = room.min(pending.len());
        let _ = c_write.write_all(&pending[..take]);
        pending.drain(..take);
        body_sent = Some(sent + take);
        if sent + take >= body_bytes {
            let _ = c_write.flush();
            let _ = c_write.shutdown(std::net::Shutdown::Both);
            let _ = s_read.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
    let _ = c_write.shutdown(std::net::Shutdown::Both);
}

/// Every file under `dir` (recursively).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

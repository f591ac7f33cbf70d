//! A real gRPC server for the gRPC callout tests: `grpc_server.py` on grpcio, installed from PyPI
//! into a virtualenv at `target/grpc-venv` on first use.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// grpcio, pinned: the server the tests speak to.
const GRPCIO: &str = "grpcio==1.85.3";

/// A running `grpc_server.py`; killed when dropped.
pub struct GrpcServer {
    pub port: u16,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl GrpcServer {
    /// The lines the server has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until the server has logged `line`.
    pub async fn wait_for(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().iter().any(|l| l == line) {
            assert!(
                Instant::now() < deadline,
                "the gRPC server never logged {line:?}; it logged {:?}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the gRPC server (plaintext h2c) on an ephemeral loopback port.
pub fn grpc_server() -> GrpcServer {
    start(&[])
}

/// Starts the gRPC server with TLS, its certificate and key read from these PEM files.
pub fn grpc_server_tls(cert: &Path, key: &Path) -> GrpcServer {
    start(&[cert, key])
}

fn start(args: &[&Path]) -> GrpcServer {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/grpc_server.py");
    let mut child = Command::new(grpc_python())
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let port = first
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the gRPC server did not start: {first:?}"));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    GrpcServer { port, child, lines }
}

/// The python of `target/grpc-venv`, made (once, serialised across test binaries by a lock
/// directory) with grpcio from PyPI.
fn grpc_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let python = PYTHON.get_or_init(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/grpc-venv");
        let python = venv.join("bin/python");
        let ready = || {
            Command::new(&python)
                .args(["-c", "import grpc"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let lock = venv.with_extension("lock");
        std::fs::create_dir_all(venv.parent().unwrap()).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(600);
        while std::fs::create_dir(&lock).is_err() {
            if Instant::now() > deadline {
                return Err(format!("{} was never released", lock.display()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let made = (|| {
            if ready() {
                return Ok(());
            }
            let run = |command: &mut Command| match command.output() {
                Ok(out) if out.status.success() => Ok(()),
                Ok(out) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
                Err(e) => Err(e.to_string()),
            };
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
            run(Command::new(venv.join("bin/pip")).args(["install", "-q", GRPCIO]))
        })();
        let _ = std::fs::remove_dir(&lock);
        made.map(|()| python.clone())
            .map_err(|e| format!("cannot make the grpcio virtualenv (python3-venv, PyPI): {e}"))
    });
    python.as_ref().unwrap_or_else(|e| panic!("{e}")).clone()
}

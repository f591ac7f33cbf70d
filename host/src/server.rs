//! The data plane's front: worker threads, listeners, HTTP/1.1 (keep-alive) and h2c connections,
//! graceful shutdown, the gateway's configuration and body types. What happens to a request once
//! it is read lives in [`crate::gateway`].
//!
//! Threading follows Envoy and nginx: one worker thread per core, each with its own
//! single-threaded runtime, its own `SO_REUSEPORT` listener and its own upstream connection pools
//! (a [`Worker`]), so a request never hops threads. Measured on the proxy benchmark, a
//! multi-threaded runtime spent most of its time waking threads across cores.

use crate::gateway::{ClientConnection, Gateway, Worker};
use crate::proxywasm::properties::{CertificateNames, TlsSession, tls_version};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Errors carried by bodies in flight.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response the gateway produces.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

/// Request limits; exceeding one gets 408, 413, 414 or 431.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: u64,
    /// Most request headers.
    pub max_headers: usize,
    /// Largest total of header names and values, in bytes.
    pub max_header_bytes: usize,
    /// Longest request target (path and query), in bytes.
    pub max_uri_bytes: usize,
    /// Longest wait for the next part of a request body the client has not finished.
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    /// nginx's 1 MiB body limit is a common complaint for APIs; 10 MiB is closer to Kong's and
    /// Envoy's practice. Headers follow Envoy (100 headers, 60 KiB), URIs and the body read
    /// timeout nginx (8 KiB, 60 s).
    fn default() -> Self {
        Limits {
            max_body_bytes: 10 * 1024 * 1024,
            max_headers: 100,
            max_header_bytes: 60 * 1024,
            max_uri_bytes: 8 * 1024,
            body_read_timeout: Duration::from_secs(60),
        }
    }
}

/// How the gateway runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Development mode: problem responses carry every failing field with its reason.
    pub dev: bool,
    /// Request limits.
    pub limits: Limits,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Serve TLS (with ALPN h2 and http/1.1) instead of cleartext.
    pub tls: Option<Tls>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dev: false,
            limits: Limits::default(),
            drain_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting and waits up to the
/// drain timeout for in-flight requests. Each request goes to the worker `workers` holds when it
/// arrives: a reload swaps it, and requests in flight finish on the one they started with.
pub async fn serve(
    workers: tokio::sync::watch::Receiver<Arc<Worker>>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // Limits, TLS and the drain timeout come from the command line: a reload keeps them. (No
    // `Arc<Worker>` is kept here: a replaced worker retires once no request holds it.)
    let config = workers.borrow().config().clone();
    let limits = config.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Envoy's default; slow senders cannot hold a connection open forever.
        .header_read_timeout(Duration::from_secs(60))
        // The codec's hard ceiling; the configurable limit below it answers with a problem.
        .max_headers(limits.max_headers.saturating_mul(4).max(100));
    builder.http2().timer(TokioTimer::new());
    let tls = config.tls.clone().map(|tls| {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
        (acceptor, tls.certificate)
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Running out of file descriptors must not kill the loop.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // Where the client reached the gateway (`destination.*`); a socket that cannot
                // say is already gone.
                let Ok(local) = stream.local_addr() else { continue };
                static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                let id = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let workers = workers.clone();
                // hyper hands a request nothing of its connection: what a TLS handshake settled
                // rides on each of the connection's requests (plain HTTP adds nothing).
                let service = move |session: Option<TlsSession>| {
                    let client = ClientConnection { peer, local, tls: session.is_some(), id };
                    hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                        if let Some(session) = &session {
                            request.extensions_mut().insert(session.clone());
                        }
                        let worker = workers.borrow().clone();
                        async move { worker.handle(request, client).await }
                    })
                };
                let watcher = graceful.watcher();
                let builder = builder.clone();
                let tls = tls.clone();
                // The TLS handshake runs in the connection's task so a slow client cannot stall
                // the accept loop.
                tokio::spawn(async move {
                    let result = match tls {
                        None => {
                            let connection = builder.serve_connection(TokioIo::new(stream), service(None));
                            watcher.watch(connection.into_owned()).await
                        }
                        Some((acceptor, certificate)) => {
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => {
                                    let session = tls_session(stream.get_ref().1, certificate);
                                    let connection = builder.serve_connection(TokioIo::new(stream), service(Some(session)));
                                    watcher.watch(connection.into_owned()).await
                                }
                                Ok(Err(e)) => Err(e.into()),
                                Err(_) => Err("TLS handshake timed out".into()),
                            }
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::debug!(connections = graceful.count(), "draining");
    let drain = config.drain_timeout;
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            "drain timeout reached; closing remaining connections"
        );
    }
    let current = workers.borrow().clone();
    current.shutdown().await;
}

/// What a client's TLS handshake settled, for the plugins (`connection.tls_version`,
/// `connection.requested_server_name`, `connection.*_local_certificate`).
fn tls_session(
    connection: &rustls::ServerConnection,
    local_certificate: Arc<CertificateNames>,
) -> TlsSession {
    TlsSession {
        version: tls_version(connection.protocol_version()),
        server_name: connection.server_name().map(Arc::from),
        local_certificate,
    }
}

/// How long a client has to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway's TLS listener: its rustls configuration, and the names of the certificate it
/// presents (what plugins read of it).
#[derive(Debug, Clone)]
pub struct Tls {
    /// Offers h2 and http/1.1 by ALPN.
    pub config: Arc<rustls::ServerConfig>,
    /// The names of the chain's first (leaf) certificate.
    pub certificate: Arc<CertificateNames>,
}

/// A TLS listener's configuration from PEM files, offering h2 and http/1.1 by ALPN.
pub fn tls_config(cert_file: &std::path::Path, key_file: &std::path::Path) -> Result<Tls, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", cert_file.display()))?;
    let Some(leaf) = certs.first() else {
        return Err(format!("{} holds no certificate", cert_file.display()));
    };
    let certificate = Arc::new(CertificateNames::of(leaf));
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key_file.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("the certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        certificate,
    })
}

/// Binds `count` listening sockets on `addr` with `SO_REUSEPORT`, so the kernel spreads new
/// connections over the workers. With port 0, the first socket picks the port for all.
pub fn bind(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Runs one worker thread per listener, each on its own single-threaded runtime, until
/// `shutdown` turns true; returns once every worker has drained. Each thread serves the gateway
/// `gateways` holds, and a new one from the time it is sent (see [`reload`]).
pub fn run_workers(
    gateways: tokio::sync::watch::Receiver<Arc<Gateway>>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let threads = listeners
        .into_iter()
        .enumerate()
        .map(|(index, listener)| {
            let mut gateways = gateways.clone();
            let mut shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name(format!("barbacane-worker-{index}"))
                .spawn(move || -> Result<(), String> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("worker {index}: cannot start a runtime: {e}"))?;
                    runtime.block_on(async move {
                        let listener = TcpListener::from_std(listener)
                            .map_err(|e| format!("worker {index}: {e}"))?;
                        let gateway = gateways.borrow_and_update().clone();
                        let (workers, current) =
                            tokio::sync::watch::channel(Arc::new(Worker::new(gateway)?));
                        tokio::spawn(reload(index, gateways, workers));
                        serve(current, listener, async move {
                            let _ = shutdown.wait_for(|stop| *stop).await;
                        })
                        .await;
                        Ok(())
                    })
                })
                .map_err(|e| format!("cannot start worker {index}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    for thread in threads {
        thread
            .join()
            .map_err(|_| String::from("a worker thread panicked"))??;
    }
    Ok(())
}

/// Builds this thread's worker for each new gateway (its own upstream pools and plugin
/// replicas) and hands it to [`serve`]; a worker that cannot be built leaves the old one serving.
async fn reload(
    index: usize,
    mut gateways: tokio::sync::watch::Receiver<Arc<Gateway>>,
    workers: tokio::sync::watch::Sender<Arc<Worker>>,
) {
    while gateways.changed().await.is_ok() {
        let gateway = gateways.borrow_and_update().clone();
        match Worker::new(gateway) {
            Ok(worker) => {
                let old = workers.send_replace(Arc::new(worker));
                tokio::spawn(retire(old));
            }
            Err(e) => {
                tracing::error!(worker = index, error = %e, "reload failed; the previous configuration keeps serving");
            }
        }
    }
}

/// Shuts a replaced worker's plugins down once the requests that started on it are over (or the
/// drain timeout has passed).
async fn retire(worker: Arc<Worker>) {
    let deadline = tokio::time::Instant::now() + worker.config().drain_timeout;
    while Arc::strong_count(&worker) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown().await;
}

/// SIGTERM and SIGINT handlers, registered when this is created: a signal that arrives right
/// after start-up stops the gateway cleanly instead of killing it.
pub struct ShutdownSignals {
    runtime: tokio::runtime::Runtime,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Registers the handlers.
    pub fn install() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (terminate, interrupt) = runtime.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })?;
        Ok(ShutdownSignals {
            runtime,
            terminate,
            interrupt,
        })
    }

    /// Blocks until SIGTERM or SIGINT arrives.
    pub fn wait(self) {
        let ShutdownSignals {
            runtime,
            mut terminate,
            mut interrupt,
        } = self;
        runtime.block_on(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        });
    }
}

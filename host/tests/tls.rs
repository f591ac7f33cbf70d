//! TLS on both sides: `https://` upstreams verified against a `ca_file` embedded at compile time,
//! and the gateway's own TLS listener (`--tls-cert`/`--tls-key`) with ALPN h2 and http/1.1.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use barbacane::server::{self, Config};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use support::{gateway_project, get, project};
use tokio::net::TcpListener;

/// A self-signed certificate for `localhost` and its key, both PEM.
fn certificate() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec![String::from("localhost")]).unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

/// A TLS upstream on 127.0.0.1 that answers with the path it saw and the forwarded proto.
async fn tls_upstream(cert_pem: &str, key_pem: &str) -> SocketAddr {
    let dir = project(&[("cert.pem", cert_pem), ("key.pem", key_pem)]);
    let config =
        server::tls_config(&dir.path().join("cert.pem"), &dir.path().join("key.pem")).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config.config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let proto = request
                            .headers()
                            .get("x-forwarded-proto")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let text = format!("{} via {proto}", request.uri().path());
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn spec(port: u16, ca_file: Option<&str>) -> String {
    let ca = ca_file
        .map(|f| format!(", ca_file: {f}"))
        .unwrap_or_default();
    format!(
        "openapi: 3.1.0\ninfo: {{title: t, version: '1'}}\nx-barbacane-upstreams:\n  secure: {{endpoints: ['https://localhost:{port}']{ca}}}\npaths:\n  /hello:\n    get:\n      x-barbacane-dispatch: {{name: http-upstream, config: {{upstream: secure}}}}\n"
    )
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_embedded_ca() {
    let (cert, key) = certificate();
    let up = tls_upstream(&cert, &key).await;
    let trusted = gateway_project(
        &[
            ("api.yaml", &spec(up.port(), Some("certs/ca.pem"))),
            ("certs/ca.pem", &cert),
        ],
        Config::default(),
    )
    .await;
    let reply = get(&trusted.url("/hello")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body.as_ref(), b"/hello via http");

    // The same upstream without its CA: the system roots do not trust it.
    let untrusted =
        gateway_project(&[("api.yaml", &spec(up.port(), None))], Config::default()).await;
    let doc = get(&untrusted.url("/hello"))
        .await
        .problem(502, "bad-gateway");
    assert!(doc["detail"].as_str().unwrap().contains("secure"), "{doc}");
}

#[test]
fn a_missing_or_bad_ca_file_is_a_compile_error() {
    let dir = project(&[
        ("api.yaml", &spec(443, Some("nope.pem"))),
        ("bad.yaml", &spec(443, Some("api.yaml"))),
    ]);
    for file in ["api.yaml", "bad.yaml"] {
        let (code, stdout, _) = support::run(
            dir.path(),
            &["validate", "--spec", file, "--format", "json"],
        );
        assert_eq!(code, 1);
        assert!(
            stdout.contains("E1031") && stdout.contains("ca_file"),
            "{stdout}"
        );
    }
}

#[tokio::test]
async fn the_gateway_serves_tls_with_h2_and_http1() {
    let (cert, key) = certificate();
    let up = tls_upstream(&cert, &key).await;
    let files = project(&[("cert.pem", &cert), ("key.pem", &key)]);
    let tls = server::tls_config(
        &files.path().join("cert.pem"),
        &files.path().join("key.pem"),
    )
    .unwrap();
    let config = Config {
        tls: Some(tls),
        ..Config::default()
    };
    // The conformance `props` filter reports what the plugins learn of the TLS connection and
    // of the upstream that answered over TLS.
    let props = serde_json::json!({
        "properties": [
            {"path": ["connection", "tls_version"], "type": "string"},
            {"path": ["connection", "requested_server_name"], "type": "string"},
            {"path": ["connection", "subject_local_certificate"], "type": "string"},
            {"path": ["connection", "dns_san_local_certificate"], "type": "string"},
            {"path": ["connection", "uri_san_local_certificate"], "type": "string"},
            {"path": ["request", "scheme"], "type": "string"},
        ],
        "response_properties": [
            {"path": ["upstream", "address"], "type": "string"},
            {"path": ["upstream", "tls_version"], "type": "string"},
            {"path": ["upstream", "subject_peer_certificate"], "type": "string"},
            {"path": ["upstream", "dns_san_peer_certificate"], "type": "string"},
            {"path": ["upstream", "sha256_peer_certificate_digest"], "type": "string"},
            {"path": ["response", "code_details"], "type": "string"},
        ],
    });
    let api = format!(
        "{}x-barbacane-middlewares:\n  - name: props\n    config: '{props}'\n",
        spec(up.port(), Some("ca.pem"))
    );
    let files = project(&[
        ("api.yaml", &api),
        ("ca.pem", &cert),
        (
            "barbacane.yaml",
            "plugins:\n  props: {source: 'file:props.wasm'}\n",
        ),
    ]);
    std::fs::write(
        files.path().join("props.wasm"),
        support::conformance_filter("props"),
    )
    .unwrap();
    let gw = support::gateway_in(files, config).await;

    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    let cert_digest: String = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&der);
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    };
    roots.add(der).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    for (http2, version) in [
        (true, http::Version::HTTP_2),
        (false, http::Version::HTTP_11),
    ] {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_config.clone())
            .https_only();
        let connector = if http2 {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        };
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .build::<_, Full<Bytes>>(connector);
        let url = format!("https://localhost:{}/hello", gw.addr.port());
        let response = client.get(url.parse().unwrap()).await.unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-request-id"));
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("x-prop-connection-tls_version"), "TLSv1.3");
        assert_eq!(
            header("x-prop-connection-requested_server_name"),
            "localhost"
        );
        // The certificate the gateway presented: rcgen's subject, its one DNS name, no URI.
        assert_eq!(
            header("x-prop-connection-subject_local_certificate"),
            "CN=rcgen self signed cert"
        );
        assert_eq!(
            header("x-prop-connection-dns_san_local_certificate"),
            "localhost"
        );
        assert_eq!(
            header("x-prop-connection-uri_san_local_certificate"),
            "<absent>"
        );
        assert_eq!(header("x-prop-request-scheme"), "https");
        assert_eq!(header("x-prop-upstream-address"), up.to_string());
        // The upstream's end of its TLS connection: the same rcgen certificate.
        assert_eq!(header("x-prop-upstream-tls_version"), "TLSv1.3");
        assert_eq!(
            header("x-prop-upstream-subject_peer_certificate"),
            "CN=rcgen self signed cert"
        );
        assert_eq!(
            header("x-prop-upstream-dns_san_peer_certificate"),
            "localhost"
        );
        assert_eq!(
            header("x-prop-upstream-sha256_peer_certificate_digest"),
            cert_digest
        );
        assert_eq!(header("x-prop-response-code_details"), "via_upstream");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body.as_ref(),
            b"/hello via https",
            "the upstream is told the client used TLS"
        );
    }
    // Cleartext to a TLS listener is refused, and the gateway keeps serving.
    let addr = gw.addr;
    let text = tokio::task::spawn_blocking(move || {
        support::raw(addr, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    })
    .await
    .unwrap();
    assert!(!text.contains("200 OK"), "{text}");
}

#[test]
fn serve_refuses_unusable_certificates() {
    let (cert, _) = certificate();
    let (_, other_key) = certificate();
    let dir = project(&[
        (
            "api.yaml",
            "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths: {}\n",
        ),
        ("cert.pem", &cert),
        ("key.pem", &other_key),
    ]);
    let (code, _, stderr) = support::run(
        dir.path(),
        &[
            "serve",
            "--spec",
            "api.yaml",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "key.pem",
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("do not fit together"), "{stderr}");
    let (code, _, stderr) = support::run(
        dir.path(),
        &["serve", "--spec", "api.yaml", "--tls-cert", "cert.pem"],
    );
    assert_eq!(code, 2, "--tls-cert needs --tls-key: {stderr}");
}

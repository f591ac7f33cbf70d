//! What the TLS handshake with an upstream settled, noted on the connection: a connector around
//! hyper-rustls's whose TLS streams add an [`UpstreamTls`] to what hyper-util records of a
//! connection, which it then puts on every response that comes over it (read by properties as
//! `upstream.tls_version` and `upstream.*_peer_certificate`).

use crate::proxywasm::properties::UpstreamTls;
use crate::server::BoxError;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// hyper-rustls's connector (TLS to `https://` endpoints, plain TCP to `http://` ones), whose
/// TLS connections note their handshake.
#[derive(Clone)]
pub struct NotingConnector(pub HttpsConnector<HttpConnector>);

impl tower_service::Service<http::Uri> for NotingConnector {
    type Response = NotedStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<NotedStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let stream = connecting.await?;
            // Once per connection: its requests share what it settled.
            let tls = match &stream {
                MaybeHttpsStream::Https(tls) => {
                    Some(Arc::new(UpstreamTls::of(tls.inner().get_ref().1)))
                }
                MaybeHttpsStream::Http(_) => None,
            };
            Ok(NotedStream { stream, tls })
        })
    }
}

/// A connection to an upstream and, over TLS, what its handshake settled.
pub struct NotedStream {
    stream: MaybeHttpsStream<TokioIo<TcpStream>>,
    tls: Option<Arc<UpstreamTls>>,
}

impl Connection for NotedStream {
    fn connected(&self) -> Connected {
        let connected = self.stream.connected();
        match &self.tls {
            Some(tls) => connected.extra(Arc::clone(tls)),
            None => connected,
        }
    }
}

impl Read for NotedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl Write for NotedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

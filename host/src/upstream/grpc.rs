//! gRPC callouts (`proxy_grpc_call`, `proxy_grpc_stream`) over HTTP/2 to a named upstream:
//! length-prefixed messages, `grpc-timeout`, and the status a plugin sees, taken from the
//! trailers (or, from an upstream that does not answer gRPC, mapped from the HTTP status as
//! Envoy's gRPC client does).

use super::{Endpoint, HttpsClient, Upstreams};
use crate::proxywasm::grpc::{GrpcCall, GrpcEvent, GrpcOutgoing, status};
use crate::proxywasm::http::Pairs;
use crate::server::BoxError;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::time::Duration;
use tokio::sync::mpsc;

/// The largest response message accepted (gRPC's default receive limit).
const MAX_MESSAGE: usize = 4 << 20;

/// The final status of an exchange: `grpc-status` and `grpc-message`.
type Outcome = (u32, String);

impl Upstreams {
    /// Runs gRPC call or stream `call` until it ends, handing each event to `deliver` (a unary
    /// call: only its message, or its close when it failed). Returns without a last event when
    /// the plugin cancelled it (its sender was dropped); the HTTP/2 stream is then reset.
    pub async fn grpc(&self, mut call: GrpcCall, mut deliver: impl FnMut(GrpcEvent)) {
        let close = |code, why: &str| GrpcEvent::Close(code, why.to_string());
        let Some((cluster, endpoint)) = self.pick(&call.upstream) else {
            return deliver(close(status::UNAVAILABLE, "no healthy upstream"));
        };
        let (body_tx, body_rx) = mpsc::unbounded_channel::<Option<Bytes>>();
        let Some(request) = request(endpoint, &call, body_rx) else {
            let why = "the call's service, method or metadata do not make a valid request";
            return deliver(close(status::INTERNAL, why));
        };
        let unary = call.unary;
        let mut unary_message = None;
        let outcome = {
            let mut forward = |event| match event {
                GrpcEvent::Message(message) if unary => unary_message = Some(message),
                event => deliver(event),
            };
            let exchange = exchange(cluster.grpc_client.clone(), request, &mut forward);
            tokio::pin!(exchange);
            let deadline = deadline(call.timeout);
            tokio::pin!(deadline);
            let mut body_tx = Some(body_tx);
            loop {
                tokio::select! {
                    biased;
                    outgoing = call.outgoing.recv() => match outgoing {
                        Some(GrpcOutgoing::Message(message)) => {
                            if let Some(tx) = &body_tx {
                                let _ = tx.send(Some(frame(&message)));
                            }
                        }
                        // Ends the request body: the upstream sees the half-close.
                        Some(GrpcOutgoing::Close) => {
                            if let Some(tx) = body_tx.take() {
                                let _ = tx.send(None);
                            }
                        }
                        None => return,
                    },
                    () = &mut deadline => {
                        break (status::DEADLINE_EXCEEDED, String::from("deadline exceeded"));
                    }
                    outcome = &mut exchange => break outcome,
                }
            }
        };
        match (outcome, unary_message) {
            ((status::OK, _), Some(message)) => deliver(GrpcEvent::Message(message)),
            ((code, message), _) => deliver(GrpcEvent::Close(code, message)),
        }
    }
}

async fn deadline(timeout: Option<Duration>) {
    match timeout {
        Some(timeout) => tokio::time::sleep(timeout).await,
        None => std::future::pending().await,
    }
}

/// `POST {base}/{service}/{method}` with the gRPC headers and the call's metadata; the body is
/// what arrives on `body`: framed messages, then `None` for the end of them. A sender dropped
/// before that end (a cancel, a deadline, a VM gone) fails the body, so the HTTP/2 stream is
/// reset rather than half-closed: the upstream must not take a cancel for the end of the
/// messages.
fn request(
    endpoint: &Endpoint,
    call: &GrpcCall,
    body: mpsc::UnboundedReceiver<Option<Bytes>>,
) -> Option<Request<crate::server::Body>> {
    let queued = call.queued.clone();
    let messages = futures_util::stream::unfold(Some(body), move |body| {
        let queued = queued.clone();
        async move {
            let mut body = body?;
            match body.recv().await {
                Some(Some(frame)) => {
                    // The message leaves the queue the plugin's sends are counted against.
                    queued.fetch_sub(frame.len() - 5, std::sync::atomic::Ordering::Relaxed);
                    Some((Ok(Frame::data(frame)), Some(body)))
                }
                Some(None) => None,
                None => Some((Err(BoxError::from("the gRPC call was abandoned")), None)),
            }
        }
    });
    let uri = format!(
        "{}://{}{}/{}/{}",
        endpoint.scheme, endpoint.authority, endpoint.base_path, call.service, call.method
    );
    let mut builder = Request::post(uri)
        .version(http::Version::HTTP_2)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers");
    if let Some(timeout) = call.timeout {
        builder = builder.header("grpc-timeout", format!("{}m", timeout.as_millis()));
    }
    for (key, value) in &call.metadata {
        builder = builder.header(key, value);
    }
    builder.body(StreamBody::new(messages).boxed_unsync()).ok()
}

/// One message as gRPC frames it: not compressed, 4-byte big-endian length, the bytes.
fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.extend_from_slice(&[0]);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed.freeze()
}

/// Sends the request and reads the answer, delivering metadata and messages as they arrive.
async fn exchange(
    client: HttpsClient,
    request: Request<crate::server::Body>,
    deliver: &mut impl FnMut(GrpcEvent),
) -> Outcome {
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(e) if e.is_connect() => {
            return (status::UNAVAILABLE, String::from("upstream connect error"));
        }
        Err(_) => {
            return (
                status::UNAVAILABLE,
                String::from("the upstream reset the call"),
            );
        }
    };
    let (parts, mut body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        let code = grpc_status_of_http(parts.status.as_u16());
        return (code, format!("the upstream answered HTTP {}", parts.status));
    }
    // A trailers-only answer: the status is in the headers.
    if parts.headers.contains_key("grpc-status") {
        deliver(GrpcEvent::TrailingMetadata(Pairs::from_iter(
            &parts.headers,
        )));
        return outcome_of(&parts.headers);
    }
    let grpc_content = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if !grpc_content {
        let why = "the upstream did not answer with application/grpc";
        return (status::UNKNOWN, why.to_string());
    }
    deliver(GrpcEvent::InitialMetadata(Pairs::from_iter(&parts.headers)));
    let mut buffered = BytesMut::new();
    loop {
        let frame = match body.frame().await {
            Some(Ok(frame)) => frame,
            Some(Err(_)) => {
                return (
                    status::INTERNAL,
                    String::from("the upstream reset the call"),
                );
            }
            None => {
                let why = "the upstream ended the call without a status";
                return (status::INTERNAL, why.to_string());
            }
        };
        let frame = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                let trailers = frame.into_trailers().unwrap_or_default();
                deliver(GrpcEvent::TrailingMetadata(Pairs::from_iter(&trailers)));
                return outcome_of(&trailers);
            }
        };
        buffered.extend_from_slice(&frame);
        loop {
            match next_message(&mut buffered) {
                Ok(Some(message)) => deliver(GrpcEvent::Message(message)),
                Ok(None) => break,
                Err(outcome) => return outcome,
            }
        }
    }
}

/// The next whole message in `buffered`, if one has arrived.
fn next_message(buffered: &mut BytesMut) -> Result<Option<Vec<u8>>, Outcome> {
    let Some(prefix) = buffered.get(..5) else {
        return Ok(None);
    };
    if prefix[0] != 0 {
        // Nothing was offered in `grpc-accept-encoding`, so nothing may come compressed.
        let why = "the upstream sent a compressed message";
        return Err((status::INTERNAL, why.to_string()));
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > MAX_MESSAGE {
        let why = format!("a response message of {len} bytes is over the {MAX_MESSAGE} limit");
        return Err((status::RESOURCE_EXHAUSTED, why));
    }
    if buffered.len() < 5 + len {
        return Ok(None);
    }
    buffered.advance(5);
    Ok(Some(buffered.split_to(len).to_vec()))
}

/// `grpc-status` and the percent-decoded `grpc-message`; a missing or unreadable status is
/// UNKNOWN.
fn outcome_of(trailers: &HeaderMap) -> Outcome {
    let code = trailers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(status::UNKNOWN);
    let message = trailers
        .get("grpc-message")
        .map(|v| {
            percent_encoding::percent_decode(v.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    (code, message)
}

/// The gRPC status for an HTTP status that is not 200 (gRPC's HTTP-to-status mapping, as Envoy
/// uses it).
pub(crate) fn grpc_status_of_http(http_status: u16) -> u32 {
    match http_status {
        400 => status::INTERNAL,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => status::UNAVAILABLE,
        _ => status::UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_framed_and_split_across_frames() {
        let mut buffered = BytesMut::new();
        let framed = [frame(b"hello"), frame(b""), frame(b"world")].concat();
        let mut messages = Vec::new();
        for byte in framed {
            buffered.extend_from_slice(&[byte]);
            while let Some(message) = next_message(&mut buffered).unwrap() {
                messages.push(message);
            }
        }
        assert_eq!(messages, [b"hello".to_vec(), Vec::new(), b"world".to_vec()]);
        assert!(buffered.is_empty());
    }

    #[test]
    fn compressed_and_oversized_messages_end_the_call() {
        let mut compressed = BytesMut::from(&[1, 0, 0, 0, 1, b'x'][..]);
        assert_eq!(
            next_message(&mut compressed).unwrap_err().0,
            status::INTERNAL
        );
        let mut huge = BytesMut::from(&[0, 0xff, 0xff, 0xff, 0xff][..]);
        let err = next_message(&mut huge).unwrap_err();
        assert_eq!(err.0, status::RESOURCE_EXHAUSTED);
    }

    #[test]
    fn random_bytes_never_panic_the_message_reader() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..20_000 {
            let len = rng.usize(0..24);
            let mut buffered: BytesMut = (0..len).map(|_| rng.u8(..)).collect();
            while let Ok(Some(_)) = next_message(&mut buffered) {}
        }
    }

    #[test]
    fn statuses_come_from_trailers_or_the_http_status() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "5".parse().unwrap());
        trailers.insert(
            "grpc-message",
            "no such thing: %C3%A9 100%25".parse().unwrap(),
        );
        assert_eq!(
            outcome_of(&trailers),
            (5, String::from("no such thing: é 100%"))
        );
        assert_eq!(
            outcome_of(&HeaderMap::new()),
            (status::UNKNOWN, String::new())
        );
        assert_eq!(grpc_status_of_http(404), 12);
        assert_eq!(grpc_status_of_http(503), status::UNAVAILABLE);
        assert_eq!(grpc_status_of_http(500), status::UNKNOWN);
    }
}

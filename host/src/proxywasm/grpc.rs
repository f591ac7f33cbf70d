//! gRPC callouts as a VM sees them (`proxy_grpc_call`, `proxy_grpc_stream` and the calls on
//! them): the call a plugin starts, what it sends on it afterwards, the events that come back,
//! and the `GrpcService` target Envoy's SDKs may pass instead of a cluster name. The exchange
//! itself (HTTP/2, framing, statuses) is `upstream::grpc`.

use super::http::Pairs;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use tokio::sync::mpsc;

/// The most message bytes a stream may have waiting to go out: a plugin that sends faster than
/// the upstream reads gets BAD_ARGUMENT from `proxy_grpc_send` rather than growing host memory.
pub const MAX_QUEUED_BYTES: usize = 4 << 20;

/// `grpc-status` codes the host itself reports (the rest come from the upstream).
pub mod status {
    /// The call ended well.
    pub const OK: u32 = 0;
    /// No status came back (`UNKNOWN`).
    pub const UNKNOWN: u32 = 2;
    /// The call's timeout passed (`DEADLINE_EXCEEDED`).
    pub const DEADLINE_EXCEEDED: u32 = 4;
    /// A message over the size limit (`RESOURCE_EXHAUSTED`).
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    /// A broken exchange: a reset, a bad frame (`INTERNAL`).
    pub const INTERNAL: u32 = 13;
    /// The upstream cannot be reached (`UNAVAILABLE`).
    pub const UNAVAILABLE: u32 = 14;
}

/// A gRPC call or stream a plugin opened, for the host to start once the callback has returned.
#[derive(Debug)]
pub struct GrpcCall {
    /// The token the plugin got back.
    pub token: u32,
    /// The named upstream (`x-barbacane-upstreams`).
    pub upstream: String,
    /// The gRPC service (`package.Service`); the path is `/{service}/{method}`.
    pub service: String,
    /// The method of the service.
    pub method: String,
    /// Initial metadata: the request's extra headers.
    pub metadata: Pairs,
    /// `None` for no timeout (streams, or a call with timeout 0).
    pub timeout: Option<std::time::Duration>,
    /// A unary call (`proxy_grpc_call`) rather than a stream.
    pub unary: bool,
    /// What the plugin sends on it. The sender lives in the VM as long as the call is open:
    /// when it is dropped (cancel, or the VM is gone) the exchange is abandoned.
    pub outgoing: mpsc::UnboundedReceiver<GrpcOutgoing>,
    /// Message bytes sent by the plugin and not yet taken by the HTTP/2 stream.
    pub queued: Arc<AtomicUsize>,
}

/// What a plugin sends on an open call or stream.
#[derive(Debug)]
pub enum GrpcOutgoing {
    /// One request message.
    Message(Vec<u8>),
    /// The end of the request messages (half-close).
    Close,
}

/// What comes back on a call or stream, in order; `Close` is always last.
#[derive(Debug)]
pub enum GrpcEvent {
    /// The response headers.
    InitialMetadata(Pairs),
    /// One response message.
    Message(Vec<u8>),
    /// The response trailers.
    TrailingMetadata(Pairs),
    /// The call is over: `grpc-status` and `grpc-message`.
    Close(u32, String),
}

/// The VM's side of an open call or stream.
#[derive(Debug)]
pub(super) struct GrpcHandle {
    pub(super) sender: mpsc::UnboundedSender<GrpcOutgoing>,
    pub(super) queued: Arc<AtomicUsize>,
    pub(super) unary: bool,
    /// The plugin ended its messages (`end_stream` or `proxy_grpc_close`).
    pub(super) local_closed: bool,
}

/// The target of a gRPC callout: as Envoy reads `proxy_grpc_call`'s first argument, a serialized
/// `envoy.config.core.v3.GrpcService` (its `envoy_grpc.cluster_name` and its `initial_metadata`)
/// or else a cluster name. A name that is a known upstream is taken as a name
/// first, so no cluster name is ever misread as a message.
pub(super) struct GrpcTarget {
    pub(super) upstream: String,
    pub(super) metadata: Pairs,
}

impl GrpcTarget {
    pub(super) fn parse(bytes: &[u8], known: &[String]) -> Option<GrpcTarget> {
        if let Ok(name) = std::str::from_utf8(bytes)
            && known.iter().any(|k| k == name)
        {
            return Some(GrpcTarget {
                upstream: name.to_string(),
                metadata: Pairs::new(),
            });
        }
        let mut target = GrpcTarget {
            upstream: String::new(),
            metadata: Pairs::new(),
        };
        for (field, value) in protobuf_fields(bytes)? {
            match (field, value) {
                // GrpcService.envoy_grpc: EnvoyGrpc { cluster_name = 1, … }.
                (1, Some(envoy_grpc)) => {
                    for (field, value) in protobuf_fields(envoy_grpc)? {
                        if let (1, Some(name)) = (field, value) {
                            target.upstream = String::from_utf8_lossy(name).into_owned();
                        }
                    }
                }
                // GrpcService.initial_metadata: HeaderValue { key = 1, value = 2 }.
                (5, Some(header)) => {
                    let (mut key, mut value) = (&[][..], &[][..]);
                    for (field, bytes) in protobuf_fields(header)? {
                        match (field, bytes) {
                            (1, Some(k)) => key = k,
                            (2, Some(v)) => value = v,
                            _ => {}
                        }
                    }
                    target.metadata.push(key, value);
                }
                _ => {}
            }
        }
        known.contains(&target.upstream).then_some(target)
    }
}

/// One protobuf field: its number, and the bytes of a length-delimited value (`None` for a
/// scalar).
type Field<'a> = (u64, Option<&'a [u8]>);

/// The top-level fields of a protobuf message; `None` when `bytes` is not a well-formed message.
fn protobuf_fields(mut bytes: &[u8]) -> Option<Vec<Field<'_>>> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let (field, wire_type) = (key >> 3, key & 7);
        if field == 0 {
            return None;
        }
        let value = match wire_type {
            0 => varint(&mut bytes).map(|_| None)?,
            1 | 5 => {
                let size = if wire_type == 1 { 8 } else { 4 };
                bytes = bytes.get(size..)?;
                None
            }
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let (value, rest) = (bytes.get(..len)?, bytes.get(len..)?);
                bytes = rest;
                Some(value)
            }
            _ => return None,
        };
        fields.push((field, value));
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GrpcService { envoy_grpc { cluster_name, authority }, initial_metadata [{key, value}] }`
    /// as protobuf encodes it.
    fn grpc_service(cluster: &str, authority: &str, key: &str, value: &str) -> Vec<u8> {
        let field = |number: u8, bytes: &[u8]| {
            let mut out = vec![(number << 3) | 2, bytes.len() as u8];
            out.extend_from_slice(bytes);
            out
        };
        let envoy_grpc = [field(1, cluster.as_bytes()), field(2, authority.as_bytes())].concat();
        let header = [field(1, key.as_bytes()), field(2, value.as_bytes())].concat();
        [field(1, &envoy_grpc), field(5, &header)].concat()
    }

    #[test]
    fn targets_are_names_or_grpc_services() {
        let known = [String::from("auth"), String::from("b")];
        let by_name = GrpcTarget::parse(b"auth", &known).unwrap();
        assert_eq!(by_name.upstream, "auth");
        assert!(by_name.metadata.is_empty());

        let service = grpc_service("auth", "auth.internal", "X-Key", "v");
        let parsed = GrpcTarget::parse(&service, &known).unwrap();
        assert_eq!(parsed.upstream, "auth");
        assert_eq!(parsed.metadata, Pairs::from([("x-key", "v")]));

        // "b" alone would be a truncated protobuf field: it is a known name first.
        assert_eq!(GrpcTarget::parse(b"b", &known).unwrap().upstream, "b");
        assert!(GrpcTarget::parse(b"unknown", &known).is_none());
        assert!(GrpcTarget::parse(&grpc_service("other", "", "k", "v"), &known).is_none());
        assert!(GrpcTarget::parse(&[0x0a, 0x05, 0x01], &known).is_none());
        assert!(GrpcTarget::parse(&[0xff; 12], &known).is_none());
    }

    #[test]
    fn random_bytes_never_panic_the_target_parser() {
        let known = [String::from("auth")];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = GrpcTarget::parse(&bytes, &known);
        }
    }
}

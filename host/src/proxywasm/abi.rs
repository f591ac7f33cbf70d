//! The ABI's enumerations, as numbers on the wire (Proxy-Wasm 0.2.1 §Types; values checked
//! against the Rust SDK's `types.rs`).

/// `proxy_status_t`. The Rust SDK panics on any status a host call is not documented to return,
/// so each host call answers only from its documented set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The thing asked for does not exist (or is not available now).
    NotFound = 1,
    /// An argument is out of range.
    BadArgument = 2,
    /// A value cannot be serialised (properties).
    SerializationFailure = 3,
    /// An argument cannot be parsed (gRPC upstreams).
    ParseFailure = 4,
    /// A pointer or length points outside guest memory.
    InvalidMemoryAccess = 6,
    /// A shared queue has no item.
    Empty = 7,
    /// A shared-data write lost a compare-and-swap race.
    CasMismatch = 8,
    /// The host failed (e.g. a gRPC call it does not serve).
    InternalFailure = 10,
    /// Not implemented by this host yet.
    Unimplemented = 12,
}

/// `proxy_log_level_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// 0
    Trace,
    /// 1
    Debug,
    /// 2
    Info,
    /// 3
    Warn,
    /// 4
    Error,
    /// 5
    Critical,
}

impl LogLevel {
    /// The level for a wire value, if valid.
    pub fn from_wire(level: i32) -> Option<LogLevel> {
        Some(match level {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// `proxy_buffer_type_t` values the host serves.
pub mod buffer {
    /// The request body (in `proxy_on_request_body`, and while buffered).
    pub const HTTP_REQUEST_BODY: i32 = 0;
    /// The response body.
    pub const HTTP_RESPONSE_BODY: i32 = 1;
    /// A callout's response body, in `proxy_on_http_call_response`.
    pub const HTTP_CALL_RESPONSE_BODY: i32 = 4;
    /// A gRPC callout's message, in `proxy_on_grpc_receive`.
    pub const GRPC_CALL_MESSAGE: i32 = 5;
    /// The VM configuration (`vm_config`), readable from `proxy_on_vm_start`.
    pub const VM_CONFIGURATION: i32 = 6;
    /// The plugin configuration (`config`), readable from `proxy_on_configure`.
    pub const PLUGIN_CONFIGURATION: i32 = 7;
}

//! The `env` host functions of the Proxy-Wasm ABI: every 0.2.1 function and the four 0.1.0-only
//! ones, because SDK-built modules import nearly all of them whether they use them or not, and a
//! missing import fails instantiation.
//!
//! Each answers only with statuses the SDKs accept for it (Proxy-Wasm reference §4.2): the Rust
//! SDK panics on any other. Stream calls act on the *effective* context (the callback's own, or
//! the one `proxy_set_effective_context` chose); continue, close and local responses are left as
//! signals the host acts on after the callback returns, callouts and tick changes in the outbox.
//!
//! What a plugin hands the host to keep (header entries, callout bodies, filter state, body
//! buffers, queue and metric names) is bounded: past a limit the call is refused with a status
//! the SDKs accept where there is one, and traps otherwise ([`over_limit`]).

use super::abi::{LogLevel, Status, buffer};
use super::capability::Capability;
use super::foreign;
use super::grpc::{GrpcCall, GrpcHandle, GrpcOutgoing, GrpcTarget, MAX_QUEUED_BYTES};
use super::http::{Pairs, deserialize, serialize_into, serialized_size};
use super::memory::{
    read, return_bytes, return_state_bytes, return_written, with_slice, with_slices, write_u32,
    write_u64,
};
use super::module::AbiVersion;
use super::properties::{self, FILTER_STATE_LIMIT_BYTES, PropertyView};
use super::shared::{MetricKind, PluginMetrics, SharedData, SharedQueues};
use super::vm::{BodyBuffer, Callout, Direction, HostState, LocalResponse, Signal, plugin_text};
use wasmtime::{Caller, Linker};

/// The most callouts one VM may have in flight; more answer INTERNAL_FAILURE (which the SDKs
/// return to the filter as an error), so a runaway plugin cannot flood an upstream.
const MAX_PENDING_CALLOUTS: usize = 1024;

/// The most bytes one VM's callouts may hold (HTTP bodies and maps until their answer, gRPC
/// messages until they go out); more answer INTERNAL_FAILURE, so that a plugin cannot make the
/// host hold gigabytes of callouts.
const MAX_CALLOUT_BYTES: usize = 64 << 20;

/// The most bytes a plugin may make a body buffer hold with `proxy_set_buffer_bytes` (as much as
/// its whole memory): past it, the call traps, so that appending in a loop cannot make the host
/// hold gigabytes.
const MAX_BODY_BUFFER_BYTES: usize = super::vm::MEMORY_LIMIT_BYTES;

/// The most a header-map blob may hold, as in Envoy's host (`limits.h`).
const MAX_PAIRS_BYTES: usize = 1 << 20;

/// Defines every `env` import on `linker`.
pub(super) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    macro_rules! define {
        ($($name:ident),* $(,)?) => {
            $(linker.func_wrap("env", stringify!($name), $name)?;)*
        };
    }
    define!(
        proxy_log,
        proxy_get_log_level,
        proxy_get_current_time_nanoseconds,
        proxy_set_tick_period_milliseconds,
        proxy_set_effective_context,
        proxy_done,
        proxy_get_buffer_bytes,
        proxy_set_buffer_bytes,
        proxy_get_buffer_status,
        proxy_get_configuration,
        proxy_get_header_map_pairs,
        proxy_get_header_map_size,
        proxy_set_header_map_pairs,
        proxy_get_header_map_value,
        proxy_add_header_map_value,
        proxy_replace_header_map_value,
        proxy_remove_header_map_value,
        proxy_continue_stream,
        proxy_close_stream,
        proxy_continue_request,
        proxy_continue_response,
        proxy_clear_route_cache,
        proxy_send_local_response,
        proxy_get_status,
        proxy_http_call,
        proxy_grpc_call,
        proxy_grpc_stream,
        proxy_grpc_send,
        proxy_grpc_cancel,
        proxy_grpc_close,
        proxy_set_shared_data,
        proxy_get_shared_data,
        proxy_register_shared_queue,
        proxy_resolve_shared_queue,
        proxy_enqueue_shared_queue,
        proxy_dequeue_shared_queue,
        proxy_define_metric,
        proxy_increment_metric,
        proxy_record_metric,
        proxy_get_metric,
        proxy_get_property,
        proxy_set_property,
        proxy_call_foreign_function,
    );
    Ok(())
}

fn status(result: Result<(), Status>) -> i32 {
    result.err().unwrap_or(Status::Ok) as i32
}

fn proxy_log(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> i32 {
    let Some(level) = LogLevel::from_wire(level) else {
        return Status::BadArgument as i32;
    };
    let logged = with_slice(&mut caller, ptr, len, |bytes, state| {
        state.log(level, plugin_text(bytes, bytes.len()));
    });
    status(logged)
}

/// The gateway's own log level, so filters can skip formatting messages that would be dropped.
fn proxy_get_log_level(mut caller: Caller<'_, HostState>, level_out: i32) -> i32 {
    use tracing::level_filters::LevelFilter;
    let level = match LevelFilter::current() {
        LevelFilter::TRACE => 0,
        LevelFilter::DEBUG => 1,
        LevelFilter::INFO => 2,
        LevelFilter::WARN => 3,
        LevelFilter::ERROR => 4,
        _ => 5,
    };
    status(write_u32(&mut caller, level_out, level))
}

fn proxy_get_current_time_nanoseconds(mut caller: Caller<'_, HostState>, time_out: i32) -> i32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    status(write_u64(&mut caller, time_out, nanos))
}

/// Stream calls that follow act on `context`; only the plugin's own contexts (of this VM) are
/// accepted. Reset when the callback returns.
fn proxy_set_effective_context(mut caller: Caller<'_, HostState>, context: i32) -> i32 {
    let state = caller.data_mut();
    let context = context as u32;
    if context == state.root_context || state.streams.contains_key(&context) {
        state.effective = context;
        Status::Ok as i32
    } else {
        Status::BadArgument as i32
    }
}

/// A stream whose `on_done` returned false is finished (`on_log`, `on_delete`) after this; so is
/// a root context whose `on_done` at shutdown returned false (`on_delete`).
fn proxy_done(mut caller: Caller<'_, HostState>) -> i32 {
    let state = caller.data_mut();
    let context = state.effective;
    if context == state.root_context && state.root_done_pending {
        state.root_done_pending = false;
        state.outbox.root_finished = true;
        return Status::Ok as i32;
    }
    match state.streams.get_mut(&context) {
        Some(stream) if stream.done_pending => {
            stream.done_pending = false;
            state.outbox.finished.push(context);
            Status::Ok as i32
        }
        _ => Status::NotFound as i32,
    }
}

fn proxy_set_tick_period_milliseconds(mut caller: Caller<'_, HostState>, period: i32) -> i32 {
    let period = period as u32;
    if period > 0 {
        caller.data_mut().used.insert(Capability::Timers);
    }
    caller.data_mut().outbox.tick_period =
        Some((period > 0).then(|| std::time::Duration::from_millis(u64::from(period))));
    Status::Ok as i32
}

/// The buffer `buffer_type` names, if it exists in the callback in progress.
fn buffer_of(state: &HostState, buffer_type: i32) -> Result<Option<&[u8]>, Status> {
    Ok(match buffer_type {
        buffer::HTTP_REQUEST_BODY | buffer::HTTP_RESPONSE_BODY => state
            .streams
            .get(&state.effective)
            .and_then(|s| s.bodies[buffer_type as usize].as_ref())
            .map(BodyBuffer::as_slice),
        buffer::HTTP_CALL_RESPONSE_BODY => state.call_response.as_ref().map(|c| &c.body[..]),
        buffer::GRPC_CALL_MESSAGE => state.grpc_message.as_deref(),
        buffer::VM_CONFIGURATION => Some(&state.vm_config),
        buffer::PLUGIN_CONFIGURATION => Some(&state.plugin_config),
        // TCP data and foreign-function arguments never exist here.
        0..=8 => None,
        _ => return Err(Status::BadArgument),
    })
}

fn proxy_get_buffer_bytes(
    mut caller: Caller<'_, HostState>,
    buffer_type: i32,
    start: i32,
    max_size: i32,
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<i32> {
    let (start, max) = (start as u32 as usize, max_size as u32 as usize);
    if start.checked_add(max).is_none() {
        return Ok(Status::BadArgument as i32);
    }
    let len = match buffer_of(caller.data(), buffer_type) {
        Ok(Some(buffer)) => buffer_part(buffer, start, max).len(),
        Ok(None) => return Ok(Status::NotFound as i32),
        Err(status) => return Ok(status as i32),
    };
    // Nothing to read (an empty buffer, a slice past its end, `max_size` 0) is OK with the
    // out-pointers left untouched, as in Envoy: the AssemblyScript SDK passes the size it was
    // given as `len_out` and then reads its own buffer reference.
    if len == 0 {
        return Ok(Status::Ok as i32);
    }
    // Copied from the buffer straight into the guest's.
    let returned = return_state_bytes(
        &mut caller,
        |state| {
            Some(buffer_part(
                buffer_of(state, buffer_type).ok()??,
                start,
                max,
            ))
        },
        ptr_out,
        len_out,
    );
    Ok(returned? as i32)
}

/// At most `max` bytes of `buffer` from `start`; reading past the end returns nothing, as in
/// Envoy.
fn buffer_part(buffer: &[u8], start: usize, max: usize) -> &[u8] {
    let slice = buffer.get(start..).unwrap_or_default();
    &slice[..slice.len().min(max)]
}

/// Envoy's semantics: `start == 0` drains `size` bytes and prepends the data (so `0, len`
/// replaces everything and `0, 0` prepends); `start >= len` appends; anything else is refused.
/// A body that would hold more than [`MAX_BODY_BUFFER_BYTES`] traps the plugin.
fn proxy_set_buffer_bytes(
    mut caller: Caller<'_, HostState>,
    buffer_type: i32,
    start: i32,
    size: i32,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    let data = match read(&mut caller, ptr, len) {
        Ok(d) => d,
        Err(status) => return Ok(status as i32),
    };
    if !matches!(
        buffer_type,
        buffer::HTTP_REQUEST_BODY | buffer::HTTP_RESPONSE_BODY
    ) {
        return Ok(Status::BadArgument as i32);
    }
    let (start, size) = (start as u32 as usize, size as u32 as usize);
    let body = caller
        .data_mut()
        .stream()
        .and_then(|s| s.bodies[buffer_type as usize].as_mut());
    let Some(buffer) = body.map(BodyBuffer::to_mut) else {
        return Ok(Status::NotFound as i32);
    };
    let replaced = match start {
        0 => size.min(buffer.len()),
        _ if start >= buffer.len() => 0,
        _ => return Ok(Status::BadArgument as i32),
    };
    if buffer.len() - replaced + data.len() > MAX_BODY_BUFFER_BYTES {
        let why = format!("the body would hold more than {MAX_BODY_BUFFER_BYTES} bytes");
        return Err(over_limit("proxy_set_buffer_bytes", why));
    }
    if start == 0 {
        buffer.splice(..replaced, data);
    } else {
        buffer.extend_from_slice(&data);
    }
    Ok(Status::Ok as i32)
}

fn proxy_get_buffer_status(
    mut caller: Caller<'_, HostState>,
    buffer_type: i32,
    len_out: i32,
    flags_out: i32,
) -> i32 {
    let len = match buffer_of(caller.data(), buffer_type) {
        Ok(Some(buffer)) => buffer.len() as u32,
        Ok(None) => return Status::NotFound as i32,
        Err(status) => return status as i32,
    };
    status(write_u32(&mut caller, len_out, len).and_then(|()| write_u32(&mut caller, flags_out, 0)))
}

/// ABI 0.1.0: the configuration of the callback in progress (VM config in `on_vm_start`, plugin
/// config otherwise).
fn proxy_get_configuration(
    mut caller: Caller<'_, HostState>,
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<i32> {
    let state = caller.data();
    let config = if state.in_vm_start {
        state.vm_config.clone()
    } else {
        state.plugin_config.clone()
    };
    Ok(return_bytes(&mut caller, &config, ptr_out, len_out)? as i32)
}

/// The map a call addresses, if it is available in this callback: 0–3 are the effective
/// stream's headers and trailers, 4 and 5 a gRPC callout's metadata, 6 and 7 an HTTP callout
/// response's headers and trailers.
fn map_mut(state: &mut HostState, map: i32) -> Result<Option<&mut Pairs>, Status> {
    Ok(match map {
        0..=3 => state.stream().and_then(|s| s.maps[map as usize].as_mut()),
        6 => state.call_response.as_mut().map(|c| &mut c.headers),
        7 => state.call_response.as_mut().map(|c| &mut c.trailers),
        4 | 5 => match &mut state.grpc_metadata {
            Some((m, pairs)) if *m == map => Some(pairs),
            _ => None,
        },
        _ => return Err(Status::BadArgument),
    })
}

/// [`map_mut`] for reading: request and response headers stay readable after their phase (for
/// `on_log`), as in Envoy.
fn map_ref(state: &HostState, map: i32) -> Result<Option<&Pairs>, Status> {
    Ok(match map {
        0..=3 => state
            .streams
            .get(&state.effective)
            .and_then(|s| s.map(map as usize)),
        6 => state.call_response.as_ref().map(|c| &c.headers),
        7 => state.call_response.as_ref().map(|c| &c.trailers),
        4 | 5 => match &state.grpc_metadata {
            Some((m, pairs)) if *m == map => Some(pairs),
            _ => None,
        },
        _ => return Err(Status::BadArgument),
    })
}

fn proxy_get_header_map_pairs(
    mut caller: Caller<'_, HostState>,
    map: i32,
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<i32> {
    // An unavailable map reads as empty, as in Envoy. Serialized straight into the guest's
    // buffer: a plugin reading a whole map does so on every request.
    let empty = Pairs::new();
    let size = match map_ref(caller.data(), map) {
        Ok(pairs) => serialized_size(pairs.unwrap_or(&empty)),
        Err(status) => return Ok(status as i32),
    };
    let write = |state: &HostState, out: &mut [u8]| match map_ref(state, map) {
        Ok(pairs) => serialize_into(pairs.unwrap_or(&empty), out),
        Err(_) => false,
    };
    Ok(return_written(&mut caller, size, write, ptr_out, len_out)? as i32)
}

/// Envoy's `HeaderMap::byteSize()`: the sum of key and value lengths (not the number of
/// entries, nor the serialised size); BAD_ARGUMENT when the map is not available.
fn proxy_get_header_map_size(mut caller: Caller<'_, HostState>, map: i32, size_out: i32) -> i32 {
    let size: usize = match map_ref(caller.data(), map) {
        Ok(Some(pairs)) => pairs.byte_size(),
        Ok(None) => return Status::BadArgument as i32,
        Err(status) => return status as i32,
    };
    status(write_u32(&mut caller, size_out, size as u32))
}

fn proxy_set_header_map_pairs(
    mut caller: Caller<'_, HostState>,
    map: i32,
    ptr: i32,
    len: i32,
) -> i32 {
    // Parsed where it lies in guest memory.
    let edited = with_slice(&mut caller, ptr, len, |bytes, state| {
        let new_pairs = deserialize(bytes).ok_or(Status::BadArgument)?;
        edit_available(state, map, |pairs| *pairs = new_pairs)
    });
    status(edited.and_then(|edited| edited))
}

/// Applies `edit` to map `map`, if that map exists in the callback in progress.
fn edit_available(
    state: &mut HostState,
    map: i32,
    edit: impl FnOnce(&mut Pairs),
) -> Result<(), Status> {
    let pairs = map_mut(state, map)?.ok_or(Status::BadArgument)?;
    edit(pairs);
    Ok(())
}

/// The first value of `key` (Envoy returns only the first of repeated headers).
fn proxy_get_header_map_value(
    mut caller: Caller<'_, HostState>,
    map: i32,
    key_ptr: i32,
    key_len: i32,
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<i32> {
    // The key is compared where it lies in guest memory; the value is copied from the map
    // straight into the guest's buffer.
    let found = with_slice(&mut caller, key_ptr, key_len, |key, state| {
        map_ref(state, map).map(|pairs| pairs.and_then(|pairs| pairs.position(key)))
    });
    let index = match found.and_then(|found| found) {
        Ok(index) => index,
        Err(status) => return Ok(status as i32),
    };
    match index {
        Some(index) => {
            let returned = return_state_bytes(
                &mut caller,
                |state| map_value(state, map, index),
                ptr_out,
                len_out,
            );
            Ok(returned? as i32)
        }
        // ABI 0.1.0 answered a missing header with an empty value.
        None if caller.data().abi == AbiVersion::V0_1_0 => {
            Ok(return_bytes(&mut caller, &[], ptr_out, len_out)? as i32)
        }
        None => Ok(Status::NotFound as i32),
    }
}

/// The value at `index` of map `map`.
fn map_value(state: &HostState, map: i32, index: usize) -> Option<&[u8]> {
    map_ref(state, map).ok()??.value(index)
}

/// The shared shape of add and replace: the map copies the key and value straight from guest
/// memory.
fn edit_map(
    caller: &mut Caller<'_, HostState>,
    map: i32,
    key: (i32, i32),
    value: (i32, i32),
    edit: impl FnOnce(&mut Pairs, &[u8], &[u8]),
) -> i32 {
    let edited = with_slices(caller, key, value, |key, value, state| {
        edit_available(state, map, |pairs| edit(pairs, key, value))
    });
    status(edited.and_then(|edited| edited))
}

fn proxy_add_header_map_value(
    mut caller: Caller<'_, HostState>,
    map: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> i32 {
    edit_map(&mut caller, map, (kp, kl), (vp, vl), Pairs::push)
}

fn proxy_replace_header_map_value(
    mut caller: Caller<'_, HostState>,
    map: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> i32 {
    edit_map(&mut caller, map, (kp, kl), (vp, vl), Pairs::replace)
}

fn proxy_remove_header_map_value(
    mut caller: Caller<'_, HostState>,
    map: i32,
    kp: i32,
    kl: i32,
) -> i32 {
    let removed = with_slice(&mut caller, kp, kl, |key, state| {
        edit_available(state, map, |pairs| pairs.remove(key))
    });
    status(removed.and_then(|removed| removed))
}

/// Leaves `signal` for the effective stream, and wakes it in case it is paused (a signal from
/// a callout, tick or queue callback resumes a stream that waits). From the root context with no
/// stream there is nothing to act on: Envoy answers OK and does nothing.
fn signal_stream(caller: &mut Caller<'_, HostState>, signal: Signal) {
    if let Some(stream) = caller.data_mut().stream() {
        // The host acts on the first signal of each kind; keeping only that one bounds what a
        // plugin calling in a loop makes the stream hold.
        if stream
            .signals
            .iter()
            .any(|pending| pending.same_ask(&signal))
        {
            return;
        }
        // A resume wakes the task waiting on its direction; a local response or a reset, both.
        let woken = match signal {
            Signal::Resume(direction) => direction as usize..direction as usize + 1,
            _ => 0..2,
        };
        stream.signals.push(signal);
        for wake in stream.wake[woken].iter().flatten() {
            wake.notify_one();
        }
    }
}

/// Records a local response; the host sends it once the callback returns (as Envoy defers it).
#[allow(clippy::too_many_arguments, reason = "the ABI's signature")]
fn proxy_send_local_response(
    mut caller: Caller<'_, HostState>,
    status_code: i32,
    details_ptr: i32,
    details_len: i32,
    body_ptr: i32,
    body_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    _grpc_status: i32,
) -> i32 {
    let read_all = |caller: &mut Caller<'_, HostState>| -> Result<LocalResponse, Status> {
        let details =
            String::from_utf8_lossy(&read(caller, details_ptr, details_len)?).into_owned();
        let body = read(caller, body_ptr, body_len)?;
        let headers =
            deserialize(&read(caller, headers_ptr, headers_len)?).ok_or(Status::BadArgument)?;
        let status = u16::try_from(status_code)
            .ok()
            .filter(|s| (100..=999).contains(s))
            .ok_or(Status::BadArgument)?;
        Ok(LocalResponse {
            status,
            headers,
            body,
            details,
        })
    };
    match read_all(&mut caller) {
        Ok(response) => {
            signal_stream(&mut caller, Signal::Respond(Box::new(response)));
            Status::Ok as i32
        }
        Err(status) => status as i32,
    }
}

/// `HTTP_REQUEST` / `HTTP_RESPONSE`; the TCP stream types (2, 3) have no stream here, so they
/// are accepted and do nothing (the Rust SDK panics on any status but OK).
fn stream_direction(stream_type: i32) -> Result<Option<Direction>, Status> {
    match stream_type {
        0 => Ok(Some(Direction::Request)),
        1 => Ok(Some(Direction::Response)),
        2 | 3 => Ok(None),
        _ => Err(Status::BadArgument),
    }
}

fn proxy_continue_stream(mut caller: Caller<'_, HostState>, stream_type: i32) -> i32 {
    match stream_direction(stream_type) {
        Ok(direction) => {
            if let Some(direction) = direction {
                signal_stream(&mut caller, Signal::Resume(direction));
            }
            Status::Ok as i32
        }
        Err(status) => status as i32,
    }
}

fn proxy_close_stream(mut caller: Caller<'_, HostState>, stream_type: i32) -> i32 {
    match stream_direction(stream_type) {
        Ok(direction) => {
            if let Some(direction) = direction {
                signal_stream(&mut caller, Signal::Close(direction));
            }
            Status::Ok as i32
        }
        Err(status) => status as i32,
    }
}

/// ABI 0.1.0's `proxy_continue_request`.
fn proxy_continue_request(mut caller: Caller<'_, HostState>) -> i32 {
    signal_stream(&mut caller, Signal::Resume(Direction::Request));
    Status::Ok as i32
}

/// ABI 0.1.0's `proxy_continue_response`.
fn proxy_continue_response(mut caller: Caller<'_, HostState>) -> i32 {
    signal_stream(&mut caller, Signal::Resume(Direction::Response));
    Status::Ok as i32
}

/// ABI 0.1.0: routes are chosen before filters run here, so there is no cache to clear.
fn proxy_clear_route_cache(_caller: Caller<'_, HostState>) -> i32 {
    Status::Ok as i32
}

/// The outcome of the last failed callout: Envoy's `BrokenConnection` (11) and "reset" after an
/// HTTP callout, the `grpc-status` and `grpc-message` in `proxy_on_grpc_close`.
fn proxy_get_status(
    mut caller: Caller<'_, HostState>,
    code_out: i32,
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<i32> {
    let (code, message) = caller.data().last_status.clone();
    if let Err(status) = write_u32(&mut caller, code_out, code) {
        return Ok(status as i32);
    }
    Ok(return_bytes(&mut caller, message.as_bytes(), ptr_out, len_out)? as i32)
}

/// Sends an HTTP request to a named upstream (`x-barbacane-upstreams`) once the callback has
/// returned; the answer goes to the root context's `proxy_on_http_call_response`.
#[allow(clippy::too_many_arguments, reason = "the ABI's signature")]
fn proxy_http_call(
    mut caller: Caller<'_, HostState>,
    upstream_ptr: i32,
    upstream_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    body_ptr: i32,
    body_len: i32,
    trailers_ptr: i32,
    trailers_len: i32,
    timeout_ms: i32,
    token_out: i32,
) -> i32 {
    caller.data_mut().used.insert(Capability::HttpCalls);
    let read_all = |caller: &mut Caller<'_, HostState>| -> Result<Callout, Status> {
        let upstream =
            String::from_utf8_lossy(&read(caller, upstream_ptr, upstream_len)?).into_owned();
        let headers = read_pairs(caller, headers_ptr, headers_len)?;
        let body = read(caller, body_ptr, body_len)?;
        let trailers = read_pairs(caller, trailers_ptr, trailers_len)?;
        if !caller.data().upstreams.contains(&upstream) {
            caller.data_mut().log(
                LogLevel::Warn,
                format!("http callout to '{upstream}': no such upstream in x-barbacane-upstreams"),
            );
            return Err(Status::BadArgument);
        }
        for required in [":method", ":path", ":authority"] {
            if headers
                .get(required.as_bytes())
                .is_none_or(<[u8]>::is_empty)
            {
                return Err(Status::BadArgument);
            }
        }
        let timeout_ms = timeout_ms as u32;
        Ok(Callout {
            token: 0,
            upstream,
            headers,
            body,
            trailers,
            timeout: (timeout_ms > 0)
                .then(|| std::time::Duration::from_millis(u64::from(timeout_ms))),
        })
    };
    let mut callout = match read_all(&mut caller) {
        Ok(c) => c,
        Err(status) => return status as i32,
    };
    let state = caller.data_mut();
    let bytes = callout.body.len() + callout.headers.byte_size() + callout.trailers.byte_size();
    if let Err(status) = callout_room(state, "http", bytes) {
        return status as i32;
    }
    callout.token = state.next_token();
    let token = callout.token;
    if let Err(status) = write_u32(&mut caller, token_out, token) {
        return status as i32;
    }
    let state = caller.data_mut();
    state.pending_calls.insert(token, bytes);
    state.outbox.callouts.push(callout);
    Status::Ok as i32
}

/// The bytes a VM's callouts hold: HTTP callouts' until their answer, gRPC messages' until they
/// go out.
fn callout_bytes(state: &HostState) -> usize {
    let http: usize = state.pending_calls.values().sum();
    let queued = |h: &GrpcHandle| h.queued.load(std::sync::atomic::Ordering::Relaxed);
    http + state.grpc.values().map(queued).sum::<usize>()
}

/// Whether one more callout, holding `bytes`, may open: INTERNAL_FAILURE (logged) when
/// [`MAX_PENDING_CALLOUTS`] are open or the callouts would hold more than [`MAX_CALLOUT_BYTES`].
fn callout_room(state: &mut HostState, kind: &str, bytes: usize) -> Result<(), Status> {
    let why = if state.pending_calls.len() + state.grpc.len() >= MAX_PENDING_CALLOUTS {
        format!("{MAX_PENDING_CALLOUTS} callouts already pending")
    } else if callout_bytes(state) + bytes > MAX_CALLOUT_BYTES {
        format!("the callouts would hold more than {MAX_CALLOUT_BYTES} bytes")
    } else {
        return Ok(());
    };
    state.log(LogLevel::Warn, format!("{kind} callout refused: {why}"));
    Err(Status::InternalFailure)
}

fn read_pairs(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Pairs, Status> {
    if len as u32 as usize > MAX_PAIRS_BYTES {
        return Err(Status::BadArgument);
    }
    deserialize(&read(caller, ptr, len)?).ok_or(Status::BadArgument)
}

/// Opens a unary gRPC call to a named upstream once the callback has returned; the answer goes
/// to the root context (`proxy_on_grpc_receive`, or `proxy_on_grpc_close` on failure).
#[allow(clippy::too_many_arguments, reason = "the ABI's signature")]
fn proxy_grpc_call(
    mut caller: Caller<'_, HostState>,
    target_ptr: i32,
    target_len: i32,
    service_ptr: i32,
    service_len: i32,
    method_ptr: i32,
    method_len: i32,
    metadata_ptr: i32,
    metadata_len: i32,
    message_ptr: i32,
    message_len: i32,
    timeout_ms: i32,
    token_out: i32,
) -> i32 {
    // The SDKs accept only OK, PARSE_FAILURE and INTERNAL_FAILURE here.
    let Ok(message) = read(&mut caller, message_ptr, message_len) else {
        return Status::ParseFailure as i32;
    };
    let timeout_ms = timeout_ms as u32;
    let timeout = (timeout_ms > 0).then(|| std::time::Duration::from_millis(timeout_ms.into()));
    let spans = GrpcSpans {
        target: (target_ptr, target_len),
        service: (service_ptr, service_len),
        method: (method_ptr, method_len),
        metadata: (metadata_ptr, metadata_len),
    };
    open_grpc(&mut caller, spans, Some(message), timeout, token_out) as i32
}

/// Opens a gRPC stream to a named upstream once the callback has returned; messages go with
/// `proxy_grpc_send`, events come to the root context.
#[allow(clippy::too_many_arguments, reason = "the ABI's signature")]
fn proxy_grpc_stream(
    mut caller: Caller<'_, HostState>,
    target_ptr: i32,
    target_len: i32,
    service_ptr: i32,
    service_len: i32,
    method_ptr: i32,
    method_len: i32,
    metadata_ptr: i32,
    metadata_len: i32,
    token_out: i32,
) -> i32 {
    let spans = GrpcSpans {
        target: (target_ptr, target_len),
        service: (service_ptr, service_len),
        method: (method_ptr, method_len),
        metadata: (metadata_ptr, metadata_len),
    };
    open_grpc(&mut caller, spans, None, None, token_out) as i32
}

/// Where the arguments of `proxy_grpc_call` and `proxy_grpc_stream` lie in guest memory
/// (pointer, length).
struct GrpcSpans {
    target: (i32, i32),
    service: (i32, i32),
    method: (i32, i32),
    metadata: (i32, i32),
}

/// `proxy_grpc_call` (with its one message) and `proxy_grpc_stream` (`message` `None`). Statuses
/// as Envoy's: PARSE_FAILURE for an unknown upstream, INTERNAL_FAILURE when too many are open or
/// they would hold too much (see [`callout_room`]).
fn open_grpc(
    caller: &mut Caller<'_, HostState>,
    spans: GrpcSpans,
    message: Option<Vec<u8>>,
    timeout: Option<std::time::Duration>,
    token_out: i32,
) -> Status {
    caller.data_mut().used.insert(Capability::GrpcCalls);
    let text = |caller: &mut Caller<'_, HostState>, (ptr, len)| {
        String::from_utf8(read(caller, ptr, len)?).map_err(|_| Status::BadArgument)
    };
    let read_all = |caller: &mut Caller<'_, HostState>| -> Result<_, Status> {
        let target = read(caller, spans.target.0, spans.target.1)?;
        let service = text(caller, spans.service)?;
        let method = text(caller, spans.method)?;
        let metadata = read_pairs(caller, spans.metadata.0, spans.metadata.1)?;
        Ok((target, service, method, metadata))
    };
    // The SDKs accept only OK, PARSE_FAILURE and INTERNAL_FAILURE here.
    let Ok((target, service, method, metadata)) = read_all(caller) else {
        return Status::ParseFailure;
    };
    let state = caller.data_mut();
    let Some(target) = GrpcTarget::parse(&target, &state.upstreams) else {
        let shown = String::from_utf8_lossy(&target).into_owned();
        state.log(
            LogLevel::Warn,
            format!("gRPC callout to '{shown}': no such upstream in x-barbacane-upstreams"),
        );
        return Status::ParseFailure;
    };
    if let Err(status) = callout_room(state, "gRPC", message.as_ref().map_or(0, Vec::len)) {
        return status;
    }
    let token = state.next_token();
    if let Err(status) = write_u32(caller, token_out, token) {
        return status;
    }
    let (sender, outgoing) = tokio::sync::mpsc::unbounded_channel();
    let queued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let unary = message.is_some();
    if let Some(message) = message {
        queued.fetch_add(message.len(), std::sync::atomic::Ordering::Relaxed);
        // A unary call's request is complete at once; the channel stays open until the answer.
        let _ = sender.send(GrpcOutgoing::Message(message));
        let _ = sender.send(GrpcOutgoing::Close);
    }
    let mut all_metadata = target.metadata;
    all_metadata.extend(&metadata);
    let state = caller.data_mut();
    state.grpc.insert(
        token,
        GrpcHandle {
            sender,
            queued: queued.clone(),
            unary,
            local_closed: unary,
        },
    );
    state.outbox.grpc_calls.push(GrpcCall {
        token,
        upstream: target.upstream,
        service,
        method,
        metadata: all_metadata,
        timeout,
        unary,
        outgoing,
        queued,
    });
    Status::Ok
}

/// Sends a message on an open stream (BAD_ARGUMENT for a unary call or after the plugin ended
/// its messages, NOT_FOUND for an unknown token, as Envoy; BAD_ARGUMENT too while more than
/// [`MAX_QUEUED_BYTES`] wait to go out on it, or the VM's callouts would hold more than
/// [`MAX_CALLOUT_BYTES`]).
fn proxy_grpc_send(
    mut caller: Caller<'_, HostState>,
    token: i32,
    ptr: i32,
    len: i32,
    end_stream: i32,
) -> i32 {
    let message = match read(&mut caller, ptr, len) {
        Ok(m) => m,
        Err(status) => return status as i32,
    };
    let state = caller.data_mut();
    let all_queued = callout_bytes(state);
    let Some(handle) = state.grpc.get_mut(&(token as u32)) else {
        return Status::NotFound as i32;
    };
    if handle.unary || handle.local_closed {
        return Status::BadArgument as i32;
    }
    let queued = handle.queued.load(std::sync::atomic::Ordering::Relaxed);
    let refused = if queued + message.len() > MAX_QUEUED_BYTES {
        Some(format!("{queued} bytes already wait to go out"))
    } else if all_queued + message.len() > MAX_CALLOUT_BYTES {
        Some(format!(
            "the callouts would hold more than {MAX_CALLOUT_BYTES} bytes"
        ))
    } else {
        None
    };
    if let Some(why) = refused {
        state.log(LogLevel::Warn, format!("gRPC send refused: {why}"));
        return Status::BadArgument as i32;
    }
    handle
        .queued
        .fetch_add(message.len(), std::sync::atomic::Ordering::Relaxed);
    let _ = handle.sender.send(GrpcOutgoing::Message(message));
    if end_stream != 0 {
        handle.local_closed = true;
        let _ = handle.sender.send(GrpcOutgoing::Close);
    }
    Status::Ok as i32
}

/// Abandons a call or resets a stream: no callback for it follows.
fn proxy_grpc_cancel(mut caller: Caller<'_, HostState>, token: i32) -> i32 {
    match caller.data_mut().grpc.remove(&(token as u32)) {
        // Dropping the sender ends the exchange (`upstream::grpc`).
        Some(_) => Status::Ok as i32,
        None => Status::NotFound as i32,
    }
}

/// Ends the plugin's messages on a stream (the upstream may still answer); on a unary call, the
/// same as cancelling it, as in Envoy.
fn proxy_grpc_close(mut caller: Caller<'_, HostState>, token: i32) -> i32 {
    let grpc = &mut caller.data_mut().grpc;
    let Some(handle) = grpc.get_mut(&(token as u32)) else {
        return Status::NotFound as i32;
    };
    if handle.unary {
        grpc.remove(&(token as u32));
    } else if !handle.local_closed {
        handle.local_closed = true;
        let _ = handle.sender.send(GrpcOutgoing::Close);
    }
    Status::Ok as i32
}

fn proxy_set_shared_data(
    mut caller: Caller<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
    cas: i32,
) -> i32 {
    caller.data_mut().used.insert(Capability::SharedData);
    // The key is read where it lies in guest memory (a rate limiter writes on every request).
    let written = with_slices(
        &mut caller,
        (key_ptr, key_len),
        (value_ptr, value_len),
        |key, value, state| {
            SharedData::global().set(&state.identity.vm_id, key, value.to_vec(), cas as u32)
        },
    );
    status(written.and_then(|written| written))
}

fn proxy_get_shared_data(
    mut caller: Caller<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
    ptr_out: i32,
    len_out: i32,
    cas_out: i32,
) -> wasmtime::Result<i32> {
    caller.data_mut().used.insert(Capability::SharedData);
    let found = with_slice(&mut caller, key_ptr, key_len, |key, state| {
        SharedData::global().get(&state.identity.vm_id, key)
    });
    let (value, cas) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(Status::NotFound as i32),
        Err(status) => return Ok(status as i32),
    };
    if let Err(status) = write_u32(&mut caller, cas_out, cas) {
        return Ok(status as i32);
    }
    Ok(return_bytes(&mut caller, &value, ptr_out, len_out)? as i32)
}

fn proxy_register_shared_queue(
    mut caller: Caller<'_, HostState>,
    name_ptr: i32,
    name_len: i32,
    id_out: i32,
) -> wasmtime::Result<i32> {
    caller.data_mut().used.insert(Capability::SharedQueues);
    let name = match read(&mut caller, name_ptr, name_len) {
        Ok(n) => String::from_utf8_lossy(&n).into_owned(),
        Err(status) => return Ok(status as i32),
    };
    let state = caller.data();
    let listener = state.queue_listener.clone();
    match SharedQueues::global().register(&state.identity.vm_id, &name, listener) {
        Ok(id) => Ok(status(write_u32(&mut caller, id_out, id))),
        Err(over) => Err(over_limit("a new shared queue", over)),
    }
}

/// An empty vm_id means the caller's own.
fn proxy_resolve_shared_queue(
    mut caller: Caller<'_, HostState>,
    vm_ptr: i32,
    vm_len: i32,
    name_ptr: i32,
    name_len: i32,
    id_out: i32,
) -> i32 {
    caller.data_mut().used.insert(Capability::SharedQueues);
    let read_all = |caller: &mut Caller<'_, HostState>| -> Result<(String, String), Status> {
        let vm_id = String::from_utf8_lossy(&read(caller, vm_ptr, vm_len)?).into_owned();
        let name = String::from_utf8_lossy(&read(caller, name_ptr, name_len)?).into_owned();
        Ok((vm_id, name))
    };
    let (vm_id, name) = match read_all(&mut caller) {
        Ok(v) => v,
        Err(status) => return status as i32,
    };
    let vm_id = if vm_id.is_empty() {
        caller.data().identity.vm_id.clone()
    } else {
        vm_id
    };
    match SharedQueues::global().resolve(&vm_id, &name) {
        Some(id) => status(write_u32(&mut caller, id_out, id)),
        None => Status::NotFound as i32,
    }
}

fn proxy_enqueue_shared_queue(
    mut caller: Caller<'_, HostState>,
    queue_id: i32,
    ptr: i32,
    len: i32,
) -> i32 {
    match read(&mut caller, ptr, len) {
        Ok(value) => status(SharedQueues::global().enqueue(queue_id as u32, value)),
        Err(status) => status as i32,
    }
}

fn proxy_dequeue_shared_queue(
    mut caller: Caller<'_, HostState>,
    queue_id: i32,
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<i32> {
    match SharedQueues::global().dequeue(queue_id as u32) {
        Ok(value) => Ok(return_bytes(&mut caller, &value, ptr_out, len_out)? as i32),
        Err(status) => Ok(status as i32),
    }
}

fn proxy_define_metric(
    mut caller: Caller<'_, HostState>,
    kind: i32,
    name_ptr: i32,
    name_len: i32,
    id_out: i32,
) -> wasmtime::Result<i32> {
    caller.data_mut().used.insert(Capability::Metrics);
    let name = match read(&mut caller, name_ptr, name_len) {
        Ok(n) => String::from_utf8_lossy(&n).into_owned(),
        Err(status) => return Ok(status as i32),
    };
    let Some(kind) = MetricKind::from_wire(kind) else {
        return Ok(Status::BadArgument as i32);
    };
    let plugin = caller.data().plugin.clone();
    match PluginMetrics::global().define(&plugin, kind, &name) {
        Ok(id) => Ok(status(write_u32(&mut caller, id_out, id))),
        Err(over) => Err(over_limit("a new metric", over)),
    }
}

fn proxy_increment_metric(_caller: Caller<'_, HostState>, id: i32, delta: i64) -> i32 {
    status(PluginMetrics::global().increment(id as u32, delta))
}

fn proxy_record_metric(_caller: Caller<'_, HostState>, id: i32, value: i64) -> i32 {
    status(PluginMetrics::global().record(id as u32, value))
}

fn proxy_get_metric(mut caller: Caller<'_, HostState>, id: i32, value_out: i32) -> i32 {
    match PluginMetrics::global().get(id as u32) {
        Ok(value) => status(write_u64(&mut caller, value_out, value)),
        Err(status) => status as i32,
    }
}

/// Envoy's attributes with Envoy's encodings, then this stream's (or the root's) filter state.
fn proxy_get_property(
    mut caller: Caller<'_, HostState>,
    path_ptr: i32,
    path_len: i32,
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<i32> {
    // The path is read where it lies in guest memory.
    let found = with_slice(&mut caller, path_ptr, path_len, |path, state| {
        let path = properties::path_text(path);
        let path = properties::split_path(&path);
        let stream = state.streams.get(&state.effective);
        let stream_filter_state = stream.map(|s| s.info.filter_state.lock());
        let view = PropertyView {
            plugin: &state.identity,
            stream: stream.map(|s| &*s.info),
            request_headers: stream.and_then(|s| s.map(0)),
            response_headers: stream.and_then(|s| s.map(2)),
            response_trailers: stream.and_then(|s| s.map(3)),
            filter_state: stream_filter_state
                .as_deref()
                .unwrap_or(&state.root_filter_state),
        };
        properties::get(&view, &path)
    });
    match found.and_then(|found| found) {
        Ok(value) => Ok(return_bytes(&mut caller, &value, ptr_out, len_out)? as i32),
        Err(status) => Ok(status as i32),
    }
}

/// Stores the value in the request's filter state, shared by its whole chain (the VM's root
/// filter state outside a stream); OK, as anything else panics a Rust filter, or a trap when the
/// filter state would hold more than [`FILTER_STATE_LIMIT_BYTES`].
fn proxy_set_property(
    mut caller: Caller<'_, HostState>,
    path_ptr: i32,
    path_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> wasmtime::Result<i32> {
    // Read where they lie in guest memory: the key and the value are the only copies made.
    let stored = with_slices(
        &mut caller,
        (path_ptr, path_len),
        (value_ptr, value_len),
        |path, value, state| {
            let key = properties::filter_state_key(&properties::path_text(path));
            let value = value.to_vec();
            match state.streams.get(&state.effective) {
                Some(stream) => stream.info.filter_state.lock().insert(key, value),
                None => state.root_filter_state.insert(key, value),
            }
        },
    );
    match stored {
        Ok(true) => Ok(Status::Ok as i32),
        Ok(false) => Err(over_limit(
            "proxy_set_property",
            format_args!("the filter state would hold more than {FILTER_STATE_LIMIT_BYTES} bytes"),
        )),
        Err(status) => Ok(status as i32),
    }
}

/// The trap for a plugin that asks the host to hold more than a limit allows where the call has
/// no status to refuse with (the Rust SDK panics on any but OK there): its failure policy
/// handles it as any trap, and the message says which limit.
fn over_limit(what: &str, why: impl std::fmt::Display) -> wasmtime::Error {
    wasmtime::Error::msg(format!("{what} refused: {why}"))
}

/// Envoy's foreign functions `compress` and `uncompress` (see [`foreign`]); any other name is
/// NOT_FOUND, which the SDKs return to the filter as an error.
fn proxy_call_foreign_function(
    mut caller: Caller<'_, HostState>,
    name: i32,
    name_len: i32,
    args: i32,
    args_len: i32,
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<i32> {
    caller.data_mut().used.insert(Capability::ForeignFunctions);
    let result = with_slices(
        &mut caller,
        (name, name_len),
        (args, args_len),
        |name, args, _| foreign::call(name, args),
    );
    match result.flatten() {
        Ok(bytes) => Ok(return_bytes(&mut caller, &bytes, ptr_out, len_out)? as i32),
        Err(status) => Ok(status as i32),
    }
}

//! The `env` host functions of the Proxy-Wasm ABI. Every 0.2.1 function and the four 0.1.0-only
//! ones are defined, because SDK-built modules import nearly all of them whether they use them or
//! not, and a missing import fails instantiation.
//!
//! Implemented so far: logging, time, effective context, `proxy_done`, the VM and plugin
//! configuration buffers, the HTTP header maps and local responses. The others answer `UNIMPLEMENTED` until their
//! family lands (bodies, callouts, ticks, shared state, metrics, properties).

use super::abi::{LogLevel, Status, buffer};
use super::http::{Pairs, deserialize, serialize};
use super::memory::{read, return_bytes, write_u32, write_u64};
use super::vm::{HostState, LocalResponse};
use wasmtime::{Caller, FuncType, Linker, Val, ValType};

/// Functions not implemented yet, with their parameters (`i` = i32, `I` = i64); all return an
/// `i32` status.
const NOT_YET: &[(&str, &str)] = &[
    ("proxy_set_tick_period_milliseconds", "i"),
    ("proxy_set_buffer_bytes", "iiiii"),
    ("proxy_get_buffer_status", "iii"),
    ("proxy_continue_stream", "i"),
    ("proxy_close_stream", "i"),
    ("proxy_get_status", "iii"),
    ("proxy_http_call", "iiiiiiiiii"),
    ("proxy_grpc_call", "iiiiiiiiiiii"),
    ("proxy_grpc_stream", "iiiiiiiii"),
    ("proxy_grpc_send", "iiii"),
    ("proxy_grpc_cancel", "i"),
    ("proxy_grpc_close", "i"),
    ("proxy_set_shared_data", "iiiii"),
    ("proxy_get_shared_data", "iiiii"),
    ("proxy_register_shared_queue", "iii"),
    ("proxy_resolve_shared_queue", "iiiii"),
    ("proxy_enqueue_shared_queue", "iii"),
    ("proxy_dequeue_shared_queue", "iii"),
    ("proxy_define_metric", "iiii"),
    ("proxy_record_metric", "iI"),
    ("proxy_increment_metric", "iI"),
    ("proxy_get_metric", "ii"),
    ("proxy_get_property", "iiii"),
    ("proxy_set_property", "iiii"),
    ("proxy_call_foreign_function", "iiiiii"),
    ("proxy_continue_request", ""),
    ("proxy_continue_response", ""),
    ("proxy_clear_route_cache", ""),
];

/// Defines every `env` import on `linker`.
pub(super) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_log", proxy_log)?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        proxy_send_local_response,
    )?;
    linker.func_wrap("env", "proxy_get_log_level", proxy_get_log_level)?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        proxy_get_current_time_nanoseconds,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        proxy_set_effective_context,
    )?;
    linker.func_wrap("env", "proxy_done", proxy_done)?;
    linker.func_wrap("env", "proxy_get_buffer_bytes", proxy_get_buffer_bytes)?;
    linker.func_wrap("env", "proxy_get_configuration", proxy_get_configuration)?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        proxy_get_header_map_pairs,
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        proxy_get_header_map_size,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        proxy_set_header_map_pairs,
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        proxy_get_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        proxy_add_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        proxy_replace_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        proxy_remove_header_map_value,
    )?;
    let engine = linker.engine().clone();
    for (name, params) in NOT_YET {
        let params = params
            .chars()
            .map(|c| if c == 'I' { ValType::I64 } else { ValType::I32 });
        let ty = FuncType::new(&engine, params, [ValType::I32]);
        linker.func_new("env", name, ty, |_caller, _params, results| {
            results[0] = Val::I32(Status::Unimplemented as i32);
            Ok(())
        })?;
    }
    Ok(())
}

fn status(result: Result<(), Status>) -> i32 {
    result.err().unwrap_or(Status::Ok) as i32
}

fn proxy_log(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> i32 {
    let Some(level) = LogLevel::from_wire(level) else {
        return Status::BadArgument as i32;
    };
    match read(&mut caller, ptr, len) {
        Ok(bytes) => {
            let message = String::from_utf8_lossy(&bytes).into_owned();
            caller.data_mut().log(level, message);
            Status::Ok as i32
        }
        Err(status) => status as i32,
    }
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

fn proxy_set_effective_context(caller: Caller<'_, HostState>, context: i32) -> i32 {
    if caller.data().contexts.contains(&(context as u32)) {
        Status::Ok as i32
    } else {
        Status::BadArgument as i32
    }
}

/// No context waits for `proxy_done` until streams exist.
fn proxy_done(_caller: Caller<'_, HostState>) -> i32 {
    Status::NotFound as i32
}

fn proxy_get_buffer_bytes(
    mut caller: Caller<'_, HostState>,
    buffer_type: i32,
    start: i32,
    max_size: i32,
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<i32> {
    let buffer = match buffer_type {
        buffer::VM_CONFIGURATION => caller.data().vm_config.clone(),
        buffer::PLUGIN_CONFIGURATION => caller.data().plugin_config.clone(),
        // Other buffers exist only during streams and callouts.
        0..=8 => return Ok(Status::NotFound as i32),
        _ => return Ok(Status::BadArgument as i32),
    };
    let (start, max) = (start as u32 as usize, max_size as u32 as usize);
    if start.checked_add(max).is_none() {
        return Ok(Status::BadArgument as i32);
    }
    // Reading past the end returns nothing, as in Envoy.
    let slice = buffer.get(start..).unwrap_or_default();
    let slice = &slice[..slice.len().min(max)];
    Ok(return_bytes(&mut caller, slice, ptr_out, len_out)? as i32)
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

/// Map types 0–3 are the stream's request/response headers and trailers; 4–7 (gRPC metadata,
/// callout responses) exist only during callouts, which are not served yet.
const MAX_MAP_TYPE: i32 = 7;

/// The map a call addresses, if it is available in this callback.
fn map_mut<'a>(
    caller: &'a mut Caller<'_, HostState>,
    map: i32,
) -> Result<Option<&'a mut Pairs>, Status> {
    if !(0..=MAX_MAP_TYPE).contains(&map) {
        return Err(Status::BadArgument);
    }
    Ok(caller
        .data_mut()
        .maps
        .get_mut(map as usize)
        .and_then(Option::as_mut))
}

fn key_of(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<String, Status> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).to_ascii_lowercase())
}

fn proxy_get_header_map_pairs(
    mut caller: Caller<'_, HostState>,
    map: i32,
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<i32> {
    let bytes = match map_mut(&mut caller, map) {
        Ok(pairs) => serialize(pairs.map(|p| &*p).unwrap_or(&Vec::new())),
        Err(status) => return Ok(status as i32),
    };
    Ok(return_bytes(&mut caller, &bytes, ptr_out, len_out)? as i32)
}

/// The serialised size in bytes, as Envoy answers (not the number of entries).
fn proxy_get_header_map_size(mut caller: Caller<'_, HostState>, map: i32, size_out: i32) -> i32 {
    let size = match map_mut(&mut caller, map) {
        Ok(pairs) => serialize(pairs.map(|p| &*p).unwrap_or(&Vec::new())).len(),
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
    let bytes = match read(&mut caller, ptr, len) {
        Ok(b) => b,
        Err(status) => return status as i32,
    };
    let Some(new_pairs) = deserialize(&bytes) else {
        return Status::BadArgument as i32;
    };
    edit_available(&mut caller, map, |pairs| *pairs = new_pairs)
}

/// Applies `edit` to map `map`, if that map exists in the callback in progress.
fn edit_available(
    caller: &mut Caller<'_, HostState>,
    map: i32,
    edit: impl FnOnce(&mut Pairs),
) -> i32 {
    match map_mut(caller, map) {
        Ok(Some(pairs)) => {
            edit(pairs);
            Status::Ok as i32
        }
        Ok(None) => Status::BadArgument as i32,
        Err(status) => status as i32,
    }
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
    let key = match key_of(&mut caller, key_ptr, key_len) {
        Ok(k) => k,
        Err(status) => return Ok(status as i32),
    };
    let value = match map_mut(&mut caller, map) {
        Ok(Some(pairs)) => pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone()),
        Ok(None) => None,
        Err(status) => return Ok(status as i32),
    };
    match value {
        Some(value) => Ok(return_bytes(&mut caller, &value, ptr_out, len_out)? as i32),
        None => Ok(Status::NotFound as i32),
    }
}

/// The shared shape of add, replace and remove: read the key (and value), then edit the map.
fn edit_map(
    caller: &mut Caller<'_, HostState>,
    map: i32,
    key: (i32, i32),
    value: Option<(i32, i32)>,
    edit: impl FnOnce(&mut Pairs, String, Vec<u8>),
) -> i32 {
    let key = match key_of(caller, key.0, key.1) {
        Ok(k) => k,
        Err(status) => return status as i32,
    };
    let value = match value.map(|(ptr, len)| read(caller, ptr, len)).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(status) => return status as i32,
    };
    edit_available(caller, map, |pairs| edit(pairs, key, value))
}

fn proxy_add_header_map_value(
    mut caller: Caller<'_, HostState>,
    map: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> i32 {
    edit_map(
        &mut caller,
        map,
        (kp, kl),
        Some((vp, vl)),
        |pairs, key, value| pairs.push((key, value)),
    )
}

fn proxy_replace_header_map_value(
    mut caller: Caller<'_, HostState>,
    map: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> i32 {
    edit_map(
        &mut caller,
        map,
        (kp, kl),
        Some((vp, vl)),
        |pairs, key, value| match pairs.iter().position(|(k, _)| *k == key) {
            Some(first) => {
                pairs[first].1 = value;
                let mut index = 0;
                pairs.retain(|(k, _)| {
                    index += 1;
                    index - 1 == first || *k != key
                });
            }
            None => pairs.push((key, value)),
        },
    )
}

fn proxy_remove_header_map_value(
    mut caller: Caller<'_, HostState>,
    map: i32,
    kp: i32,
    kl: i32,
) -> i32 {
    edit_map(&mut caller, map, (kp, kl), None, |pairs, key, _| {
        pairs.retain(|(k, _)| *k != key)
    })
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
            caller.data_mut().local_response = Some(response);
            Status::Ok as i32
        }
        Err(status) => status as i32,
    }
}

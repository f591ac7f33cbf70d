//! The `env` host functions of the Proxy-Wasm ABI. Every 0.2.1 function and the four 0.1.0-only
//! ones are defined, because SDK-built modules import nearly all of them whether they use them or
//! not, and a missing import fails instantiation.
//!
//! Implemented so far: logging, time, tick period, effective context, `proxy_done`, and the VM and
//! plugin configuration buffers. The others answer `UNIMPLEMENTED` until their family lands
//! (headers, bodies, callouts, shared state, metrics, properties).

use super::abi::{LogLevel, Status, buffer};
use super::memory::{read, return_bytes, write_u32, write_u64};
use super::vm::HostState;
use wasmtime::{Caller, FuncType, Linker, Val, ValType};

/// Functions not implemented yet, with their parameters (`i` = i32, `I` = i64); all return an
/// `i32` status.
const NOT_YET: &[(&str, &str)] = &[
    ("proxy_set_buffer_bytes", "iiiii"),
    ("proxy_get_buffer_status", "iii"),
    ("proxy_get_header_map_size", "ii"),
    ("proxy_get_header_map_pairs", "iii"),
    ("proxy_set_header_map_pairs", "iii"),
    ("proxy_get_header_map_value", "iiiii"),
    ("proxy_add_header_map_value", "iiiii"),
    ("proxy_replace_header_map_value", "iiiii"),
    ("proxy_remove_header_map_value", "iii"),
    ("proxy_continue_stream", "i"),
    ("proxy_close_stream", "i"),
    ("proxy_get_status", "iii"),
    ("proxy_send_local_response", "iiiiiiii"),
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
    linker.func_wrap("env", "proxy_get_log_level", proxy_get_log_level)?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        proxy_get_current_time_nanoseconds,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        proxy_set_tick_period_milliseconds,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        proxy_set_effective_context,
    )?;
    linker.func_wrap("env", "proxy_done", proxy_done)?;
    linker.func_wrap("env", "proxy_get_buffer_bytes", proxy_get_buffer_bytes)?;
    linker.func_wrap("env", "proxy_get_configuration", proxy_get_configuration)?;
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

fn proxy_set_tick_period_milliseconds(mut caller: Caller<'_, HostState>, period: i32) -> i32 {
    caller.data_mut().tick_period_ms = period as u32;
    Status::Ok as i32
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
    let config = caller.data().plugin_config.clone();
    Ok(return_bytes(&mut caller, &config, ptr_out, len_out)? as i32)
}

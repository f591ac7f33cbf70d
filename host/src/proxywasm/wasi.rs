//! WASI preview1 (and `wasi_unstable`) as non-blocking stubs, with the semantics Envoy's host
//! gives them: stdout and stderr become plugin log lines, clocks and randomness work, nothing
//! touches the filesystem, and nothing ever sleeps (`poll_oneoff` returns at once, because a
//! sleeping guest would block a worker thread; Go's runtime aborts if it fails).

use super::abi::LogLevel;
use super::memory::{read, with_slice, write, write_u32, write_u64};
use super::vm::{HostState, MAX_LOG_BYTES, plugin_text};
use std::sync::OnceLock;
use std::time::Instant;
use wasmtime::{Caller, Linker};

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;
const INVAL: i32 = 28;
const NOSYS: i32 = 52;
const NOTSUP: i32 = 58;
/// WASI `fd_write` rights bit.
const RIGHTS_FD_WRITE: u64 = 64;
/// `random_get` refuses larger requests, like Envoy.
const MAX_RANDOM_BYTES: i32 = 64 * 1024;

fn errno<T>(result: Result<T, super::abi::Status>) -> i32 {
    if result.is_ok() { SUCCESS } else { FAULT }
}

/// Defines the stubs under both WASI module names, and Emscripten's two `env` helpers.
pub(super) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    for module in ["wasi_snapshot_preview1", "wasi_unstable"] {
        linker.func_wrap(module, "args_sizes_get", sizes_zero)?;
        linker.func_wrap(module, "environ_sizes_get", sizes_zero)?;
        linker.func_wrap(
            module,
            "args_get",
            |_: Caller<'_, HostState>, _: i32, _: i32| SUCCESS,
        )?;
        linker.func_wrap(
            module,
            "environ_get",
            |_: Caller<'_, HostState>, _: i32, _: i32| SUCCESS,
        )?;
        linker.func_wrap(module, "clock_time_get", clock_time_get)?;
        linker.func_wrap(module, "clock_res_get", clock_res_get)?;
        linker.func_wrap(module, "fd_write", fd_write)?;
        linker.func_wrap(
            module,
            "fd_read",
            |_: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32| NOSYS,
        )?;
        linker.func_wrap(module, "fd_close", |_: Caller<'_, HostState>, _: i32| {
            SUCCESS
        })?;
        linker.func_wrap(
            module,
            "fd_seek",
            |_: Caller<'_, HostState>, _: i32, _: i64, _: i32, _: i32| SUCCESS,
        )?;
        linker.func_wrap(module, "fd_fdstat_get", fd_fdstat_get)?;
        linker.func_wrap(
            module,
            "fd_fdstat_set_flags",
            |_: Caller<'_, HostState>, _: i32, _: i32| NOSYS,
        )?;
        linker.func_wrap(
            module,
            "fd_prestat_get",
            |_: Caller<'_, HostState>, _: i32, _: i32| BADF,
        )?;
        linker.func_wrap(
            module,
            "fd_prestat_dir_name",
            |_: Caller<'_, HostState>, _: i32, _: i32, _: i32| NOSYS,
        )?;
        linker.func_wrap(module, "poll_oneoff", poll_oneoff)?;
        linker.func_wrap(module, "sched_yield", |_: Caller<'_, HostState>| SUCCESS)?;
        linker.func_wrap(module, "random_get", random_get)?;
        linker.func_wrap(module, "proc_exit", proc_exit)?;
    }
    linker.func_wrap(
        "env",
        "emscripten_notify_memory_growth",
        |_: Caller<'_, HostState>, _: i32| {},
    )?;
    linker.func_wrap(
        "env",
        "pthread_equal",
        |_: Caller<'_, HostState>, a: i32, b: i32| i32::from(a == b),
    )?;
    Ok(())
}

/// `args_sizes_get` and `environ_sizes_get`: no arguments, no environment.
fn sizes_zero(mut caller: Caller<'_, HostState>, count_out: i32, size_out: i32) -> i32 {
    errno(write_u32(&mut caller, count_out, 0).and_then(|()| write_u32(&mut caller, size_out, 0)))
}

fn clock_time_get(
    mut caller: Caller<'_, HostState>,
    clock: i32,
    _precision: i64,
    time_out: i32,
) -> i32 {
    static START: OnceLock<Instant> = OnceLock::new();
    let nanos = match clock {
        0 => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        1 => START.get_or_init(Instant::now).elapsed().as_nanos() as u64,
        _ => return NOTSUP,
    };
    errno(write_u64(&mut caller, time_out, nanos))
}

fn clock_res_get(mut caller: Caller<'_, HostState>, clock: i32, resolution_out: i32) -> i32 {
    match clock {
        0 | 1 => errno(write_u64(&mut caller, resolution_out, 1)),
        _ => NOTSUP,
    }
}

/// Standard output becomes an INFO log line, standard error an ERROR line.
fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    written_out: i32,
) -> i32 {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return BADF,
    };
    let Ok(vectors) = read(&mut caller, iovs, iovs_len.saturating_mul(8)) else {
        return FAULT;
    };
    let mut text = Vec::new();
    let mut written = 0u32;
    for iov in vectors.chunks_exact(8) {
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        // Copied up to what is logged: the vectors may name the whole memory many times over.
        let room = MAX_LOG_BYTES.saturating_sub(text.len());
        let kept = with_slice(&mut caller, ptr, len, |bytes, _| {
            text.extend_from_slice(&bytes[..bytes.len().min(room)]);
        });
        if kept.is_err() {
            return FAULT;
        }
        written = written.saturating_add(len as u32);
    }
    if text.last() == Some(&b'\n') {
        text.pop();
    }
    caller
        .data_mut()
        .log(level, plugin_text(&text, written as usize));
    errno(write_u32(&mut caller, written_out, written))
}

/// stdout and stderr look like writable character streams; nothing else exists.
fn fd_fdstat_get(mut caller: Caller<'_, HostState>, fd: i32, stat_out: i32) -> i32 {
    if fd != 1 && fd != 2 {
        return BADF;
    }
    let mut stat = [0u8; 24];
    stat[8..16].copy_from_slice(&RIGHTS_FD_WRITE.to_le_bytes());
    errno(write(&mut caller, stat_out, &stat))
}

fn poll_oneoff(
    mut caller: Caller<'_, HostState>,
    _in: i32,
    _out: i32,
    _subscriptions: i32,
    events_out: i32,
) -> i32 {
    errno(write_u32(&mut caller, events_out, 0))
}

fn random_get(mut caller: Caller<'_, HostState>, buf: i32, len: i32) -> i32 {
    if !(0..=MAX_RANDOM_BYTES).contains(&len) {
        return INVAL;
    }
    let mut bytes = vec![0u8; len as usize];
    // The thread's ChaCha generator (reseeded from the OS): plugins draw randomness on every
    // request (correlation ids, nonces), and a getrandom(2) call each time costs more than the
    // rest of a simple plugin.
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    errno(write(&mut caller, buf, &bytes))
}

/// wasi-libc treats `proc_exit` as never returning, so the call traps (the plugin's failure
/// policy then applies).
fn proc_exit(mut caller: Caller<'_, HostState>, code: i32) -> wasmtime::Result<()> {
    caller
        .data_mut()
        .log(LogLevel::Error, format!("proc_exit({code}) called"));
    Err(wasmtime::Error::msg(format!(
        "the plugin called proc_exit({code})"
    )))
}

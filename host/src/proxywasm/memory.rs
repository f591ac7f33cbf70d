//! Guest memory for host calls: bounds-checked reads, little-endian writes at out-pointers, and
//! blobs returned in memory the guest allocates (the guest then owns and frees them).
//!
//! Pointers and lengths arrive as `i32` and are read as unsigned 32-bit values; every range is
//! checked in 64-bit arithmetic so no guest value can make the host read outside the memory.

use super::abi::Status;
use super::vm::HostState;
use wasmtime::{Caller, Memory};

fn memory(caller: &mut Caller<'_, HostState>) -> Result<Memory, Status> {
    caller.data().memory.ok_or(Status::InvalidMemoryAccess)
}

fn range(ptr: i32, len: u64, memory_len: usize) -> Result<std::ops::Range<usize>, Status> {
    let start = u64::from(ptr as u32);
    let end = start.checked_add(len).ok_or(Status::InvalidMemoryAccess)?;
    if end > memory_len as u64 {
        return Err(Status::InvalidMemoryAccess);
    }
    Ok(start as usize..end as usize)
}

/// Copies `len` bytes at `ptr` out of guest memory; `(0, 0)` is the empty slice.
pub(super) fn read(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<Vec<u8>, Status> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let memory = memory(caller)?;
    let data = memory.data(&caller);
    let range = range(ptr, u64::from(len as u32), data.len())?;
    Ok(data[range].to_vec())
}

/// Lends `len` bytes at `ptr` to `f`, in place (not copied), with the host state.
pub(super) fn with_slice<R>(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    f: impl FnOnce(&[u8], &mut HostState) -> R,
) -> Result<R, Status> {
    if len == 0 {
        return Ok(f(&[], caller.data_mut()));
    }
    let memory = memory(caller)?;
    let (data, state) = memory.data_and_store_mut(caller);
    let range = range(ptr, u64::from(len as u32), data.len())?;
    Ok(f(&data[range], state))
}

/// Writes `bytes` at `ptr`.
pub(super) fn write(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    bytes: &[u8],
) -> Result<(), Status> {
    let memory = memory(caller)?;
    let data = memory.data_mut(&mut *caller);
    let range = range(ptr, bytes.len() as u64, data.len())?;
    data[range].copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian u32 at `ptr`.
pub(super) fn write_u32(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    value: u32,
) -> Result<(), Status> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Writes a little-endian u64 at `ptr`.
pub(super) fn write_u64(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    value: u64,
) -> Result<(), Status> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the guest: allocates with its allocator, copies, and writes the pointer and
/// length at `ptr_out` and `len_out`. Nothing to return is written as `(0, 0)`, as Envoy does.
/// A trap inside the allocator is returned as `Err` so that the host call traps too.
pub(super) fn return_bytes(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<Status> {
    let status = if bytes.is_empty() {
        write_u32(caller, ptr_out, 0).and_then(|()| write_u32(caller, len_out, 0))
    } else {
        let Ok(len) = i32::try_from(bytes.len()) else {
            return Ok(Status::InvalidMemoryAccess);
        };
        let Some(allocate) = caller.data().allocate.clone() else {
            return Ok(Status::InvalidMemoryAccess);
        };
        // The allocator may grow memory: `write` looks the memory up again afterwards.
        let ptr = allocate.call(&mut *caller, len)?;
        if ptr == 0 {
            return Ok(Status::InvalidMemoryAccess);
        }
        write(caller, ptr, bytes)
            .and_then(|()| write_u32(caller, ptr_out, ptr as u32))
            .and_then(|()| write_u32(caller, len_out, len as u32))
    };
    Ok(status.err().unwrap_or(Status::Ok))
}

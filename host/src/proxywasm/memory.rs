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

/// [`with_slice`] for two ranges at once (a header's key and value).
pub(super) fn with_slices<R>(
    caller: &mut Caller<'_, HostState>,
    (ptr_a, len_a): (i32, i32),
    (ptr_b, len_b): (i32, i32),
    f: impl FnOnce(&[u8], &[u8], &mut HostState) -> R,
) -> Result<R, Status> {
    let memory = memory(caller)?;
    let (data, state) = memory.data_and_store_mut(caller);
    let data = &*data;
    // An empty range is empty wherever it points, as in `read`.
    let lent = |ptr: i32, len: i32| match len {
        0 => Ok(&[][..]),
        _ => range(ptr, u64::from(len as u32), data.len()).map(|r| &data[r]),
    };
    Ok(f(lent(ptr_a, len_a)?, lent(ptr_b, len_b)?, state))
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
    let copy = |_: &HostState, out: &mut [u8]| {
        out.copy_from_slice(bytes);
        true
    };
    return_written(caller, bytes.len(), copy, ptr_out, len_out)
}

/// [`return_bytes`] for bytes the host state holds (a header value), copied straight from there
/// into the guest's buffer (no intermediate copy). `source` finds them in the state, before and
/// again after the guest's allocator ran; `None` (or other bytes the second time, which only a
/// module whose allocator makes host calls could cause) is [`Status::NotFound`].
pub(super) fn return_state_bytes(
    caller: &mut Caller<'_, HostState>,
    source: impl Fn(&HostState) -> Option<&[u8]>,
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<Status> {
    let Some(len) = source(caller.data()).map(<[u8]>::len) else {
        return Ok(Status::NotFound);
    };
    let copy = |state: &HostState, out: &mut [u8]| match source(state) {
        Some(bytes) if bytes.len() == out.len() => {
            out.copy_from_slice(bytes);
            true
        }
        _ => false,
    };
    return_written(caller, len, copy, ptr_out, len_out)
}

/// [`return_bytes`] for `len` bytes that `write` puts straight into the guest's buffer from the
/// host state (a serialized header map: no intermediate copy); the pointer and length go out
/// through the same borrow of the memory. Nothing to return (`len` 0) allocates nothing and is
/// written as `(0, 0)`. `write` runs after the guest's allocator; `false` from it (what it writes
/// changed meanwhile, which only a module whose allocator makes host calls could cause) is
/// [`Status::NotFound`].
pub(super) fn return_written(
    caller: &mut Caller<'_, HostState>,
    len: usize,
    write: impl FnOnce(&HostState, &mut [u8]) -> bool,
    ptr_out: i32,
    len_out: i32,
) -> wasmtime::Result<Status> {
    let ptr = match len {
        0 => 0,
        _ => match allocate(caller, len)? {
            Some(ptr) => ptr,
            None => return Ok(Status::InvalidMemoryAccess),
        },
    };
    let Ok(memory) = memory(caller) else {
        return Ok(Status::InvalidMemoryAccess);
    };
    let (data, state) = memory.data_and_store_mut(&mut *caller);
    if len > 0 {
        let Ok(range) = range(ptr, len as u64, data.len()) else {
            return Ok(Status::InvalidMemoryAccess);
        };
        if !write(state, &mut data[range]) {
            return Ok(Status::NotFound);
        }
    }
    let status = returned(data, (ptr, len), ptr_out, len_out);
    Ok(status.err().unwrap_or(Status::Ok))
}

/// A buffer of `len` bytes from the guest's allocator; `None` when it has none or gave none.
fn allocate(caller: &mut Caller<'_, HostState>, len: usize) -> wasmtime::Result<Option<i32>> {
    let Ok(len) = i32::try_from(len) else {
        return Ok(None);
    };
    // Taken out for the call and put back, not cloned: a clone of a typed function clones
    // its registered type (reference counts in wasmtime's type registry), on every host call that
    // returns bytes. A nested host call that returns bytes from inside the allocator finds
    // none, and answers as if the module exported none.
    let Some(allocate) = caller.data_mut().allocate.take() else {
        return Ok(None);
    };
    let allocated = allocate.call(&mut *caller, len);
    caller.data_mut().allocate = Some(allocate);
    Ok(Some(allocated?).filter(|&ptr| ptr != 0))
}

/// Writes the pointer and length of a returned buffer at the out-pointers.
fn returned(
    data: &mut [u8],
    (ptr, len): (i32, usize),
    ptr_out: i32,
    len_out: i32,
) -> Result<(), Status> {
    for (at, value) in [(ptr_out, ptr as u32), (len_out, len as u32)] {
        let range = range(at, 4, data.len())?;
        data[range].copy_from_slice(&value.to_le_bytes());
    }
    Ok(())
}

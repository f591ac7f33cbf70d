//! The host calls the SDK makes itself rather than through the `proxy_wasm` crate, whose wrappers
//! copy more than these callers need: its readers turn a header map into a `String` and a `Vec`
//! per entry (a plugin reading one header's values needs none of them), and its property calls
//! take the path as a `Vec` of segments and serialize it into another on every call (a plugin's
//! paths are constants: written here as the ABI wants them, segments joined by NUL).
//!
//! Beside the allocator, this is the SDK's one use of `unsafe`: the calls themselves, and taking
//! ownership of a block the host filled, as the `proxy_wasm` crate's readers do.
#![allow(unsafe_code)]

use proxy_wasm::types::MapType;
use std::ptr::null_mut;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

/// `proxy_wasm`'s `Status::Ok`.
const OK: u32 = 0;

/// `map` of the current (effective) stream in the ABI's serialized form; `None` when the map is
/// not available.
pub(crate) fn header_map_pairs(map: MapType) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: the host writes a pointer and a size into the two locals it is given.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    (status == OK).then(|| unsafe { returned(data, size) })?
}

/// The property at `path` (segments joined by NUL: `b"source\0address"`); `None` when the host
/// has none.
pub(crate) fn property(path: &[u8]) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: the host reads `path` and writes a pointer and a size into the two locals.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    (status == OK).then(|| unsafe { returned(data, size) })?
}

/// Sets the property at `path` (segments joined by NUL) to `value`: the host stores it in the
/// request's filter state. The ABI's only answer is OK.
pub(crate) fn set_property(path: &[u8], value: &[u8]) {
    // SAFETY: the host only reads the two slices.
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) };
}

/// Takes the block of `size` bytes at `data` that the host returned; `None` for none (null).
///
/// # Safety
/// A non-null `data` must be a block of `size` bytes the host got from this module's
/// `proxy_on_memory_allocate` (the `proxy_wasm` crate's: a boxed slice of `size` bytes) and
/// filled: it is this module's to free, which dropping the vector does.
unsafe fn returned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    (!data.is_null()).then(|| unsafe { Vec::from_raw_parts(data, size, size) })
}

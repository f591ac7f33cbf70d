//! Every value of one header, read from the host's serialized map without decoding the rest.
//!
//! The ABI's single-value call (`proxy_get_header_map_value`) returns a name's first value only,
//! so a plugin that needs them all must read the whole map. The `proxy_wasm` crate's readers
//! (`get_map`, `get_map_bytes`) turn every entry into a `String` and a `Vec`: in a profile of
//! `request-transformer` renaming one header, that took more than half of the plugin's own
//! instructions. [`map_values`] takes the map as the host serialized it and copies out only the
//! values asked for.

use proxy_wasm::types::MapType;

/// Every value of header `name` (any case) in `map` of the current (effective) stream, in
/// order, as bytes. Empty when the name is absent or the map is not available.
pub fn map_values(map: MapType, name: &str) -> Vec<Vec<u8>> {
    crate::host::header_map_pairs(map)
        .map(|serialized| values_in(&serialized, name.as_bytes()))
        .unwrap_or_default()
}

/// Every value of `name` (any case) in a map serialized as the ABI does: the number of entries,
/// each entry's key and value lengths (little-endian `u32`s), then each key and value followed by
/// a NUL. A truncated or inconsistent map yields the values found before the fault.
///
/// Only an entry whose key has the name's length is looked at: the others are skipped by their
/// lengths alone (a request's map holds a dozen or more headers, and this runs on every request
/// that renames one).
fn values_in(serialized: &[u8], name: &[u8]) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    let Some((count, rest)) = serialized.split_first_chunk::<4>() else {
        return values;
    };
    let count = u32::from_le_bytes(*count) as usize;
    let Some((lengths, data)) = count.checked_mul(8).and_then(|n| rest.split_at_checked(n)) else {
        return values;
    };
    // Where the entry's key starts in `data`. Saturating: lengths are untrusted, and once past
    // the end every later entry is out of range.
    let mut key_at = 0usize;
    for pair in lengths.chunks_exact(8) {
        let (key_len, value_len) = (le_u32(&pair[..4]), le_u32(&pair[4..]));
        let value_at = key_at.saturating_add(key_len).saturating_add(1);
        let value_end = value_at.saturating_add(value_len);
        if value_end > data.len() {
            break;
        }
        if key_len == name.len()
            && let (Some(key), Some(value)) = (
                data.get(key_at..key_at + key_len),
                data.get(value_at..value_end),
            )
            && key.eq_ignore_ascii_case(name)
        {
            values.push(value.to_vec());
        }
        key_at = value_end.saturating_add(1);
    }
    values
}

/// A little-endian `u32` of four bytes, as a length.
fn le_u32(bytes: &[u8]) -> usize {
    bytes
        .try_into()
        .map_or(usize::MAX, |bytes| u32::from_le_bytes(bytes) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (key, value) in pairs {
            out.extend((key.len() as u32).to_le_bytes());
            out.extend((value.len() as u32).to_le_bytes());
        }
        for (key, value) in pairs {
            out.extend(key.as_bytes());
            out.push(0);
            out.extend(value.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn every_value_of_the_name_in_order_whatever_the_case() {
        let map = serialize(&[
            (":path", "/"),
            ("x-a", "1"),
            ("x-ab", "no"),
            ("X-A", ""),
            ("x-b", "x-a"),
            ("x-a", "3"),
        ]);
        assert_eq!(values_in(&map, b"x-a"), [&b"1"[..], b"", b"3"]);
        assert_eq!(values_in(&map, b"X-B"), [b"x-a"]);
        assert!(values_in(&map, b"x-c").is_empty());
        assert!(values_in(&serialize(&[]), b"x-a").is_empty());
    }

    #[test]
    fn a_broken_map_gives_what_came_before_the_fault() {
        let map = serialize(&[("x-a", "1"), ("x-a", "22")]);
        // Cut inside the second value.
        assert_eq!(values_in(&map[..map.len() - 2], b"x-a"), [b"1"]);
        // Only the last NUL missing: every value is whole.
        assert_eq!(values_in(&map[..map.len() - 1], b"x-a"), [&b"1"[..], b"22"]);
        // More entries announced than lengths given.
        let mut lying = map.clone();
        lying[0] = 200;
        assert!(values_in(&lying, b"x-a").is_empty());
        // A length past the end, and one that would overflow.
        let mut long = map.clone();
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(values_in(&long, b"x-a").is_empty());
        assert!(values_in(&[1, 0], b"x-a").is_empty());
        assert!(values_in(&u32::MAX.to_le_bytes(), b"x-a").is_empty());
    }
}

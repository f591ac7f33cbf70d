//! The stream's own header map as a [`HeaderList`]: each edit is one host call on the map, so
//! a plugin applies its rules without copying the whole map into the module and writing it all
//! back (which also makes the gateway rebuild the head from the new map).

use crate::headers::HeaderList;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

/// A header map of the current (effective) stream.
pub struct StreamHeaders(pub MapType);

impl HeaderList for StreamHeaders {
    fn contains(&self, name: &str) -> bool {
        matches!(hostcalls::get_map_value_bytes(self.0, name), Ok(Some(_)))
    }

    fn values(&self, name: &str) -> Vec<Vec<u8>> {
        // The ABI reads one value per name: every value takes the whole map.
        hostcalls::get_map_bytes(self.0)
            .unwrap_or_default()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
            .collect()
    }

    fn remove(&mut self, name: &str) {
        let _ = hostcalls::remove_map_value(self.0, name);
    }

    fn push(&mut self, name: &str, value: Vec<u8>) {
        let _ = hostcalls::add_map_value_bytes(self.0, name, &value);
    }
}

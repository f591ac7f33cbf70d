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
        barbacane_sdk::http::map_values(self.0, name)
    }

    fn remove(&mut self, name: &str) {
        let _ = hostcalls::remove_map_value(self.0, name);
    }

    fn push(&mut self, name: &str, value: &[u8]) {
        let _ = hostcalls::add_map_value_bytes(self.0, name, value);
    }

    fn set(&mut self, name: &str, value: &[u8]) {
        // The host replaces the first value in place and drops the others.
        let _ = hostcalls::set_map_value_bytes(self.0, name, Some(value));
    }
}

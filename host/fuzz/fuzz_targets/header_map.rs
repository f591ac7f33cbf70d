//! Arbitrary bytes as a header map a plugin hands over (the ABI's serialized format): no panic,
//! and a map the parser accepts has lower-case keys and serializes back to itself.
#![no_main]
use barbacane::proxywasm::http::{deserialize, serialize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(pairs) = deserialize(data) {
        assert!(
            pairs
                .iter()
                .all(|(k, _)| !k.iter().any(u8::is_ascii_uppercase))
        );
        assert_eq!(deserialize(&serialize(&pairs)).as_ref(), Some(&pairs));
    }
});

//! Arbitrary request paths through normalisation: no panic, and no accepted path keeps a
//! separator or dot segment inside a segment.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data)
        && let Ok(segments) = barbacane::router::normalize(path)
    {
        for s in segments {
            assert!(!s.is_empty() && s != "." && s != ".." && !s.contains('/'));
        }
    }
});

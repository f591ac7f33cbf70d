//! Arbitrary text through the YAML/JSON loader: it must return a value or a positioned error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = barbacane::spec::yaml::parse(text)
    {
        assert!(e.line >= 1 && e.column >= 1);
    }
});

//! Randomised robustness on stable Rust (the fuzz targets in `host/fuzz` go deeper on nightly):
//! mutated specs never panic the compiler and always produce positioned diagnostics; random
//! request paths never panic normalisation or routing; mutated header maps from a plugin never
//! panic their parser.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use barbacane::compile::{Options, compile};

const SEED_SPEC: &str = include_str!("../../spec-examples/petstore/petstore.yaml");

/// Random edits: delete, duplicate or replace a byte range, or splice in YAML-significant bytes.
fn mutate(rng: &mut fastrand::Rng, text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.usize(1..4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.usize(..bytes.len());
        let len = rng.usize(1..16).min(bytes.len() - at);
        match rng.u8(..4) {
            0 => {
                bytes.drain(at..at + len);
            }
            1 => {
                let chunk: Vec<u8> = bytes[at..at + len].to_vec();
                bytes.splice(at..at, chunk);
            }
            2 => {
                for b in &mut bytes[at..at + len] {
                    *b = rng.u8(..);
                }
            }
            _ => {
                let token: &[u8] = [
                    &b": "[..],
                    b"\n- ",
                    b"{",
                    b"}",
                    b"[",
                    b"'",
                    b"\"",
                    b"$ref: '#/x'",
                    b"\t",
                    b"&a ",
                    b"*a",
                ][rng.usize(..11)];
                bytes.splice(at..at, token.iter().copied());
            }
        }
    }
    bytes
}

#[test]
fn mutated_specs_never_panic_the_compiler() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.yaml");
    let mut rng = fastrand::Rng::with_seed(0x0ba5_ba5e);
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..400 {
        std::fs::write(&path, mutate(&mut rng, SEED_SPEC)).unwrap();
        match compile(std::slice::from_ref(&path), None, Options::default()) {
            Ok(_) => ok += 1,
            Err(diagnostics) => {
                failed += 1;
                assert!(!diagnostics.is_empty());
                for d in diagnostics {
                    assert!(d.location.line >= 1 && d.location.column >= 1, "{d}");
                    assert!(
                        d.location.file.ends_with("api.yaml") || d.location.file.contains("yaml"),
                        "{d}"
                    );
                }
            }
        }
    }
    assert!(
        failed > 100,
        "the mutations should break most specs ({ok} ok, {failed} failed)"
    );
}

#[test]
fn random_paths_never_panic_routing() {
    let spec = tempfile::tempdir().unwrap();
    let path = spec.path().join("api.yaml");
    std::fs::write(&path, SEED_SPEC).unwrap();
    let compiled = compile(&[path], None, Options::default()).unwrap();
    let router = barbacane::router::Router::new(&compiled.api.operations);
    let alphabet = b"/.%2eEfF0a{}?#\\\x00 ~-_";
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20_000 {
        let raw: String = (0..rng.usize(0..24))
            .map(|_| alphabet[rng.usize(..alphabet.len())] as char)
            .collect();
        if let Ok(segments) = barbacane::router::normalize(&raw) {
            let _ = router.lookup(&http::Method::GET, "localhost", &segments);
            assert!(
                segments
                    .iter()
                    .all(|s| !s.is_empty() && s != ".." && !s.contains('/')),
                "{raw:?}"
            );
        }
    }
}

/// Header maps as a plugin hands them over (the ABI's serialized format), mutated — counts and
/// lengths that promise more or less than the bytes hold, truncated, extended — never panic the
/// parser, and a map it accepts has lower-case keys and serializes back to itself.
#[test]
fn mutated_header_map_blobs_never_panic_their_parser() {
    use barbacane::proxywasm::http::{Pairs, deserialize, serialize};
    let valid = serialize(&Pairs::from([(":path", "/a"), ("x-a", "1"), ("X-B", "")]));
    let mut rng = fastrand::Rng::with_seed(0x0b10_b5ed);
    for _ in 0..50_000 {
        let mut blob = valid.clone();
        for _ in 0..rng.usize(1..4) {
            match rng.u8(..3) {
                0 if !blob.is_empty() => {
                    let at = rng.usize(..blob.len());
                    blob[at] = rng.u8(..);
                }
                1 => blob.truncate(rng.usize(..=blob.len())),
                _ => blob.extend((0..rng.usize(..8)).map(|_| rng.u8(..))),
            }
        }
        if let Some(pairs) = deserialize(&blob) {
            assert!(
                pairs
                    .iter()
                    .all(|(k, _)| !k.iter().any(u8::is_ascii_uppercase)),
                "{blob:?}"
            );
            assert_eq!(
                deserialize(&serialize(&pairs)).as_ref(),
                Some(&pairs),
                "{blob:?}"
            );
        }
    }
}

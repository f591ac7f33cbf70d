//! Checks that bytes are a Proxy-Wasm module: the `\0asm` magic and core-module version, a
//! well-formed binary (every section parses, with `wasmparser`), and an exported Proxy-Wasm ABI
//! marker function (`proxy_abi_version_0_2_1`, `_0_2_0` or `_0_1_0`). Also lists imports and
//! exports for `inspect`.
//!
//! This is a structural check, not full validation: the host's engine compiles (and so fully
//! validates) the module when it loads it.

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

use crate::error::{Error, Result};

/// The Proxy-Wasm ABI marker exports accepted, newest first.
pub const ABI_MARKERS: [&str; 3] = [
    "proxy_abi_version_0_2_1",
    "proxy_abi_version_0_2_0",
    "proxy_abi_version_0_1_0",
];

/// One import of a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleImport {
    /// The import's module (`env`, `wasi_snapshot_preview1`, …).
    pub module: String,
    /// The imported name.
    pub name: String,
    /// `func`, `table`, `memory`, `global` or `tag`.
    pub kind: &'static str,
}

/// What [`check_module`] found in a Proxy-Wasm module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleInfo {
    /// Size in bytes.
    pub size: u64,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    /// The ABI marker export found (e.g. `proxy_abi_version_0_2_1`).
    pub abi_marker: String,
    /// Imports, in module order.
    pub imports: Vec<ModuleImport>,
    /// Exported names, in module order.
    pub exports: Vec<String>,
}

impl ModuleInfo {
    /// The ABI as written in the `io.barbacane.plugin.abi` annotation, e.g. `proxy-wasm-0.2.1`.
    pub fn abi_version(&self) -> String {
        let v = self
            .abi_marker
            .trim_start_matches("proxy_abi_version_")
            .replace('_', ".");
        format!("proxy-wasm-{v}")
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Checks that `bytes` is a Proxy-Wasm core module; `what` names it in errors.
pub fn check_module(bytes: &[u8], what: &str) -> Result<ModuleInfo> {
    let refuse = |reason: String| Error::NotProxyWasm {
        what: what.to_string(),
        reason,
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(refuse(format!(
            "not WebAssembly: it does not start with the \\0asm magic (first bytes: {})",
            if head.is_empty() {
                "none".to_string()
            } else {
                head.join(" ")
            }
        )));
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        return Err(refuse(
            "a WebAssembly component or unknown binary version, not a core module (Proxy-Wasm filters are core modules)"
                .to_string(),
        ));
    }
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut marker: Option<String> = None;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| refuse(format!("malformed module: {e}")))?;
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| refuse(format!("malformed import: {e}")))?;
                    imports.push(ModuleImport {
                        module: import.module.to_string(),
                        name: import.name.to_string(),
                        kind: match import.ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => "func",
                            TypeRef::Table(_) => "table",
                            TypeRef::Memory(_) => "memory",
                            TypeRef::Global(_) => "global",
                            TypeRef::Tag(_) => "tag",
                        },
                    });
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| refuse(format!("malformed export: {e}")))?;
                    if export.kind == ExternalKind::Func && ABI_MARKERS.contains(&export.name) {
                        let better = match &marker {
                            None => true,
                            Some(m) => rank(export.name) < rank(m),
                        };
                        if better {
                            marker = Some(export.name.to_string());
                        }
                    }
                    exports.push(export.name.to_string());
                }
            }
            _ => {}
        }
    }
    let Some(abi_marker) = marker else {
        return Err(refuse(format!(
            "it exports no Proxy-Wasm ABI marker function ({})",
            ABI_MARKERS.join(", ")
        )));
    };
    Ok(ModuleInfo {
        size: bytes.len() as u64,
        digest: sha256_digest(bytes),
        abi_marker,
        imports,
        exports,
    })
}

fn rank(marker: &str) -> usize {
    ABI_MARKERS
        .iter()
        .position(|m| *m == marker)
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_wasm_and_components() {
        let e = check_module(b"hello world, not wasm", "x").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::NotProxyWasm);
        assert!(e.to_string().contains("magic"), "{e}");
        let e = check_module(b"\0asm\x0d\x00\x01\x00", "x").unwrap_err();
        assert!(e.to_string().contains("component"), "{e}");
        // Valid header, truncated section.
        let e = check_module(b"\0asm\x01\x00\x00\x00\x01\x05\x01", "x").unwrap_err();
        assert!(e.to_string().contains("malformed"), "{e}");
        // A valid, empty core module: no marker.
        let e = check_module(b"\0asm\x01\x00\x00\x00", "x").unwrap_err();
        assert!(e.to_string().contains("proxy_abi_version_0_2_1"), "{e}");
    }
}

//! Loading a Proxy-Wasm module: compile it, then read from its exports which ABI it speaks, how
//! it starts and how the host allocates guest memory, list its imports (for `inspect`), and read
//! the stream callbacks it declares (custom section `barbacane.stream_callbacks`).
//!
//! The rules follow Envoy's host (`proxy-wasm-cpp-host`): a module without a known
//! `proxy_abi_version_*` marker is refused before it is instantiated.

use super::vm::HostState;
use wasmtime::{Engine, ExternType, InstancePre, Module};

/// The ABI version a module declares by its marker export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AbiVersion {
    /// `proxy_abi_version_0_1_0` (old TinyGo and Emscripten builds).
    V0_1_0,
    /// `proxy_abi_version_0_2_0` (the Go ≥ 1.24 SDK).
    V0_2_0,
    /// `proxy_abi_version_0_2_1` (the Rust and C++ SDKs).
    V0_2_1,
}

impl AbiVersion {
    const MARKERS: [(&'static str, AbiVersion); 3] = [
        ("proxy_abi_version_0_1_0", AbiVersion::V0_1_0),
        ("proxy_abi_version_0_2_0", AbiVersion::V0_2_0),
        ("proxy_abi_version_0_2_1", AbiVersion::V0_2_1),
    ];

    /// `0.2.1` and so on.
    pub fn as_str(self) -> &'static str {
        match self {
            AbiVersion::V0_1_0 => "0.1.0",
            AbiVersion::V0_2_0 => "0.2.0",
            AbiVersion::V0_2_1 => "0.2.1",
        }
    }
}

/// How the module wants to be started (Proxy-Wasm 0.2.1 §Integration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPoint {
    /// A WASI reactor: `_initialize`, then `main(0, 0)` when `with_main`.
    Initialize {
        /// `main` is exported too.
        with_main: bool,
    },
    /// A WASI command: `_start`.
    Start,
    /// Nothing to call.
    None,
}

/// The export the host calls to allocate guest memory for data it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// `proxy_on_memory_allocate`, the spec's name.
    ProxyOnMemoryAllocate,
    /// `malloc`, the deprecated name (Emscripten, Rust `wasm32-unknown-unknown`).
    Malloc,
}

impl Allocator {
    /// The export's name.
    pub fn export_name(self) -> &'static str {
        match self {
            Allocator::ProxyOnMemoryAllocate => "proxy_on_memory_allocate",
            Allocator::Malloc => "malloc",
        }
    }
}

/// The custom section in which a module may list the HTTP stream callbacks it implements, as
/// names separated by spaces (`request_headers response_headers`): the host then calls no other
/// stream callback of it. Envoy ignores custom sections, so such a module runs there unchanged
/// (getting every callback). Without the section the host calls every callback the module
/// exports, as Envoy does. An SDK's dispatcher exports them all, and every call into a VM costs
/// a few hundred nanoseconds in a real chain; `barbacane_sdk::stream_callbacks!` writes it.
pub const STREAM_CALLBACKS_SECTION: &str = "barbacane.stream_callbacks";

/// An HTTP stream callback a module may leave out ([`STREAM_CALLBACKS_SECTION`]); a stream's
/// `proxy_on_context_create` and `proxy_on_delete` are always called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCallback {
    /// `proxy_on_request_headers`.
    RequestHeaders,
    /// `proxy_on_request_body`.
    RequestBody,
    /// `proxy_on_request_trailers`.
    RequestTrailers,
    /// `proxy_on_response_headers`.
    ResponseHeaders,
    /// `proxy_on_response_body`.
    ResponseBody,
    /// `proxy_on_response_trailers`.
    ResponseTrailers,
    /// `proxy_on_done` for a stream (left out: the stream is done at once; the root context's,
    /// at shutdown, is called all the same).
    Done,
    /// `proxy_on_log`.
    Log,
}

impl StreamCallback {
    const ALL: [StreamCallback; 8] = [
        StreamCallback::RequestHeaders,
        StreamCallback::RequestBody,
        StreamCallback::RequestTrailers,
        StreamCallback::ResponseHeaders,
        StreamCallback::ResponseBody,
        StreamCallback::ResponseTrailers,
        StreamCallback::Done,
        StreamCallback::Log,
    ];

    /// The name in the section: the export's without `proxy_on_`.
    pub fn name(self) -> &'static str {
        match self {
            StreamCallback::RequestHeaders => "request_headers",
            StreamCallback::RequestBody => "request_body",
            StreamCallback::RequestTrailers => "request_trailers",
            StreamCallback::ResponseHeaders => "response_headers",
            StreamCallback::ResponseBody => "response_body",
            StreamCallback::ResponseTrailers => "response_trailers",
            StreamCallback::Done => "done",
            StreamCallback::Log => "log",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The stream callbacks the host calls (those the module exports, among these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCallbacks(u8);

impl StreamCallbacks {
    /// Every one: a module without the section.
    pub const ALL: StreamCallbacks = StreamCallbacks(u8::MAX);

    /// Whether the host calls `callback`.
    pub fn contains(self, callback: StreamCallback) -> bool {
        self.0 & callback.bit() != 0
    }

    /// What the module's [`STREAM_CALLBACKS_SECTION`] declares, [`StreamCallbacks::ALL`]
    /// without one.
    fn declared(bytes: &[u8]) -> Result<StreamCallbacks, ModuleError> {
        let bad = |why: String| ModuleError::StreamCallbacks(why);
        let mut found = None;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload {
                Ok(wasmparser::Payload::CustomSection(section))
                    if section.name() == STREAM_CALLBACKS_SECTION =>
                {
                    if found.is_some() {
                        return Err(bad(String::from("the section appears twice")));
                    }
                    found = Some(section.data());
                }
                Ok(_) => {}
                // Wasmtime has compiled the module: what it accepted is read here.
                Err(e) => return Err(ModuleError::Invalid(e.to_string())),
            }
        }
        let Some(data) = found else {
            return Ok(StreamCallbacks::ALL);
        };
        let text = std::str::from_utf8(data)
            .map_err(|_| bad(String::from("the section is not UTF-8 text")))?;
        let mut callbacks = StreamCallbacks(0);
        for name in text.split_ascii_whitespace() {
            let Some(callback) = StreamCallback::ALL.into_iter().find(|c| c.name() == name) else {
                let known: Vec<&str> = StreamCallback::ALL.iter().map(|c| c.name()).collect();
                return Err(bad(format!(
                    "unknown callback '{name}' (known: {})",
                    known.join(", ")
                )));
            };
            callbacks.0 |= callback.bit();
        }
        Ok(callbacks)
    }
}

/// What the host learned about a module from its exports and imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The declared ABI version (the highest marker if several are present).
    pub abi: AbiVersion,
    /// How to start it.
    pub entry: EntryPoint,
    /// How to allocate in it.
    pub allocator: Allocator,
    /// Every export's name, in module order.
    pub exports: Vec<String>,
    /// Every function import as (module, name), in module order.
    pub imports: Vec<(String, String)>,
    /// The stream callbacks the host calls.
    pub callbacks: StreamCallbacks,
}

/// Why a module cannot be used as a Proxy-Wasm plugin.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The engine could not be set up.
    #[error("cannot set up the Wasm engine: {0}")]
    Engine(String),
    /// Not a valid WebAssembly module (or one wasmtime cannot compile).
    #[error("not a valid WebAssembly module: {0}")]
    Invalid(String),
    /// It throws and catches with Wasm exception-handling instructions (`try`, `throw`:
    /// Emscripten's and LLVM's `-fwasm-exceptions`), which wasmtime does not run in that form.
    #[error("the module uses Wasm exception handling (try/throw), which this host cannot run: {0}")]
    Exceptions(String),
    /// No `proxy_abi_version_*` export at all.
    #[error("not a Proxy-Wasm module: no proxy_abi_version_0_1_0, _0_2_0 or _0_2_1 export")]
    NoAbiMarker,
    /// A marker this host does not implement.
    #[error("unsupported Proxy-Wasm ABI marker '{0}' (this host speaks 0.1.0, 0.2.0 and 0.2.1)")]
    UnsupportedAbi(String),
    /// Its imports cannot be linked.
    #[error("the module's imports cannot be linked: {0}")]
    Link(String),
    /// Neither allocator export.
    #[error("the module exports no allocator (proxy_on_memory_allocate or malloc)")]
    NoAllocator,
    /// Its custom section `barbacane.stream_callbacks` cannot be read.
    #[error("custom section {STREAM_CALLBACKS_SECTION}: {0}")]
    StreamCallbacks(String),
}

impl ModuleError {
    /// What to do about it, in one line.
    pub fn hint(&self) -> &'static str {
        match self {
            ModuleError::Exceptions(_) => {
                "build it without Wasm exceptions: -fno-exceptions, or Emscripten's default (a \
                 throw aborts), as the C++ SDK builds filters"
            }
            _ => {
                "build the plugin as a Proxy-Wasm module (e.g. for wasm32-wasip1 with the \
                 proxy-wasm crate)"
            }
        }
    }
}

/// A compiled module, what it declares, and its imports linked once (cheap to clone: all are
/// shared). Every VM replica is instantiated from the same `InstancePre`.
#[derive(Clone)]
pub struct PluginModule {
    /// The compiled module.
    pub module: Module,
    /// What it declares.
    pub info: ModuleInfo,
    /// The module with every import resolved, ready to instantiate.
    pub(super) pre: InstancePre<HostState>,
}

impl PluginModule {
    /// Compiles `bytes` with `engine` (or finds it in the engine's cache), reads its
    /// declarations and links its imports.
    pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<PluginModule, ModuleError> {
        let module = Module::from_binary(engine, bytes).map_err(|e| {
            let message = format!("{e:#}");
            // wasmparser's words for a feature the engine leaves off; cpp_filter.rs's
            // `-fwasm-exceptions` test fails if they change.
            if message.contains("exceptions proposal not enabled") {
                ModuleError::Exceptions(message)
            } else {
                ModuleError::Invalid(message)
            }
        })?;
        let info = ModuleInfo::of(&module, bytes)?;
        let pre = super::vm::instance_pre(engine, &module).map_err(ModuleError::Link)?;
        Ok(PluginModule { module, info, pre })
    }
}

impl ModuleInfo {
    fn of(module: &Module, bytes: &[u8]) -> Result<ModuleInfo, ModuleError> {
        let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
        let has = |name: &str| exports.iter().any(|e| e == name);
        let abi = AbiVersion::MARKERS
            .iter()
            .filter(|(marker, _)| has(marker))
            .map(|(_, version)| *version)
            .max();
        let abi = match abi {
            Some(abi) => abi,
            None => {
                return Err(
                    match exports.iter().find(|e| e.starts_with("proxy_abi_version_")) {
                        Some(unknown) => ModuleError::UnsupportedAbi(unknown.clone()),
                        None => ModuleError::NoAbiMarker,
                    },
                );
            }
        };
        let entry = if has("_initialize") {
            EntryPoint::Initialize {
                with_main: has("main"),
            }
        } else if has("_start") {
            EntryPoint::Start
        } else {
            EntryPoint::None
        };
        let allocator = if has("proxy_on_memory_allocate") {
            Allocator::ProxyOnMemoryAllocate
        } else if has("malloc") {
            Allocator::Malloc
        } else {
            return Err(ModuleError::NoAllocator);
        };
        let imports = module
            .imports()
            .filter(|i| matches!(i.ty(), ExternType::Func(_)))
            .map(|i| (i.module().to_string(), i.name().to_string()))
            .collect();
        Ok(ModuleInfo {
            abi,
            entry,
            allocator,
            exports,
            imports,
            callbacks: StreamCallbacks::declared(bytes)?,
        })
    }
}

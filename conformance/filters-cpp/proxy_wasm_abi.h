// The Proxy-Wasm host functions this filter calls (the same in ABI 0.1.0 and 0.2.1), declared
// from the ABI specification (shared/reference/proxy-wasm-abi.md in the design notes). Every
// import is from module `env` (for Emscripten, proxy_wasm_abi.js names them to its linker).
// Written here because the official C++ SDK (proxy-wasm-cpp-sdk) cannot be fetched on this
// machine; a filter built with that SDK imports the same functions with the same signatures.
#pragma once

#include <cstddef>
#include <cstdint>

#define PROXY_WASM_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

extern "C" {

enum class WasmResult : uint32_t { Ok = 0, NotFound = 1, BadArgument = 2 };
enum class LogLevel : uint32_t { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4, Critical = 5 };
enum class FilterHeadersStatus : uint32_t { Continue = 0, StopIteration = 1 };
enum class WasmHeaderMapType : uint32_t { RequestHeaders = 0, ResponseHeaders = 2 };
enum class WasmBufferType : uint32_t { PluginConfiguration = 7 };

PROXY_WASM_IMPORT(proxy_log)
WasmResult proxy_log(LogLevel level, const char* message, size_t size);

PROXY_WASM_IMPORT(proxy_get_buffer_bytes)
WasmResult proxy_get_buffer_bytes(WasmBufferType type, uint32_t start, uint32_t length,
                                  const char** ptr, size_t* size);

PROXY_WASM_IMPORT(proxy_get_header_map_value)
WasmResult proxy_get_header_map_value(WasmHeaderMapType type, const char* key, size_t key_size,
                                      const char** value, size_t* value_size);

PROXY_WASM_IMPORT(proxy_add_header_map_value)
WasmResult proxy_add_header_map_value(WasmHeaderMapType type, const char* key, size_t key_size,
                                      const char* value, size_t value_size);

PROXY_WASM_IMPORT(proxy_replace_header_map_value)
WasmResult proxy_replace_header_map_value(WasmHeaderMapType type, const char* key,
                                          size_t key_size, const char* value, size_t value_size);

PROXY_WASM_IMPORT(proxy_get_property)
WasmResult proxy_get_property(const char* path, size_t path_size, const char** value,
                              size_t* value_size);

PROXY_WASM_IMPORT(proxy_send_local_response)
WasmResult proxy_send_local_response(uint32_t status, const char* details, size_t details_size,
                                     const char* body, size_t body_size, const char* headers,
                                     size_t headers_size, int32_t grpc_status);

}  // extern "C"

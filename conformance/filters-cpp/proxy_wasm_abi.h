// The Proxy-Wasm host functions these filters call (the same in ABI 0.1.0 and 0.2.1), declared
// from the ABI specification (shared/reference/proxy-wasm-abi.md in the design notes). Every
// import is from module `env` (for Emscripten, proxy_wasm_abi.js names them to its linker).
// Written here because the official C++ SDK (proxy-wasm-cpp-sdk) cannot be fetched on this
// machine; a filter built with that SDK imports the same functions with the same signatures.
#pragma once

#include <cstddef>
#include <cstdint>

#define PROXY_WASM_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

extern "C" {

enum class WasmResult : uint32_t { Ok = 0, NotFound = 1, BadArgument = 2, CasMismatch = 8 };
enum class LogLevel : uint32_t { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4, Critical = 5 };
enum class FilterHeadersStatus : uint32_t { Continue = 0, StopIteration = 1 };
enum class FilterDataStatus : uint32_t { Continue = 0, StopIterationAndBuffer = 1 };
enum class WasmHeaderMapType : uint32_t {
  RequestHeaders = 0,
  ResponseHeaders = 2,
  HttpCallResponseHeaders = 6,
};
enum class WasmBufferType : uint32_t {
  HttpRequestBody = 0,
  HttpCallResponseBody = 4,
  VmConfiguration = 6,
  PluginConfiguration = 7,
};
enum class WasmStreamType : uint32_t { Request = 0, Response = 1 };
enum class MetricType : uint32_t { Counter = 0, Gauge = 1, Histogram = 2 };

PROXY_WASM_IMPORT(proxy_log)
WasmResult proxy_log(LogLevel level, const char* message, size_t size);

PROXY_WASM_IMPORT(proxy_get_buffer_bytes)
WasmResult proxy_get_buffer_bytes(WasmBufferType type, uint32_t start, uint32_t length,
                                  const char** ptr, size_t* size);

PROXY_WASM_IMPORT(proxy_set_buffer_bytes)
WasmResult proxy_set_buffer_bytes(WasmBufferType type, uint32_t start, uint32_t length,
                                  const char* data, size_t size);

PROXY_WASM_IMPORT(proxy_get_header_map_pairs)
WasmResult proxy_get_header_map_pairs(WasmHeaderMapType type, const char** ptr, size_t* size);

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

PROXY_WASM_IMPORT(proxy_http_call)
WasmResult proxy_http_call(const char* upstream, size_t upstream_size, const char* headers,
                           size_t headers_size, const char* body, size_t body_size,
                           const char* trailers, size_t trailers_size, uint32_t timeout_ms,
                           uint32_t* token);

PROXY_WASM_IMPORT(proxy_continue_stream)
WasmResult proxy_continue_stream(WasmStreamType type);

PROXY_WASM_IMPORT(proxy_set_effective_context)
WasmResult proxy_set_effective_context(uint32_t context_id);

PROXY_WASM_IMPORT(proxy_set_tick_period_milliseconds)
WasmResult proxy_set_tick_period_milliseconds(uint32_t period_ms);

PROXY_WASM_IMPORT(proxy_get_shared_data)
WasmResult proxy_get_shared_data(const char* key, size_t key_size, const char** value,
                                 size_t* value_size, uint32_t* cas);

PROXY_WASM_IMPORT(proxy_set_shared_data)
WasmResult proxy_set_shared_data(const char* key, size_t key_size, const char* value,
                                 size_t value_size, uint32_t cas);

PROXY_WASM_IMPORT(proxy_define_metric)
WasmResult proxy_define_metric(MetricType type, const char* name, size_t name_size,
                               uint32_t* metric_id);

PROXY_WASM_IMPORT(proxy_increment_metric)
WasmResult proxy_increment_metric(uint32_t metric_id, int64_t offset);

PROXY_WASM_IMPORT(proxy_record_metric)
WasmResult proxy_record_metric(uint32_t metric_id, uint64_t value);

PROXY_WASM_IMPORT(proxy_get_metric)
WasmResult proxy_get_metric(uint32_t metric_id, uint64_t* value);

}  // extern "C"

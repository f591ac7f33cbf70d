// What every C++ conformance filter here shares, as the C++ SDK gives its filters: the ABI
// marker and allocator exports, and thin wrappers over the host functions (blobs the host
// allocated freed, header maps (de)serialized). Included once per filter: each is its own module.
#pragma once

#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy_wasm_abi.h"

#define EXPORT(name) extern "C" __attribute__((export_name(#name)))

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1() {}

// Without it (the C++ SDK's modules), the host allocates with the `malloc` the linker exports.
#ifndef ALLOCATE_WITH_MALLOC_EXPORT
EXPORT(proxy_on_memory_allocate) void* proxy_on_memory_allocate(size_t size) {
  return std::malloc(size);
}
#endif

namespace filter {

using Pairs = std::vector<std::pair<std::string, std::string>>;

inline void log(LogLevel level, std::string_view message) {
  proxy_log(level, message.data(), message.size());
}

// A blob the host allocated in this module's memory (with the allocator above): owned by the
// filter, freed here.
inline std::string take_blob(const char* data, size_t size) {
  std::string value(data == nullptr ? "" : data, size);
  std::free(const_cast<char*>(data));
  return value;
}

inline bool header(WasmHeaderMapType map, std::string_view key, std::string* value) {
  const char* data = nullptr;
  size_t size = 0;
  if (proxy_get_header_map_value(map, key.data(), key.size(), &data, &size) != WasmResult::Ok) {
    return false;
  }
  *value = take_blob(data, size);
  return true;
}

inline void add_header(WasmHeaderMapType map, std::string_view key, std::string_view value) {
  proxy_add_header_map_value(map, key.data(), key.size(), value.data(), value.size());
}

inline void replace_header(WasmHeaderMapType map, std::string_view key, std::string_view value) {
  proxy_replace_header_map_value(map, key.data(), key.size(), value.data(), value.size());
}

inline std::string property(std::string_view path) {
  const char* data = nullptr;
  size_t size = 0;
  if (proxy_get_property(path.data(), path.size(), &data, &size) != WasmResult::Ok) {
    return "";
  }
  return take_blob(data, size);
}

inline bool buffer(WasmBufferType type, size_t size, std::string* value) {
  const char* data = nullptr;
  size_t length = 0;
  if (proxy_get_buffer_bytes(type, 0, size, &data, &length) != WasmResult::Ok) return false;
  *value = take_blob(data, length);
  return true;
}

// The ABI's header map format: a count, the (key, value) sizes, then each key and value
// followed by a NUL.
inline std::string serialize(const Pairs& pairs) {
  std::string out;
  auto put_u32 = [&out](uint32_t n) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  };
  put_u32(pairs.size());
  for (const auto& [key, value] : pairs) {
    put_u32(key.size());
    put_u32(value.size());
  }
  for (const auto& [key, value] : pairs) {
    out.append(key).push_back('\0');
    out.append(value).push_back('\0');
  }
  return out;
}

// A map in that format (as the host hands one over); empty if it is malformed.
inline Pairs deserialize(std::string_view map) {
  auto get_u32 = [&map](size_t at) {
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n |= uint32_t(static_cast<unsigned char>(map[at + i])) << (8 * i);
    return n;
  };
  if (map.size() < 4) return {};
  size_t count = get_u32(0);
  if (count > map.size() / 8) return {};
  size_t text = 4 + 8 * count;
  Pairs pairs;
  for (size_t i = 0; i < count; ++i) {
    size_t key = get_u32(4 + 8 * i), value = get_u32(8 + 8 * i);
    if (text + key + value + 2 > map.size()) return {};
    pairs.emplace_back(map.substr(text, key), map.substr(text + key + 1, value));
    text += key + value + 2;
  }
  return pairs;
}

inline void send_local_response(uint32_t status, std::string_view details, std::string_view body,
                                const Pairs& headers) {
  std::string map = serialize(headers);
  proxy_send_local_response(status, details.data(), details.size(), body.data(), body.size(),
                            map.data(), map.size(), -1);
}

}  // namespace filter

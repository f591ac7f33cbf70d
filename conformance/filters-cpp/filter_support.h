// A minimal C++ filter SDK in the C++ SDK's shape, shared by the conformance filters here: a
// root context class and a stream context class whose virtual callbacks a filter overrides,
// both made by factories the filter defines, kept by id in a registry; every callback the
// host may call exported (as SDK modules export them all), with the ABI marker and the
// allocator; thin wrappers over the host functions (blobs the host allocated freed, header
// maps (de)serialized, HTTP callouts answered to a callback kept by token). Included by exactly
// one source file per module.
#pragma once

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proxy_wasm_abi.h"

#define EXPORT(name) extern "C" __attribute__((export_name(#name)))

namespace filter {

using Pairs = std::vector<std::pair<std::string, std::string>>;

inline void log(LogLevel level, std::string_view message) {
  proxy_log(level, message.data(), message.size());
}

// A blob the host allocated in this module's memory (with the allocator exported below): owned
// by the filter, freed here.
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

// The plugin's root context: its start-up, configuration, ticks and callouts.
class RootContext {
 public:
  RootContext(uint32_t id, std::string root_id) : id_(id), root_id_(std::move(root_id)) {}
  virtual ~RootContext() = default;
  uint32_t id() const { return id_; }
  // The plugin's root_id (its configuration's), read when the root is created.
  const std::string& rootId() const { return root_id_; }

  virtual bool onStart(size_t /*vm_configuration_size*/) { return true; }
  virtual bool validateConfiguration(size_t /*configuration_size*/) { return true; }
  virtual bool onConfigure(size_t /*configuration_size*/) { return true; }
  virtual void onTick() {}

  // Sends a callout to `upstream`; `done` runs with the answer (no headers: it failed).
  using CallDone = std::function<void(uint32_t headers, size_t body_size)>;
  bool httpCall(std::string_view upstream, const Pairs& headers, uint32_t timeout_ms,
                CallDone done) {
    std::string map = serialize(headers);
    uint32_t token = 0;
    if (proxy_http_call(upstream.data(), upstream.size(), map.data(), map.size(), nullptr, 0,
                        nullptr, 0, timeout_ms, &token) != WasmResult::Ok) {
      return false;
    }
    calls_[token] = std::move(done);
    return true;
  }

  void onHttpCallResponse(uint32_t token, uint32_t headers, size_t body_size) {
    auto call = calls_.find(token);
    if (call == calls_.end()) return;
    CallDone done = std::move(call->second);
    calls_.erase(call);
    done(headers, body_size);
  }

 private:
  uint32_t id_;
  std::string root_id_;
  std::unordered_map<uint32_t, CallDone> calls_;
};

// One HTTP stream of a root context.
class Context {
 public:
  Context(uint32_t id, RootContext* root) : id_(id), root_(root) {}
  virtual ~Context() = default;
  uint32_t id() const { return id_; }
  RootContext* root() const { return root_; }

  virtual FilterHeadersStatus onRequestHeaders() { return FilterHeadersStatus::Continue; }
  virtual FilterDataStatus onRequestBody(size_t /*size*/, bool /*end_of_stream*/) {
    return FilterDataStatus::Continue;
  }
  virtual FilterHeadersStatus onResponseHeaders() { return FilterHeadersStatus::Continue; }
  virtual FilterDataStatus onResponseBody(size_t /*size*/, bool /*end_of_stream*/) {
    return FilterDataStatus::Continue;
  }
  virtual void onLog() {}

 private:
  uint32_t id_;
  RootContext* root_;
};

// Defined by each filter: its root context, and a stream context of `root`.
std::unique_ptr<RootContext> newRootContext(uint32_t id, std::string root_id);
std::unique_ptr<Context> newContext(uint32_t id, RootContext* root);

// Every context by id, roots and streams apart.
inline std::unordered_map<uint32_t, std::unique_ptr<RootContext>> roots;
inline std::unordered_map<uint32_t, std::unique_ptr<Context>> streams;

inline RootContext* root(uint32_t id) {
  auto found = roots.find(id);
  return found == roots.end() ? nullptr : found->second.get();
}

inline Context* stream(uint32_t id) {
  auto found = streams.find(id);
  return found == streams.end() ? nullptr : found->second.get();
}

// Makes stream `id` the context the next host calls act on, if it still exists (a paused
// request may have been abandoned meanwhile).
inline bool actOn(uint32_t id) {
  return stream(id) != nullptr && proxy_set_effective_context(id) == WasmResult::Ok;
}

}  // namespace filter

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1() {}

// Without it (the C++ SDK's modules), the host allocates with the `malloc` the linker exports.
#ifndef ALLOCATE_WITH_MALLOC_EXPORT
EXPORT(proxy_on_memory_allocate) void* proxy_on_memory_allocate(size_t size) {
  return std::malloc(size);
}
#endif

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {
  if (parent == 0) {
    // As the C++ SDK does, which picks the root's class by it: the root_id, a property.
    filter::roots[id] = filter::newRootContext(id, filter::property("plugin_root_id"));
  } else if (filter::RootContext* root = filter::root(parent)) {
    filter::streams[id] = filter::newContext(id, root);
  }
}

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t id, size_t size) {
  filter::RootContext* root = filter::root(id);
  return root != nullptr && root->onStart(size) ? 1 : 0;
}

EXPORT(proxy_validate_configuration)
uint32_t proxy_validate_configuration(uint32_t id, size_t size) {
  filter::RootContext* root = filter::root(id);
  return root != nullptr && root->validateConfiguration(size) ? 1 : 0;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t id, size_t size) {
  filter::RootContext* root = filter::root(id);
  return root != nullptr && root->onConfigure(size) ? 1 : 0;
}

EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t id) {
  if (filter::RootContext* root = filter::root(id)) root->onTick();
}

EXPORT(proxy_on_http_call_response)
void proxy_on_http_call_response(uint32_t id, uint32_t token, uint32_t headers, size_t body_size,
                                 uint32_t) {
  if (filter::RootContext* root = filter::root(id)) {
    root->onHttpCallResponse(token, headers, body_size);
  }
}

EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t id, uint32_t, uint32_t) {
  filter::Context* stream = filter::stream(id);
  return static_cast<uint32_t>(stream ? stream->onRequestHeaders()
                                      : FilterHeadersStatus::Continue);
}

EXPORT(proxy_on_request_body)
uint32_t proxy_on_request_body(uint32_t id, size_t size, uint32_t end_of_stream) {
  filter::Context* stream = filter::stream(id);
  return static_cast<uint32_t>(stream ? stream->onRequestBody(size, end_of_stream != 0)
                                      : FilterDataStatus::Continue);
}

EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t id, uint32_t, uint32_t) {
  filter::Context* stream = filter::stream(id);
  return static_cast<uint32_t>(stream ? stream->onResponseHeaders()
                                      : FilterHeadersStatus::Continue);
}

EXPORT(proxy_on_response_body)
uint32_t proxy_on_response_body(uint32_t id, size_t size, uint32_t end_of_stream) {
  filter::Context* stream = filter::stream(id);
  return static_cast<uint32_t>(stream ? stream->onResponseBody(size, end_of_stream != 0)
                                      : FilterDataStatus::Continue);
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }

EXPORT(proxy_on_log) void proxy_on_log(uint32_t id) {
  if (filter::Context* stream = filter::stream(id)) stream->onLog();
}

EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t id) {
  filter::streams.erase(id);
  filter::roots.erase(id);
}

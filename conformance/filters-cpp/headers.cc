// Conformance filter `cpp-headers`: a C++ filter written as the C++ SDK writes them (classes for
// the root and stream contexts, a registry of contexts by id, std containers, the C library's
// malloc as the allocator). `build` compiles it twice:
// - with Emscripten, as the C++ SDK builds filters for Envoy (`emcc-headers.wasm`), and with
//   ALLOCATE_WITH_MALLOC_EXPORT defined, as that SDK's modules: no proxy_on_memory_allocate,
//   the host allocates with the exported `malloc`;
// - with clang for wasm32-wasi, wasi-libc and libc++ (`cpp-headers.wasm`), exporting
//   proxy_on_memory_allocate.
// Both are ABI 0.2.1, as the C++ SDK's modules are today.
//
// Its plugin configuration is `name: value`: that header is added to every request, with
// `x-cpp-path` (the request's `:path`) and `x-cpp-source` (property `source.address`). A
// request with `x-cpp-deny` is answered 403 by the filter; one with `x-cpp-abort` makes it call
// abort() (the guest traps); one with `x-cpp-grow: N` makes it allocate N MiB (its memory
// grows) and say how it went in response header `x-cpp-memory` (`N MiB in a memory of M MiB`,
// or `refused` when malloc returned null). Responses get `x-cpp-filter: N` (the streams this VM
// has seen), `x-cpp-root-id` (the plugin's root_id, read as the root context was created, as the
// C++ SDK reads it) and `x-cpp-status` (their `:status`); each stream logs its status from
// `on_log`. A malformed configuration is refused with a log line saying why (a header name
// that is not a token by proxy_validate_configuration, one without a colon by
// proxy_on_configure); an accepted one is announced on stderr (WASI fd_write, as C and C++
// filters print).
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "filter_support.h"

namespace {

using namespace filter;

// Allocates `mib` MiB and writes to each of its pages (volatile: the allocation may not be
// optimised away), so that the memory really grows; says how that went.
std::string grow(const std::string& mib_text) {
  unsigned long mib = std::strtoul(mib_text.c_str(), nullptr, 10);
  if (mib >= 4096) return "refused";  // past a 32-bit address space
  size_t size = static_cast<size_t>(mib) << 20;
  auto* block = static_cast<volatile char*>(std::malloc(size));
  if (block == nullptr) return "refused";
  for (size_t i = 0; i < size; i += 4096) block[i] = 1;
  std::free(const_cast<char*>(block));
  size_t memory = (__builtin_wasm_memory_size(0) * 65536) >> 20;
  return std::to_string(mib) + " MiB in a memory of " + std::to_string(memory) + " MiB";
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  return text;
}

class HeadersRoot : public RootContext {
 public:
  using RootContext::RootContext;

  // Called before onConfigure (the SDK's validateConfiguration): a header name must be an
  // HTTP token (onConfigure alone would take `x y: 1`).
  bool validateConfiguration(size_t size) override {
    std::string config;
    buffer(WasmBufferType::PluginConfiguration, size, &config);
    std::string_view name = trim(std::string_view(config).substr(0, config.find(':')));
    for (char c : name) {
      if (c <= ' ' || c == '"' || c == '(' || c == ')' || c == ',' || c == '/' || c == ';' ||
          c == '<' || c == '=' || c == '>' || c == '?' || c == '@' || c == '[' || c == '\\' ||
          c == ']' || c == '{' || c == '}' || c >= 0x7f) {
        log(LogLevel::Error, "header name '" + std::string(name) + "' is not a token");
        return false;
      }
    }
    return true;
  }

  bool onConfigure(size_t size) override {
    std::string config;
    buffer(WasmBufferType::PluginConfiguration, size, &config);
    size_t colon = config.find(':');
    std::string_view name = trim(std::string_view(config).substr(0, colon));
    if (colon == std::string::npos || name.empty()) {
      log(LogLevel::Error, "configuration must be 'name: value', got '" + config + "'");
      return false;
    }
    name_ = std::string(name);
    value_ = std::string(trim(std::string_view(config).substr(colon + 1)));
    std::fprintf(stderr, "C++ filter adds %s\n", name_.c_str());
    return true;
  }

  const std::string& name() const { return name_; }
  const std::string& value() const { return value_; }
  uint64_t streams() const { return streams_; }
  void countStream() { ++streams_; }

 private:
  std::string name_;
  std::string value_;
  uint64_t streams_ = 0;
};

class HeadersStream : public Context {
 public:
  HeadersStream(uint32_t id, HeadersRoot* root) : Context(id, root), root_(root) {}

  FilterHeadersStatus onRequestHeaders() override {
    const auto request = WasmHeaderMapType::RequestHeaders;
    std::string ignored;
    if (header(request, "x-cpp-abort", &ignored)) {
      std::abort();
    }
    if (header(request, "x-cpp-deny", &ignored)) {
      send_local_response(403, "cpp_denied", "denied by the C++ filter\n",
                          {{"x-denied-by", "cpp"}, {"content-type", "text/plain"}});
      return FilterHeadersStatus::StopIteration;
    }
    std::string mib;
    if (header(request, "x-cpp-grow", &mib)) memory_ = grow(mib);
    add_header(request, root_->name(), root_->value());
    std::string path;
    if (header(request, ":path", &path)) add_header(request, "x-cpp-path", path);
    add_header(request, "x-cpp-source", property(std::string_view("source\0address", 14)));
    return FilterHeadersStatus::Continue;
  }

  FilterHeadersStatus onResponseHeaders() override {
    const auto response = WasmHeaderMapType::ResponseHeaders;
    replace_header(response, "x-cpp-filter", std::to_string(root_->streams()));
    replace_header(response, "x-cpp-root-id", root_->rootId());
    std::string status;
    if (header(response, ":status", &status)) replace_header(response, "x-cpp-status", status);
    if (!memory_.empty()) replace_header(response, "x-cpp-memory", memory_);
    return FilterHeadersStatus::Continue;
  }

  void onLog() override {
    std::string status;
    header(WasmHeaderMapType::ResponseHeaders, ":status", &status);
    log(LogLevel::Info, "C++ filter logged a " + status + " response");
  }

 private:
  HeadersRoot* root_;
  std::string memory_;  // what `x-cpp-grow` did, for the response
};

}  // namespace

std::unique_ptr<RootContext> filter::newRootContext(uint32_t id, std::string root_id) {
  return std::make_unique<HeadersRoot>(id, std::move(root_id));
}

std::unique_ptr<Context> filter::newContext(uint32_t id, RootContext* root) {
  auto* owner = static_cast<HeadersRoot*>(root);
  owner->countStream();
  return std::make_unique<HeadersStream>(id, owner);
}

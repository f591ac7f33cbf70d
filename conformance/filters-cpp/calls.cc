// Conformance filter `cpp-calls`: the C++ SDK's patterns beyond one callback (see headers.cc for
// how it is built): an HTTP callout whose answer, delivered to the root context, resumes the
// request it was made for (`RootContext::httpCall` with a callback); a timer that resumes requests
// waiting for it; shared data updated with compare-and-swap; metrics; a buffered request body
// rewritten.
//
// Its VM configuration is the tick period in milliseconds. On every request it counts counter
// `cpp_requests_total`; responses get `x-cpp-ticks` (shared data `cpp-ticks`, which each tick of
// each VM increments) and `x-cpp-requests` (the counter, read back).
// - `x-cpp-callout: UPSTREAM PATH` sends a GET for PATH to that upstream and pauses the request;
//   the answer resumes it with request headers `x-cpp-callout-status` (the answer's `:status`)
//   and `x-cpp-callout-uri` (read from its body, the echo upstream's JSON); a failed callout is
//   answered 503 `callout failed`, one the host refuses 500 `callout refused`.
// - `x-cpp-wait-tick` pauses the request until the VM's next tick, which resumes it with
//   request header `x-cpp-waited: tick`.
// - Request bodies are buffered to their end, their size recorded in histogram
//   `cpp_body_bytes`, and replaced by their upper-case text.
#include <cctype>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "filter_support.h"

namespace {

using namespace filter;

constexpr std::string_view kTicksKey = "cpp-ticks";
constexpr auto kRequest = WasmHeaderMapType::RequestHeaders;

// The value of `"key":"…"` in a JSON text (enough for the echo upstream's answer).
std::string json_string(std::string_view json, std::string_view key) {
  std::string quoted = "\"" + std::string(key) + "\":\"";
  size_t start = json.find(quoted);
  if (start == std::string_view::npos) return "";
  start += quoted.size();
  size_t end = json.find('"', start);
  return std::string(json.substr(start, end == std::string_view::npos ? 0 : end - start));
}

class CallsRoot : public RootContext {
 public:
  using RootContext::RootContext;

  bool onStart(size_t vm_config_size) override {
    std::string period;
    buffer(WasmBufferType::VmConfiguration, vm_config_size, &period);
    uint32_t ms = std::strtoul(period.c_str(), nullptr, 10);
    if (ms == 0) {
      log(LogLevel::Error, "the VM configuration must be a tick period in ms, got '" + period + "'");
      return false;
    }
    proxy_set_tick_period_milliseconds(ms);
    std::string_view requests = "cpp_requests_total", bytes = "cpp_body_bytes";
    proxy_define_metric(MetricType::Counter, requests.data(), requests.size(), &requests_);
    proxy_define_metric(MetricType::Histogram, bytes.data(), bytes.size(), &body_bytes_);
    return true;
  }

  void onTick() override {
    // Every VM (one per worker) ticks: the shared counter is updated with compare-and-swap.
    for (int attempt = 0; attempt < 16; ++attempt) {
      const char* data = nullptr;
      size_t size = 0;
      uint32_t cas = 0;
      unsigned long long ticks = 0;
      if (proxy_get_shared_data(kTicksKey.data(), kTicksKey.size(), &data, &size, &cas) ==
          WasmResult::Ok) {
        ticks = std::strtoull(take_blob(data, size).c_str(), nullptr, 10);
      }
      std::string next = std::to_string(ticks + 1);
      if (proxy_set_shared_data(kTicksKey.data(), kTicksKey.size(), next.data(), next.size(),
                                cas) != WasmResult::CasMismatch) {
        break;
      }
    }
    for (uint32_t stream : std::exchange(waiting_, {})) {
      if (!actOn(stream)) continue;
      add_header(kRequest, "x-cpp-waited", "tick");
      proxy_continue_stream(WasmStreamType::Request);
    }
  }

  void waitForTick(uint32_t stream) { waiting_.push_back(stream); }
  uint32_t requests() const { return requests_; }
  uint32_t bodyBytes() const { return body_bytes_; }

 private:
  std::vector<uint32_t> waiting_;
  uint32_t requests_ = 0;
  uint32_t body_bytes_ = 0;
};

void resume_after_callout(uint32_t stream, uint32_t headers, size_t body_size) {
  if (!actOn(stream)) return;
  if (headers == 0) {
    send_local_response(503, "cpp_callout_failed", "callout failed\n", {});
    return;
  }
  const char* data = nullptr;
  size_t size = 0;
  std::string status;
  if (proxy_get_header_map_pairs(WasmHeaderMapType::HttpCallResponseHeaders, &data, &size) ==
      WasmResult::Ok) {
    for (const auto& [key, value] : deserialize(take_blob(data, size))) {
      if (key == ":status") status = value;
    }
  }
  std::string body;
  buffer(WasmBufferType::HttpCallResponseBody, body_size, &body);
  add_header(kRequest, "x-cpp-callout-status", status);
  add_header(kRequest, "x-cpp-callout-uri", json_string(body, "uri"));
  proxy_continue_stream(WasmStreamType::Request);
}

class CallsStream : public Context {
 public:
  CallsStream(uint32_t id, CallsRoot* root) : Context(id, root), root_(root) {}

  FilterHeadersStatus onRequestHeaders() override {
    proxy_increment_metric(root_->requests(), 1);
    std::string callout;
    if (header(kRequest, "x-cpp-callout", &callout)) {
      size_t space = callout.find(' ');
      std::string upstream = callout.substr(0, space);
      std::string path = space == std::string::npos ? "/" : callout.substr(space + 1);
      uint32_t stream = id();
      bool sent = root_->httpCall(
          upstream, {{":method", "GET"}, {":path", path}, {":authority", upstream}}, 5000,
          [stream](uint32_t headers, size_t body_size) {
            resume_after_callout(stream, headers, body_size);
          });
      if (!sent) {
        send_local_response(500, "cpp_callout_refused", "callout refused\n", {});
      }
      return FilterHeadersStatus::StopIteration;
    }
    std::string ignored;
    if (header(kRequest, "x-cpp-wait-tick", &ignored)) {
      root_->waitForTick(id());
      return FilterHeadersStatus::StopIteration;
    }
    return FilterHeadersStatus::Continue;
  }

  FilterDataStatus onRequestBody(size_t size, bool end_of_stream) override {
    if (!end_of_stream) return FilterDataStatus::StopIterationAndBuffer;
    std::string body;
    if (size == 0 || !buffer(WasmBufferType::HttpRequestBody, size, &body)) {
      return FilterDataStatus::Continue;
    }
    proxy_record_metric(root_->bodyBytes(), body.size());
    for (char& c : body) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    proxy_set_buffer_bytes(WasmBufferType::HttpRequestBody, 0, body.size(), body.data(),
                           body.size());
    return FilterDataStatus::Continue;
  }

  FilterHeadersStatus onResponseHeaders() override {
    const auto response = WasmHeaderMapType::ResponseHeaders;
    const char* data = nullptr;
    size_t size = 0;
    uint32_t cas = 0;
    std::string ticks = "0";
    if (proxy_get_shared_data(kTicksKey.data(), kTicksKey.size(), &data, &size, &cas) ==
        WasmResult::Ok) {
      ticks = take_blob(data, size);
    }
    replace_header(response, "x-cpp-ticks", ticks);
    uint64_t requests = 0;
    proxy_get_metric(root_->requests(), &requests);
    replace_header(response, "x-cpp-requests", std::to_string(requests));
    return FilterHeadersStatus::Continue;
  }

 private:
  CallsRoot* root_;
};

}  // namespace

std::unique_ptr<RootContext> filter::newRootContext(uint32_t id, std::string root_id) {
  return std::make_unique<CallsRoot>(id, std::move(root_id));
}

std::unique_ptr<Context> filter::newContext(uint32_t id, RootContext* root) {
  return std::make_unique<CallsStream>(id, static_cast<CallsRoot*>(root));
}

// For Emscripten's linker (`--js-library`, as the C++ SDK links its filters): the host functions
// declared in proxy_wasm_abi.h, as library functions, so that they stay imports from module
// `env` rather than undefined symbols. The host defines them; these bodies are never run.
mergeInto(LibraryManager.library, {
  proxy_log: function () {},
  proxy_get_buffer_bytes: function () {},
  proxy_set_buffer_bytes: function () {},
  proxy_get_header_map_pairs: function () {},
  proxy_get_header_map_value: function () {},
  proxy_add_header_map_value: function () {},
  proxy_replace_header_map_value: function () {},
  proxy_get_property: function () {},
  proxy_send_local_response: function () {},
  proxy_http_call: function () {},
  proxy_continue_stream: function () {},
  proxy_set_effective_context: function () {},
  proxy_set_tick_period_milliseconds: function () {},
  proxy_get_shared_data: function () {},
  proxy_set_shared_data: function () {},
  proxy_define_metric: function () {},
  proxy_increment_metric: function () {},
  proxy_record_metric: function () {},
  proxy_get_metric: function () {},
});

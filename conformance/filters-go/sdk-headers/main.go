// Conformance filter `sdk-headers`, built on barbacane's Go SDK (sdk-tinygo).
//
// Configuration (JSON, parsed with sdk-tinygo/config; unknown fields are refused):
//
//	{"request":  {"add": {name: value}, "set": {name: value}, "remove": [name]},
//	 "response": {"add": {...}, "set": {...}, "remove": [...]}}
//
// On request headers it adds, sets (replace) and removes the request headers as configured,
// and remembers the request's method (GetHttpRequestHeader(":method")) and its number of
// headers (GetHttpRequestHeaders); on response headers it edits the response headers and adds
// `x-go-method`, `x-go-request-headers` and `x-go-status` (the response's ":status").
// OnPluginStart logs one line at each level ("sdk-headers <level>") and the host's log level.
//
// With "churn": n (> 0) the GC runs far more often (debug.SetGCPercent(1)) and each request
// reads its headers n more times; any read that differs from the first adds response header
// `x-go-corrupt`: the blobs the host allocates in the guest must survive the Go GC.
package main

import (
	"runtime/debug"
	"strconv"

	"github.com/barbacane/sdk-tinygo/config"
	"github.com/barbacane/sdk-tinygo/proxywasm"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type edits struct {
	Add    map[string]string `json:"add"`
	Set    map[string]string `json:"set"`
	Remove []string          `json:"remove"`
}

type settings struct {
	Request  edits `json:"request"`
	Response edits `json:"response"`
	Churn    int   `json:"churn"`
}

type plugin struct {
	types.DefaultPluginContext
	settings settings
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	if err := config.Load(&p.settings); err != nil {
		return types.OnPluginStartStatusFailed
	}
	proxywasm.LogTrace("sdk-headers trace")
	proxywasm.LogDebug("sdk-headers debug")
	proxywasm.LogInfo("sdk-headers info")
	proxywasm.LogWarn("sdk-headers warn")
	proxywasm.LogErrorf("sdk-headers %s", "error")
	proxywasm.LogCriticalf("sdk-headers %s", "critical")
	if p.settings.Churn > 0 {
		debug.SetGCPercent(1)
	}
	if level, err := proxywasm.GetLogLevel(); err == nil {
		proxywasm.LogInfof("sdk-headers host log level %s", level)
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext {
	return &stream{settings: &p.settings}
}

type stream struct {
	types.DefaultHttpContext
	settings *settings
	method   string
	count    int
	corrupt  bool
}

func apply(e edits, add, set func(string, string) error, remove func(string) error) {
	for name, value := range e.Add {
		if err := add(name, value); err != nil {
			proxywasm.LogErrorf("add %s: %v", name, err)
		}
	}
	for name, value := range e.Set {
		if err := set(name, value); err != nil {
			proxywasm.LogErrorf("set %s: %v", name, err)
		}
	}
	for _, name := range e.Remove {
		if err := remove(name); err != nil {
			proxywasm.LogErrorf("remove %s: %v", name, err)
		}
	}
}

func (s *stream) OnHttpRequestHeaders(numHeaders int, _ bool) types.Action {
	headers, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		proxywasm.LogErrorf("request headers: %v", err)
	}
	if len(headers) != numHeaders {
		proxywasm.LogErrorf("%d request headers, callback said %d", len(headers), numHeaders)
	}
	s.count = len(headers)
	for range s.settings.Churn {
		again, err := proxywasm.GetHttpRequestHeaders()
		if err != nil || !equal(again, headers) {
			s.corrupt = true
		}
	}
	s.method, _ = proxywasm.GetHttpRequestHeader(":method")
	apply(s.settings.Request, proxywasm.AddHttpRequestHeader, proxywasm.ReplaceHttpRequestHeader,
		proxywasm.RemoveHttpRequestHeader)
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	apply(s.settings.Response, proxywasm.AddHttpResponseHeader, proxywasm.ReplaceHttpResponseHeader,
		proxywasm.RemoveHttpResponseHeader)
	status, err := proxywasm.GetHttpResponseHeader(":status")
	if err != nil {
		status = err.Error()
	}
	_ = proxywasm.AddHttpResponseHeader("x-go-status", status)
	_ = proxywasm.AddHttpResponseHeader("x-go-method", s.method)
	_ = proxywasm.AddHttpResponseHeader("x-go-request-headers", strconv.Itoa(s.count))
	if s.corrupt {
		_ = proxywasm.AddHttpResponseHeader("x-go-corrupt", "true")
	}
	return types.ActionContinue
}

func equal(a, b [][2]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Example http_headers: adds a configured header to every request and `x-powered-by: go` to
// every response.
//
// Configuration: {"header": "x-hello", "value": "world"}.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o http_headers.wasm .
package main

import (
	"github.com/barbacane/sdk-tinygo/config"
	"github.com/barbacane/sdk-tinygo/proxywasm"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct {
	types.DefaultVMContext
}

func (*vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{}
}

type pluginContext struct {
	types.DefaultPluginContext
	Header string `json:"header"`
	Value  string `json:"value"`
}

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	p.Header, p.Value = "x-hello", "world"
	if err := config.Load(p); err != nil {
		return types.OnPluginStartStatusFailed
	}
	proxywasm.LogInfof("adding %s: %s to requests", p.Header, p.Value)
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	if err := proxywasm.ReplaceHttpRequestHeader(h.plugin.Header, h.plugin.Value); err != nil {
		proxywasm.LogErrorf("setting %s: %v", h.plugin.Header, err)
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	_ = proxywasm.ReplaceHttpResponseHeader("x-powered-by", "go")
	return types.ActionContinue
}

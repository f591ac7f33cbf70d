// Plugin {{name}}: adds a configured header to every response. A Proxy-Wasm module (ABI 0.2.1)
// built with barbacane's Go SDK: it runs in barbacane and, unchanged, in Envoy.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o {{name}}.wasm .
package main

import (
	"github.com/barbacane/sdk-tinygo/config"
	"github.com/barbacane/sdk-tinygo/proxywasm"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

// plugin holds the configuration (checked against schema.json by `barbacane compile`).
type plugin struct {
	types.DefaultPluginContext
	Header string `json:"header"`
	Value  string `json:"value"`
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	p.Header, p.Value = "x-{{name}}", "hello"
	if err := config.Load(p); err != nil {
		return types.OnPluginStartStatusFailed // logged; `barbacane compile` quotes it
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{plugin: p} }

type stream struct {
	types.DefaultHttpContext
	plugin *plugin
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	if err := proxywasm.ReplaceHttpResponseHeader(s.plugin.Header, s.plugin.Value); err != nil {
		proxywasm.LogErrorf("setting %s: %v", s.plugin.Header, err)
	}
	return types.ActionContinue
}

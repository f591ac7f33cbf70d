// Conformance filter `sdk-reply`, built on barbacane's Go SDK (sdk-tinygo): local replies.
//
// Configuration: {"deny_header": name, "replace_status": status}.
//
//   - Request phase: a request carrying the header deny_header is answered with a 403 problem
//     (sdk-tinygo/problem: application/problem+json, type urn:barbacane:error:forbidden,
//     header `x-go-reply: request`); the upstream is never called.
//   - Response phase: an upstream response whose ":status" is replace_status is replaced by a
//     local 418 reply with body `replaced by go` and header `x-go-reply: response`.
package main

import (
	"github.com/barbacane/sdk-tinygo/config"
	"github.com/barbacane/sdk-tinygo/problem"
	"github.com/barbacane/sdk-tinygo/proxywasm"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type settings struct {
	DenyHeader    string `json:"deny_header"`
	ReplaceStatus string `json:"replace_status"`
}

type plugin struct {
	types.DefaultPluginContext
	settings settings
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	if err := config.Load(&p.settings); err != nil {
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext {
	return &stream{settings: &p.settings}
}

type stream struct {
	types.DefaultHttpContext
	settings *settings
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	if s.settings.DenyHeader == "" {
		return types.ActionContinue
	}
	if _, err := proxywasm.GetHttpRequestHeader(s.settings.DenyHeader); err != nil {
		return types.ActionContinue
	}
	err := problem.New(403, "forbidden", "denied by the Go filter: "+s.settings.DenyHeader).
		WithHeader("x-go-reply", "request").
		Send()
	if err != nil {
		proxywasm.LogErrorf("local reply: %v", err)
	}
	return types.ActionPause
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	status, err := proxywasm.GetHttpResponseHeader(":status")
	if err != nil || s.settings.ReplaceStatus == "" || status != s.settings.ReplaceStatus {
		return types.ActionContinue
	}
	headers := [][2]string{{"content-type", "text/plain"}, {"x-go-reply", "response"}}
	if err := proxywasm.SendHttpResponse(418, headers, []byte("replaced by go"), -1); err != nil {
		proxywasm.LogErrorf("local reply: %v", err)
	}
	return types.ActionPause
}

// Example http_auth: asks an authorization service before letting a request through.
//
// Configuration: {"upstream": "auth", "path": "/check"}; the upstream is one of the spec's
// `x-barbacane-upstreams`. The request is paused while the callout runs; a 200 resumes it
// with `x-auth-user` set to the service's answer, anything else answers 401 with a problem.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o http_auth.wasm .
package main

import (
	"github.com/barbacane/sdk-tinygo/config"
	"github.com/barbacane/sdk-tinygo/problem"
	"github.com/barbacane/sdk-tinygo/proxywasm"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &pluginContext{} })
}

type pluginContext struct {
	types.DefaultPluginContext
	Upstream string `json:"upstream"`
	Path     string `json:"path"`
}

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	p.Upstream, p.Path = "auth", "/check"
	if err := config.Load(p); err != nil {
		return types.OnPluginStartStatusFailed
	}
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
	authorization, err := proxywasm.GetHttpRequestHeader("authorization")
	if err != nil {
		_ = problem.New(401, "unauthorized", "no credentials").
			WithHeader("www-authenticate", "Bearer").
			Send()
		return types.ActionPause
	}
	headers := [][2]string{
		{":method", "GET"},
		{":path", h.plugin.Path},
		{":authority", h.plugin.Upstream},
		{"authorization", authorization},
	}
	if _, err := proxywasm.DispatchHttpCall(h.plugin.Upstream, headers, nil, nil, 2000, h.onAuthResponse); err != nil {
		proxywasm.LogErrorf("callout to %s: %v", h.plugin.Upstream, err)
		_ = problem.New(503, "auth-unavailable", "the authorization service cannot be reached").Send()
	}
	return types.ActionPause
}

func (h *httpContext) onAuthResponse(numHeaders, bodySize, _ int) {
	if numHeaders == 0 {
		_ = problem.New(503, "auth-unavailable", "the authorization service failed").Send()
		return
	}
	headers, _ := proxywasm.GetHttpCallResponseHeaders()
	for _, header := range headers {
		if header[0] == ":status" && header[1] == "200" {
			user, _ := proxywasm.GetHttpCallResponseBody(0, bodySize)
			_ = proxywasm.ReplaceHttpRequestHeader("x-auth-user", string(user))
			_ = proxywasm.ResumeHttpRequest()
			return
		}
	}
	_ = problem.New(401, "unauthorized", "invalid credentials").Send()
}

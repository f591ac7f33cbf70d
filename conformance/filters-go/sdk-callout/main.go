// Conformance filter `sdk-callout`, built on barbacane's Go SDK (sdk-tinygo): an HTTP callout
// with the request paused and resumed.
//
// Configuration: {"upstream": name, "path": path, "timeout_ms": n}.
//
// On request headers it calls GET <path> on the named upstream (":authority" = the upstream
// name, with the request's `authorization` and `x-original-path`) and pauses the request. In
// the callout's callback:
//
//   - a 200 adds request header `x-auth-user` (the callout's body) and `x-callout-headers`
//     (how many headers it got), then resumes the request;
//   - another status answers 403 (problem `forbidden`) with `x-callout-status`;
//   - a failed callout answers 502 (problem `callout-failed`) with `x-callout-failed` set to
//     GetStatus's "code message".
//
// A callout that cannot be dispatched answers 500 with `x-callout-error`.
package main

import (
	"strconv"

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
	Upstream  string `json:"upstream"`
	Path      string `json:"path"`
	TimeoutMs uint32 `json:"timeout_ms"`
}

type plugin struct {
	types.DefaultPluginContext
	settings settings
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	p.settings = settings{Path: "/", TimeoutMs: 1000}
	if err := config.Load(&p.settings); err != nil {
		return types.OnPluginStartStatusFailed
	}
	if p.settings.Upstream == "" {
		proxywasm.LogError("invalid configuration: upstream is required")
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
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	auth, _ := proxywasm.GetHttpRequestHeader("authorization")
	headers := [][2]string{
		{":method", "GET"},
		{":path", s.settings.Path},
		{":authority", s.settings.Upstream},
		{"x-original-path", path},
	}
	if auth != "" {
		headers = append(headers, [2]string{"authorization", auth})
	}
	_, err := proxywasm.DispatchHttpCall(s.settings.Upstream, headers, nil, nil, s.settings.TimeoutMs, s.onResponse)
	if err != nil {
		_ = problem.New(500, "callout-failed", "cannot dispatch the callout").
			WithHeader("x-callout-error", err.Error()).
			Send()
	}
	return types.ActionPause
}

func (s *stream) onResponse(numHeaders, bodySize, _ int) {
	if numHeaders == 0 {
		code, msg, _ := proxywasm.GetStatus()
		_ = problem.New(502, "callout-failed", "the callout failed").
			WithHeader("x-callout-failed", strconv.FormatUint(uint64(code), 10)+" "+msg).
			Send()
		return
	}
	headers, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil {
		proxywasm.LogErrorf("callout headers: %v", err)
	}
	status := ""
	for _, h := range headers {
		if h[0] == ":status" {
			status = h[1]
		}
	}
	if status != "200" {
		_ = problem.New(403, "forbidden", "the authorization service said no").
			WithHeader("x-callout-status", status).
			Send()
		return
	}
	body, err := proxywasm.GetHttpCallResponseBody(0, bodySize)
	if err != nil {
		proxywasm.LogErrorf("callout body: %v", err)
	}
	_ = proxywasm.ReplaceHttpRequestHeader("x-auth-user", string(body))
	_ = proxywasm.ReplaceHttpRequestHeader("x-callout-headers", strconv.Itoa(len(headers)))
	if err := proxywasm.ResumeHttpRequest(); err != nil {
		proxywasm.LogErrorf("resume: %v", err)
	}
}

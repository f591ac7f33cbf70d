// Conformance filter `sdk-more`, built on barbacane's Go SDK (sdk-tinygo): whole-map header and
// trailer replacement, stream resets, a response resumed from OnTick, the VM configuration,
// typed properties and a callout's trailers.
//
// Configuration (optional): {"upstream": name}, the upstream of the `callout` mode.
// OnVMStart keeps GetVMConfiguration; OnPluginStart sets a 20 ms tick. The request header
// `x-mode` selects what the stream does:
//
//   - `set`: SetHttpRequestHeaders with the request's headers less `x-drop`, plus
//     `x-set-req: yes`; SetHttpResponseHeaders with the response's headers less `x-upstream`,
//     plus `x-set-resp: yes`.
//   - `reset-request`: ResetHttpRequest in OnHttpRequestHeaders.
//   - `reset-response`: ResetHttpResponse in OnHttpResponseHeaders.
//   - `pause-response`: pauses in OnHttpResponseHeaders; OnTick adds `x-resumed: tick` and
//     resumes it (SetEffectiveContext + ResumeHttpResponse).
//   - `trailers`: SetHttpRequestTrailers([x-set-req-trailer: r]) in OnHttpRequestTrailers,
//     reported as `x-req-trailers` (GetHttpRequestTrailers read back, `k=v` joined by `,`);
//     SetHttpResponseTrailers([x-set-trailer: s]) in OnHttpResponseTrailers, declaring both
//     it and the upstream's `x-upstream-trailer` in the response's `trailer` header.
//   - `callout`: GET / on the configured upstream with the request paused; the callback
//     keeps GetHttpCallResponseTrailers and resumes; reported as `x-call-trailers`.
//
// Every response gets `x-vm-config` (the VM configuration), `x-prop-mtls`
// (GetPropertyBool connection.mtls), `x-prop-source-port` (GetPropertyUint64 source.port)
// and `x-prop-connection-id` (GetPropertyUint64 connection.id).
package main

import (
	"strconv"
	"strings"

	"github.com/barbacane/sdk-tinygo/config"
	"github.com/barbacane/sdk-tinygo/proxywasm"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

func main() {}

var vmConfig string

func init() {
	proxywasm.SetVMContext(&vm{})
}

type vm struct {
	types.DefaultVMContext
}

func (*vm) OnVMStart(int) types.OnVMStartStatus {
	data, err := proxywasm.GetVMConfiguration()
	if err != nil {
		vmConfig = "<error:" + err.Error() + ">"
	} else {
		vmConfig = string(data)
	}
	return types.OnVMStartStatusOK
}

func (*vm) NewPluginContext(uint32) types.PluginContext { return &plugin{} }

type settings struct {
	Upstream string `json:"upstream"`
}

type plugin struct {
	types.DefaultPluginContext
	settings settings
	paused   []uint32
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	if err := config.Load(&p.settings); err != nil {
		proxywasm.LogErrorf("configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	if err := proxywasm.SetTickPeriodMilliSeconds(20); err != nil {
		proxywasm.LogErrorf("tick: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) OnTick() {
	paused := p.paused
	p.paused = nil
	for _, id := range paused {
		if err := proxywasm.SetEffectiveContext(id); err != nil {
			proxywasm.LogErrorf("set_effective_context(%d): %v", id, err)
			continue
		}
		_ = proxywasm.AddHttpResponseHeader("x-resumed", "tick")
		if err := proxywasm.ResumeHttpResponse(); err != nil {
			proxywasm.LogErrorf("resume response: %v", err)
		}
	}
}

func (p *plugin) NewHttpContext(id uint32) types.HttpContext {
	return &stream{plugin: p, id: id}
}

type stream struct {
	types.DefaultHttpContext
	plugin       *plugin
	id           uint32
	mode         string
	reqTrailers  string
	callTrailers string
}

func without(pairs [][2]string, drop string) [][2]string {
	out := make([][2]string, 0, len(pairs))
	for _, p := range pairs {
		if !strings.EqualFold(p[0], drop) {
			out = append(out, p)
		}
	}
	return out
}

func joined(pairs [][2]string) string {
	parts := make([]string, 0, len(pairs))
	for _, p := range pairs {
		parts = append(parts, p[0]+"="+p[1])
	}
	return strings.Join(parts, ",")
}

func errText(err error) string { return "<error:" + err.Error() + ">" }

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.mode, _ = proxywasm.GetHttpRequestHeader("x-mode")
	switch s.mode {
	case "set":
		headers, err := proxywasm.GetHttpRequestHeaders()
		if err != nil {
			proxywasm.LogErrorf("get request headers: %v", err)
			return types.ActionContinue
		}
		headers = append(without(headers, "x-drop"), [2]string{"x-set-req", "yes"})
		if err := proxywasm.SetHttpRequestHeaders(headers); err != nil {
			proxywasm.LogErrorf("set request headers: %v", err)
		}
	case "reset-request":
		if err := proxywasm.ResetHttpRequest(); err != nil {
			proxywasm.LogErrorf("reset request: %v", err)
			return types.ActionContinue
		}
		return types.ActionPause
	case "callout":
		up := s.plugin.settings.Upstream
		_, err := proxywasm.DispatchHttpCall(up, [][2]string{
			{":method", "GET"}, {":path", "/"}, {":authority", up},
		}, nil, nil, 5000, func(numHeaders, _, numTrailers int) {
			trailers, err := proxywasm.GetHttpCallResponseTrailers()
			if err != nil {
				s.callTrailers = errText(err)
			} else {
				s.callTrailers = strconv.Itoa(numHeaders) + ":" + strconv.Itoa(numTrailers) + ":" + joined(trailers)
			}
			_ = proxywasm.ResumeHttpRequest()
		})
		if err != nil {
			s.callTrailers = errText(err)
			return types.ActionContinue
		}
		return types.ActionPause
	}
	return types.ActionContinue
}

func (s *stream) OnHttpRequestTrailers(int) types.Action {
	if s.mode != "trailers" {
		return types.ActionContinue
	}
	if err := proxywasm.SetHttpRequestTrailers([][2]string{{"x-set-req-trailer", "r"}}); err != nil {
		s.reqTrailers = errText(err)
		return types.ActionContinue
	}
	trailers, err := proxywasm.GetHttpRequestTrailers()
	if err != nil {
		s.reqTrailers = errText(err)
	} else {
		s.reqTrailers = joined(trailers)
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	switch s.mode {
	case "set":
		headers, err := proxywasm.GetHttpResponseHeaders()
		if err != nil {
			proxywasm.LogErrorf("get response headers: %v", err)
			break
		}
		headers = append(without(headers, "x-upstream"), [2]string{"x-set-resp", "yes"})
		if err := proxywasm.SetHttpResponseHeaders(headers); err != nil {
			proxywasm.LogErrorf("set response headers: %v", err)
		}
	case "reset-response":
		if err := proxywasm.ResetHttpResponse(); err != nil {
			proxywasm.LogErrorf("reset response: %v", err)
			return types.ActionContinue
		}
		return types.ActionPause
	case "trailers":
		_ = proxywasm.AddHttpResponseHeader("x-req-trailers", s.reqTrailers)
		// An HTTP/1.1 client only gets the trailers the response declares.
		_ = proxywasm.AddHttpResponseHeader("trailer", "x-set-trailer, x-upstream-trailer")
	case "callout":
		_ = proxywasm.AddHttpResponseHeader("x-call-trailers", s.callTrailers)
	}
	_ = proxywasm.AddHttpResponseHeader("x-vm-config", vmConfig)
	if mtls, err := proxywasm.GetPropertyBool([]string{"connection", "mtls"}); err != nil {
		_ = proxywasm.AddHttpResponseHeader("x-prop-mtls", errText(err))
	} else {
		_ = proxywasm.AddHttpResponseHeader("x-prop-mtls", strconv.FormatBool(mtls))
	}
	for _, p := range []struct{ header, a, b string }{
		{"x-prop-source-port", "source", "port"},
		{"x-prop-connection-id", "connection", "id"},
	} {
		if v, err := proxywasm.GetPropertyUint64([]string{p.a, p.b}); err != nil {
			_ = proxywasm.AddHttpResponseHeader(p.header, errText(err))
		} else {
			_ = proxywasm.AddHttpResponseHeader(p.header, strconv.FormatUint(v, 10))
		}
	}
	if s.mode == "pause-response" {
		s.plugin.paused = append(s.plugin.paused, s.id)
		return types.ActionPause
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseTrailers(int) types.Action {
	if s.mode == "trailers" {
		if err := proxywasm.SetHttpResponseTrailers([][2]string{{"x-set-trailer", "s"}}); err != nil {
			proxywasm.LogErrorf("set response trailers: %v", err)
		}
	}
	return types.ActionContinue
}

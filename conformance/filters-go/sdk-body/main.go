// Conformance filter `sdk-body`, built on barbacane's Go SDK (sdk-tinygo).
//
// Configuration: {"request": mode, "response": mode, "value": text} where mode is "append",
// "prepend", "replace" or "none". For a side with a mode other than "none" the filter pauses
// every body chunk (the host buffers and calls again with the cumulative size) and at the end
// of the stream reads the whole body and changes it with value. It records the request body
// calls as "size:eos" in `x-request-body-calls` and the body it read in `x-request-body-seen`
// (response headers).
//
// Trailers: on request trailers it reports `<count>:<value of x-client-trailer>` in the
// response header `x-request-trailers` and adds the request trailer `x-go-trailers: seen`; on
// response trailers it stores `<count>:<value of x-upstream-trailer>` in the shared data
// `go-response-trailers` (reported as `x-last-response-trailers` on the response headers of
// later requests) and adds the response trailer `x-go-trailers: seen`.
package main

import (
	"strconv"
	"strings"

	"github.com/barbacane/sdk-tinygo/config"
	"github.com/barbacane/sdk-tinygo/proxywasm"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type settings struct {
	Request  string `json:"request"`
	Response string `json:"response"`
	Value    string `json:"value"`
}

type plugin struct {
	types.DefaultPluginContext
	settings settings
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	p.settings = settings{Request: "none", Response: "none"}
	if err := config.Load(&p.settings); err != nil {
		return types.OnPluginStartStatusFailed
	}
	for _, mode := range []string{p.settings.Request, p.settings.Response} {
		switch mode {
		case "append", "prepend", "replace", "none":
		default:
			proxywasm.LogErrorf("unknown mode %q", mode)
			return types.OnPluginStartStatusFailed
		}
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext {
	return &stream{settings: &p.settings}
}

type stream struct {
	types.DefaultHttpContext
	settings *settings
	calls    []string
	seen     string
	trailers string
}

type bodyOps struct {
	get                      func(int, int) ([]byte, error)
	replace, append, prepend func([]byte) error
}

var (
	requestOps  = bodyOps{proxywasm.GetHttpRequestBody, proxywasm.ReplaceHttpRequestBody, proxywasm.AppendHttpRequestBody, proxywasm.PrependHttpRequestBody}
	responseOps = bodyOps{proxywasm.GetHttpResponseBody, proxywasm.ReplaceHttpResponseBody, proxywasm.AppendHttpResponseBody, proxywasm.PrependHttpResponseBody}
)

// change buffers until the end of the stream, then applies mode; it returns the body read.
func change(ops bodyOps, mode, value string, size int, eos bool) (types.Action, string) {
	if mode == "none" {
		return types.ActionContinue, ""
	}
	if !eos {
		return types.ActionPause, ""
	}
	body, err := ops.get(0, size)
	if err != nil {
		proxywasm.LogErrorf("reading the body: %v", err)
	}
	switch mode {
	case "append":
		err = ops.append([]byte(value))
	case "prepend":
		err = ops.prepend([]byte(value))
	case "replace":
		err = ops.replace([]byte(value))
	}
	if err != nil {
		proxywasm.LogErrorf("%s: %v", mode, err)
	}
	return types.ActionContinue, string(body)
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	if s.settings.Request != "none" {
		_ = proxywasm.RemoveHttpRequestHeader("content-length")
	}
	return types.ActionContinue
}

func (s *stream) OnHttpRequestBody(size int, eos bool) types.Action {
	s.calls = append(s.calls, strconv.Itoa(size)+":"+strconv.FormatBool(eos))
	action, body := change(requestOps, s.settings.Request, s.settings.Value, size, eos)
	if eos {
		s.seen = body
	}
	return action
}

// describeTrailers returns "<count>:<value of name>" for the trailers read with get and
// getOne, or the error.
func describeTrailers(get func() ([][2]string, error), getOne func(string) (string, error), name string) string {
	trailers, err := get()
	if err != nil {
		return err.Error()
	}
	value, err := getOne(name)
	if err != nil {
		value = err.Error()
	}
	return strconv.Itoa(len(trailers)) + ":" + value
}

func (s *stream) OnHttpRequestTrailers(int) types.Action {
	s.trailers = describeTrailers(proxywasm.GetHttpRequestTrailers, proxywasm.GetHttpRequestTrailer, "x-client-trailer")
	if err := proxywasm.AddHttpRequestTrailer("x-go-trailers", "seen"); err != nil {
		s.trailers += " add:" + err.Error()
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	if s.settings.Response != "none" {
		_ = proxywasm.RemoveHttpResponseHeader("content-length")
	}
	if len(s.calls) > 0 {
		_ = proxywasm.AddHttpResponseHeader("x-request-body-calls", strings.Join(s.calls, ","))
		_ = proxywasm.AddHttpResponseHeader("x-request-body-seen", s.seen)
	}
	if s.trailers != "" {
		_ = proxywasm.AddHttpResponseHeader("x-request-trailers", s.trailers)
	}
	if last, _, err := proxywasm.GetSharedData("go-response-trailers"); err == nil {
		_ = proxywasm.AddHttpResponseHeader("x-last-response-trailers", string(last))
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseBody(size int, eos bool) types.Action {
	action, _ := change(responseOps, s.settings.Response, s.settings.Value, size, eos)
	return action
}

func (s *stream) OnHttpResponseTrailers(int) types.Action {
	seen := describeTrailers(proxywasm.GetHttpResponseTrailers, proxywasm.GetHttpResponseTrailer, "x-upstream-trailer")
	if err := proxywasm.AddHttpResponseTrailer("x-go-trailers", "seen"); err != nil {
		seen += " add:" + err.Error()
	}
	if err := proxywasm.SetSharedData("go-response-trailers", []byte(seen), 0); err != nil {
		proxywasm.LogErrorf("storing the trailers: %v", err)
	}
	return types.ActionContinue
}

// Conformance filter `sdk-props`, built on barbacane's Go SDK (sdk-tinygo): properties and
// filter state.
//
// No configuration. On request headers it reads request.path, request.method,
// request.headers.x-a, source.address, source.port (int), plugin_name and xds.route_name, and
// the map request.headers; then it stores "from-go" under the property `go.key` (filter
// state). On response headers it reads `go.key` back and response.code (int), and reports
// everything as `x-prop-*` response headers (`<absent>` for a missing property, `<error:…>`
// for another failure).
package main

import (
	"errors"
	"strconv"

	"github.com/barbacane/sdk-tinygo/proxywasm"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct {
	types.DefaultPluginContext
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext {
	return &stream{}
}

type stream struct {
	types.DefaultHttpContext
	props [][2]string
}

func describe(value string, err error) string {
	if errors.Is(err, types.ErrNotFound) {
		return "<absent>"
	}
	if err != nil {
		return "<error:" + err.Error() + ">"
	}
	return value
}

func (s *stream) str(header string, path ...string) {
	v, err := proxywasm.GetPropertyString(path)
	s.props = append(s.props, [2]string{header, describe(v, err)})
}

func (s *stream) int(header string, path ...string) {
	v, err := proxywasm.GetPropertyInt64(path)
	s.props = append(s.props, [2]string{header, describe(strconv.FormatInt(v, 10), err)})
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.str("x-prop-request-path", "request", "path")
	s.str("x-prop-request-method", "request", "method")
	s.str("x-prop-request-header-x-a", "request", "headers", "x-a")
	s.str("x-prop-source-address", "source", "address")
	s.int("x-prop-source-port", "source", "port")
	s.str("x-prop-plugin-name", "plugin_name")
	s.str("x-prop-route-name", "xds", "route_name")
	s.str("x-prop-no-such", "no", "such")
	headers, err := proxywasm.GetPropertyMap([]string{"request", "headers"})
	value := ""
	for _, h := range headers {
		if h[0] == "x-a" {
			value = h[1]
		}
	}
	s.props = append(s.props, [2]string{"x-prop-headers-map-x-a", describe(value, err)})
	if err := proxywasm.SetProperty([]string{"go", "key"}, []byte("from-go")); err != nil {
		proxywasm.LogErrorf("set_property: %v", err)
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	s.str("x-prop-go-key", "go", "key")
	s.int("x-prop-response-code", "response", "code")
	for _, p := range s.props {
		_ = proxywasm.AddHttpResponseHeader(p[0], p[1])
	}
	return types.ActionContinue
}

// Package proxywasm is barbacane's SDK for writing gateway filters in Go as Proxy-Wasm modules
// (ABI 0.2.1), built with Go 1.24 or later (or TinyGo) for wasip1:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o filter.wasm .
//
// The same module runs in barbacane and in Envoy. The package has no third-party
// dependencies. Its names follow the upstream Go SDK (proxy-wasm/proxy-wasm-go-sdk), so a
// filter written for Envoy ports by changing its imports.
//
// A filter registers its VMContext from init(); the host then creates a PluginContext per
// configured plugin and an HttpContext per request:
//
//	func init() { proxywasm.SetVMContext(&vm{}) }
//
//	type vm struct{ types.DefaultVMContext }
//
//	func (*vm) NewPluginContext(uint32) types.PluginContext { return &plugin{} }
//
//	type plugin struct{ types.DefaultPluginContext }
//
//	func (*plugin) NewHttpContext(uint32) types.HttpContext { return &stream{} }
//
//	type stream struct{ types.DefaultHttpContext }
//
//	func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
//		_ = proxywasm.AddHttpRequestHeader("x-hello", "go")
//		return types.ActionContinue
//	}
//
// The functions of this package call the host and act on the context of the callback being
// run (the stream, or the plugin for OnPluginStart, OnTick, OnQueueReady and callout
// callbacks). They return the host's status as a types.Status error; compare it with
// errors.Is(err, types.ErrNotFound) and so on.
//
// Callbacks run one at a time on the module's single thread: do not start goroutines that
// call the host, and do not block.
//
// Outside wasip1 (e.g. `go test` on linux/amd64) the host functions are stubs that answer
// types.ErrUnimplemented, so code using this package compiles and its pure logic can be
// tested natively.
package proxywasm

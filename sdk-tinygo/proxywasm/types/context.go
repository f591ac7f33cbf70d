package types

// A module has one VMContext; it creates one PluginContext per plugin (root context) that
// uses the module, and each PluginContext creates one HttpContext per HTTP stream:
//
//	VMContext ──1:N── PluginContext ──1:N── HttpContext
//	(the module)      (a middleware's        (one request and
//	                   configuration)         its response)
//
// Embed the Default* types to implement only the callbacks a filter needs.

// VMContext is the module's entry point, registered with proxywasm.SetVMContext from init().
type VMContext interface {
	// OnVMStart runs once per plugin when the VM starts; the VM configuration
	// (proxywasm.GetVMConfiguration) is readable. OnVMStartStatusFailed refuses the plugin.
	OnVMStart(vmConfigurationSize int) OnVMStartStatus

	// NewPluginContext creates the plugin (root) context with this id.
	NewPluginContext(contextID uint32) PluginContext
}

// PluginContext is a plugin configured on the gateway (a root context). Ticks, queue
// notifications and the completions of its HTTP callouts are delivered to it.
type PluginContext interface {
	// OnPluginStart runs when the plugin is configured; the plugin configuration
	// (proxywasm.GetPluginConfiguration) is readable. OnPluginStartStatusFailed refuses it.
	OnPluginStart(pluginConfigurationSize int) OnPluginStartStatus

	// OnPluginDone runs before the host deletes the plugin. Returning false asks the host to
	// wait until the plugin calls proxywasm.PluginDone.
	OnPluginDone() bool

	// OnQueueReady runs when an item was enqueued on a queue this plugin registered.
	OnQueueReady(queueID uint32)

	// OnTick runs every period set with proxywasm.SetTickPeriodMilliSeconds.
	OnTick()

	// NewHttpContext creates the context of a new HTTP stream. It must not return nil.
	NewHttpContext(contextID uint32) HttpContext
}

// HttpContext handles one HTTP stream: its request and then its response.
type HttpContext interface {
	// OnHttpRequestHeaders runs when the request headers arrive; endOfStream is true when no
	// body follows.
	OnHttpRequestHeaders(numHeaders int, endOfStream bool) Action

	// OnHttpRequestBody runs per request body chunk. While the filter returns ActionPause the
	// host buffers, and bodySize is the size of everything buffered so far.
	OnHttpRequestBody(bodySize int, endOfStream bool) Action

	// OnHttpRequestTrailers runs when request trailers arrive.
	OnHttpRequestTrailers(numTrailers int) Action

	// OnHttpResponseHeaders runs when the response headers arrive (from the upstream or a
	// local reply).
	OnHttpResponseHeaders(numHeaders int, endOfStream bool) Action

	// OnHttpResponseBody runs per response body chunk, as OnHttpRequestBody.
	OnHttpResponseBody(bodySize int, endOfStream bool) Action

	// OnHttpResponseTrailers runs when response trailers arrive.
	OnHttpResponseTrailers(numTrailers int) Action

	// OnHttpStreamDone runs when the stream is over (the access-log phase); the request and
	// response headers are still readable.
	OnHttpStreamDone()
}

// DefaultVMContext is a VMContext that accepts the VM and creates DefaultPluginContexts.
type DefaultVMContext struct{}

// DefaultPluginContext is a PluginContext that accepts its configuration and ignores ticks
// and queues. Its NewHttpContext returns a DefaultHttpContext.
type DefaultPluginContext struct{}

// DefaultHttpContext is an HttpContext that lets everything through.
type DefaultHttpContext struct{}

// OnVMStart accepts the VM.
func (*DefaultVMContext) OnVMStart(int) OnVMStartStatus { return OnVMStartStatusOK }

// NewPluginContext returns a DefaultPluginContext.
func (*DefaultVMContext) NewPluginContext(uint32) PluginContext { return &DefaultPluginContext{} }

// OnPluginStart accepts the configuration.
func (*DefaultPluginContext) OnPluginStart(int) OnPluginStartStatus {
	return OnPluginStartStatusOK
}

// OnPluginDone lets the host delete the plugin.
func (*DefaultPluginContext) OnPluginDone() bool { return true }

// OnQueueReady does nothing.
func (*DefaultPluginContext) OnQueueReady(uint32) {}

// OnTick does nothing.
func (*DefaultPluginContext) OnTick() {}

// NewHttpContext returns a DefaultHttpContext.
func (*DefaultPluginContext) NewHttpContext(uint32) HttpContext { return &DefaultHttpContext{} }

// OnHttpRequestHeaders continues.
func (*DefaultHttpContext) OnHttpRequestHeaders(int, bool) Action { return ActionContinue }

// OnHttpRequestBody continues.
func (*DefaultHttpContext) OnHttpRequestBody(int, bool) Action { return ActionContinue }

// OnHttpRequestTrailers continues.
func (*DefaultHttpContext) OnHttpRequestTrailers(int) Action { return ActionContinue }

// OnHttpResponseHeaders continues.
func (*DefaultHttpContext) OnHttpResponseHeaders(int, bool) Action { return ActionContinue }

// OnHttpResponseBody continues.
func (*DefaultHttpContext) OnHttpResponseBody(int, bool) Action { return ActionContinue }

// OnHttpResponseTrailers continues.
func (*DefaultHttpContext) OnHttpResponseTrailers(int) Action { return ActionContinue }

// OnHttpStreamDone does nothing.
func (*DefaultHttpContext) OnHttpStreamDone() {}

var (
	_ VMContext     = (*DefaultVMContext)(nil)
	_ PluginContext = (*DefaultPluginContext)(nil)
	_ HttpContext   = (*DefaultHttpContext)(nil)
)

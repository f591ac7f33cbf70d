//go:build wasip1

package proxywasm

import (
	"github.com/barbacane/sdk-tinygo/proxywasm/internal/abi"
)

// The module's exports: the ABI marker, the allocator and the callbacks the host calls. With
// `-buildmode=c-shared` the toolchain also exports `_initialize`, which starts the Go runtime
// and runs init() (where the filter calls SetVMContext).

//go:wasmexport proxy_abi_version_0_2_1
func proxyABIVersion() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) *byte {
	return abi.Allocate(size)
}

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(contextID, parentID uint32) {
	state.onContextCreate(contextID, parentID)
}

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootID uint32, vmConfigurationSize int32) bool {
	return state.onVMStart(rootID, int(vmConfigurationSize))
}

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootID uint32, pluginConfigurationSize int32) bool {
	return state.onConfigure(rootID, int(pluginConfigurationSize))
}

//go:wasmexport proxy_on_tick
func proxyOnTick(rootID uint32) {
	state.onTick(rootID)
}

//go:wasmexport proxy_on_queue_ready
func proxyOnQueueReady(rootID, queueID uint32) {
	state.onQueueReady(rootID, queueID)
}

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(contextID uint32, numHeaders int32, endOfStream bool) uint32 {
	return uint32(state.onRequestHeaders(contextID, int(numHeaders), endOfStream))
}

//go:wasmexport proxy_on_request_body
func proxyOnRequestBody(contextID uint32, bodySize int32, endOfStream bool) uint32 {
	return uint32(state.onRequestBody(contextID, int(bodySize), endOfStream))
}

//go:wasmexport proxy_on_request_trailers
func proxyOnRequestTrailers(contextID uint32, numTrailers int32) uint32 {
	return uint32(state.onRequestTrailers(contextID, int(numTrailers)))
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(contextID uint32, numHeaders int32, endOfStream bool) uint32 {
	return uint32(state.onResponseHeaders(contextID, int(numHeaders), endOfStream))
}

//go:wasmexport proxy_on_response_body
func proxyOnResponseBody(contextID uint32, bodySize int32, endOfStream bool) uint32 {
	return uint32(state.onResponseBody(contextID, int(bodySize), endOfStream))
}

//go:wasmexport proxy_on_response_trailers
func proxyOnResponseTrailers(contextID uint32, numTrailers int32) uint32 {
	return uint32(state.onResponseTrailers(contextID, int(numTrailers)))
}

//go:wasmexport proxy_on_http_call_response
func proxyOnHttpCallResponse(rootID, calloutID uint32, numHeaders, bodySize, numTrailers int32) {
	state.onHttpCallResponse(rootID, calloutID, int(numHeaders), int(bodySize), int(numTrailers))
}

//go:wasmexport proxy_on_done
func proxyOnDone(contextID uint32) bool {
	return state.onDone(contextID)
}

//go:wasmexport proxy_on_log
func proxyOnLog(contextID uint32) {
	state.onLog(contextID)
}

//go:wasmexport proxy_on_delete
func proxyOnDelete(contextID uint32) {
	state.onDelete(contextID)
}

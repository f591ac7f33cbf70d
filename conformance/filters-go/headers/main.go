// Conformance filter `headers`, written in Go against the bare Proxy-Wasm ABI 0.2.0 the way the
// official Go SDK (proxy-wasm/proxy-wasm-go-sdk, Go >= 1.24) talks to its host: imports with
// //go:wasmimport, callbacks with //go:wasmexport, built with
// `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared` (so `_initialize` runs the Go runtime
// and init(), where the contexts are registered).
//
// Behaviour mirrors conformance/filters/headers (Rust): the plugin configuration is
// "name: value"; that header is added to every request, and `x-conformance: go-headers` is set
// on every response. Each step is logged with proxy_log. on_configure also goes through WASI via
// the Go runtime: time.Now() (clock_time_get) and fmt.Println (fd_write on stdout).
package main

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unsafe"
)

func main() {}

// ---------------------------------------------------------------------------------------------
// ABI: enums

type status = int32

const (
	statusOK       status = 0
	statusNotFound status = 1
)

const (
	logInfo  int32 = 2
	logError int32 = 4
)

const (
	bufferPluginConfiguration int32 = 7
	mapRequestHeaders         int32 = 0
	mapResponseHeaders        int32 = 2
	actionContinue            int32 = 0
)

// ---------------------------------------------------------------------------------------------
// ABI: host functions (module `env`). Out-pointers to guest-allocated blobs are passed as
// unsafe.Pointer to a *byte, as the Go SDK does (**byte is not a wasmimport parameter type).

//go:wasmimport env proxy_log
func proxyLog(level int32, msg *byte, msgLen int32) status

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bufferType, start, maxSize int32, data unsafe.Pointer, size *int32) status

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(mapType int32, key *byte, keyLen int32, value *byte, valueLen int32) status

//go:wasmimport env proxy_replace_header_map_value
func proxyReplaceHeaderMapValue(mapType int32, key *byte, keyLen int32, value *byte, valueLen int32) status

// ---------------------------------------------------------------------------------------------
// ABI: marker and allocator

//go:wasmexport proxy_abi_version_0_2_0
func proxyABIVersion() {}

// live keeps every block handed to the host reachable from a Go root until the guest has taken
// it over. Go's GC never moves objects, but it would free a block that nothing in Go refers to:
// between proxy_on_memory_allocate returning and the host's pointer landing in a Go variable,
// the only reference is in the host's hands (and the host writes that pointer into guest memory
// without a write barrier). Each hostcall that returns a blob takes its block with take(), which
// also drops every other entry (blocks the host allocated but did not hand back).
var live = map[*byte][]byte{}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) *byte {
	if size == 0 {
		size = 1
	}
	buf := make([]byte, size)
	live[&buf[0]] = buf
	return &buf[0]
}

// take returns the blob the host wrote at (ptr, size) as a Go slice (which now keeps the block
// alive) and releases the allocator's references.
func take(ptr *byte, size int32) []byte {
	var out []byte
	if ptr != nil && size > 0 {
		out = unsafe.Slice(ptr, size)
	}
	clear(live)
	return out
}

// ---------------------------------------------------------------------------------------------
// Small wrappers, like the SDK's proxywasm package.

func bytePtr(s string) *byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.StringData(s)
}

func logf(level int32, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	proxyLog(level, bytePtr(msg), int32(len(msg)))
}

func getPluginConfiguration() ([]byte, status) {
	var ptr *byte
	var size int32
	st := proxyGetBufferBytes(bufferPluginConfiguration, 0, math.MaxInt32, unsafe.Pointer(&ptr), &size)
	data := take(ptr, size)
	return data, st
}

func addHeader(mapType int32, name, value string) status {
	return proxyAddHeaderMapValue(mapType, bytePtr(name), int32(len(name)), bytePtr(value), int32(len(value)))
}

func replaceHeader(mapType int32, name, value string) status {
	return proxyReplaceHeaderMapValue(mapType, bytePtr(name), int32(len(name)), bytePtr(value), int32(len(value)))
}

// ---------------------------------------------------------------------------------------------
// Contexts, registered in init() as the Go SDK's proxywasm.SetVMContext does.

type pluginContext struct {
	name, value string
}

type httpContext struct {
	plugin *pluginContext
}

var (
	newPluginContext func(id uint32) *pluginContext
	plugins          = map[uint32]*pluginContext{}
	streams          = map[uint32]*httpContext{}
)

func init() {
	newPluginContext = func(uint32) *pluginContext { return &pluginContext{} }
}

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(id, parent uint32) {
	if parent == 0 {
		if newPluginContext == nil {
			panic("no plugin context registered: init() did not run")
		}
		plugins[id] = newPluginContext(id)
		return
	}
	plugin, ok := plugins[parent]
	if !ok {
		panic("invalid context id on proxy_on_context_create")
	}
	streams[id] = &httpContext{plugin: plugin}
}

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(_ uint32, _ int32) bool {
	return true
}

//go:wasmexport proxy_on_configure
func proxyOnConfigure(id uint32, size int32) bool {
	plugin, ok := plugins[id]
	if !ok {
		panic("invalid context on proxy_on_configure")
	}
	started := time.Now()
	config, st := getPluginConfiguration()
	if st != statusOK && st != statusNotFound {
		logf(logError, "cannot read the configuration: status %d", st)
		return false
	}
	if len(config) == 0 {
		logf(logError, "no configuration")
		return false
	}
	text := string(config)
	name, value, found := strings.Cut(text, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !found || name == "" {
		logf(logError, "configuration must be 'name: value', got %q", text)
		return false
	}
	plugin.name, plugin.value = name, value
	fmt.Println("go filter configured")
	logf(logInfo, "configured header %s (%d bytes, clock year %d)", name, size, started.Year())
	return true
}

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(id uint32, numHeaders int32, _ bool) int32 {
	stream, ok := streams[id]
	if !ok {
		panic("invalid context on proxy_on_request_headers")
	}
	if st := addHeader(mapRequestHeaders, stream.plugin.name, stream.plugin.value); st != statusOK {
		logf(logError, "adding request header %s failed: status %d", stream.plugin.name, st)
	} else {
		logf(logInfo, "request headers (%d): added %s", numHeaders, stream.plugin.name)
	}
	return actionContinue
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(id uint32, numHeaders int32, _ bool) int32 {
	if _, ok := streams[id]; !ok {
		panic("invalid context on proxy_on_response_headers")
	}
	if st := replaceHeader(mapResponseHeaders, "x-conformance", "go-headers"); st != statusOK {
		logf(logError, "setting x-conformance failed: status %d", st)
	} else {
		logf(logInfo, "response headers (%d): set x-conformance", numHeaders)
	}
	return actionContinue
}

//go:wasmexport proxy_on_done
func proxyOnDone(uint32) bool {
	return true
}

//go:wasmexport proxy_on_log
func proxyOnLog(uint32) {}

//go:wasmexport proxy_on_delete
func proxyOnDelete(id uint32) {
	if _, ok := streams[id]; ok {
		delete(streams, id)
	} else if _, ok := plugins[id]; ok {
		delete(plugins, id)
	} else {
		panic("invalid context on proxy_on_delete")
	}
}

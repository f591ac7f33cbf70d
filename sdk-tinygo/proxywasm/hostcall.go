package proxywasm

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/barbacane/sdk-tinygo/proxywasm/internal/abi"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

// ---------------------------------------------------------------------------------------------
// Plumbing

func status(code uint32) error {
	return types.Status(code).AsError()
}

// isStub says whether err is the answer of the native stubs (not a real host).
func isStub(err error) bool {
	return runtime.GOOS != "wasip1" && err == types.ErrUnimplemented
}

func stringPtr(s string) *byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.StringData(s)
}

func bytesPtr(b []byte) *byte {
	if len(b) == 0 {
		return nil
	}
	return &b[0]
}

// blob calls a host function with a (**data, *size) out-parameter pair and takes the block.
func blob(call func(data unsafe.Pointer, size *int32) uint32) ([]byte, error) {
	var ptr *byte
	var size int32
	code := call(unsafe.Pointer(&ptr), &size)
	data := abi.Take(ptr, size)
	return data, status(code)
}

// ---------------------------------------------------------------------------------------------
// Logging

func logString(level types.LogLevel, msg string) {
	abi.ProxyLog(uint32(level), stringPtr(msg), int32(len(msg)))
}

// LogTrace logs msg at trace level.
func LogTrace(msg string) { logString(types.LogLevelTrace, msg) }

// LogTracef logs a formatted message at trace level.
func LogTracef(format string, args ...any) {
	logString(types.LogLevelTrace, fmt.Sprintf(format, args...))
}

// LogDebug logs msg at debug level.
func LogDebug(msg string) { logString(types.LogLevelDebug, msg) }

// LogDebugf logs a formatted message at debug level.
func LogDebugf(format string, args ...any) {
	logString(types.LogLevelDebug, fmt.Sprintf(format, args...))
}

// LogInfo logs msg at info level.
func LogInfo(msg string) { logString(types.LogLevelInfo, msg) }

// LogInfof logs a formatted message at info level.
func LogInfof(format string, args ...any) {
	logString(types.LogLevelInfo, fmt.Sprintf(format, args...))
}

// LogWarn logs msg at warn level.
func LogWarn(msg string) { logString(types.LogLevelWarn, msg) }

// LogWarnf logs a formatted message at warn level.
func LogWarnf(format string, args ...any) {
	logString(types.LogLevelWarn, fmt.Sprintf(format, args...))
}

// LogError logs msg at error level. A plugin that refuses its configuration should say why
// at this level: barbacane quotes it in the compile error.
func LogError(msg string) { logString(types.LogLevelError, msg) }

// LogErrorf logs a formatted message at error level.
func LogErrorf(format string, args ...any) {
	logString(types.LogLevelError, fmt.Sprintf(format, args...))
}

// LogCritical logs msg at critical level.
func LogCritical(msg string) { logString(types.LogLevelCritical, msg) }

// LogCriticalf logs a formatted message at critical level.
func LogCriticalf(format string, args ...any) {
	logString(types.LogLevelCritical, fmt.Sprintf(format, args...))
}

// GetLogLevel returns the host's current log level: lines below it are dropped.
func GetLogLevel() (types.LogLevel, error) {
	var level uint32
	err := status(abi.ProxyGetLogLevel(&level))
	return types.LogLevel(level), err
}

// ---------------------------------------------------------------------------------------------
// Configuration, time, timers, contexts

// GetVMConfiguration returns the VM configuration (readable in OnVMStart).
func GetVMConfiguration() ([]byte, error) {
	return getBuffer(types.BufferTypeVMConfiguration, 0, math.MaxInt32)
}

// GetPluginConfiguration returns the plugin configuration (readable in OnPluginStart). In
// barbacane it is the middleware's `config` as JSON text (a YAML string is passed as is).
func GetPluginConfiguration() ([]byte, error) {
	return getBuffer(types.BufferTypePluginConfiguration, 0, math.MaxInt32)
}

// GetCurrentTimeNanoseconds returns the host's wall clock in nanoseconds since the Unix epoch.
// (time.Now also works: the Go runtime reads WASI's clock.)
func GetCurrentTimeNanoseconds() (int64, error) {
	var nanos uint64
	err := status(abi.ProxyGetCurrentTimeNanoseconds(&nanos))
	return int64(nanos), err
}

// SetTickPeriodMilliSeconds makes the host call the plugin's OnTick every period
// milliseconds; 0 stops the ticks.
func SetTickPeriodMilliSeconds(period uint32) error {
	return status(abi.ProxySetTickPeriodMilliseconds(period))
}

// SetEffectiveContext makes the following host calls of this callback act on another context
// of this module, e.g. a paused stream from OnTick. Callout callbacks need not call it: the
// SDK selects the dispatching context itself.
func SetEffectiveContext(contextID uint32) error {
	return status(abi.ProxySetEffectiveContext(contextID))
}

// PluginDone tells the host that a plugin whose OnPluginDone returned false has finished.
func PluginDone() error {
	return status(abi.ProxyDone())
}

// ---------------------------------------------------------------------------------------------
// Buffers (bodies)

func getBuffer(buffer types.BufferType, start, maxSize int) ([]byte, error) {
	if start < 0 || maxSize < 0 || start > math.MaxInt32 || maxSize > math.MaxInt32 {
		return nil, types.ErrBadArgument
	}
	data, err := blob(func(data unsafe.Pointer, size *int32) uint32 {
		return abi.ProxyGetBufferBytes(uint32(buffer), int32(start), int32(maxSize), data, size)
	})
	return data, err
}

func setBuffer(buffer types.BufferType, start, size int, data []byte) error {
	return status(abi.ProxySetBufferBytes(uint32(buffer), int32(start), int32(size), bytesPtr(data), int32(len(data))))
}

// GetHttpRequestBody returns up to maxSize bytes of the (buffered) request body from start.
func GetHttpRequestBody(start, maxSize int) ([]byte, error) {
	return getBuffer(types.BufferTypeHttpRequestBody, start, maxSize)
}

// ReplaceHttpRequestBody replaces the whole (buffered) request body. The host frames the new
// body; a filter that changes its length may remove content-length itself.
func ReplaceHttpRequestBody(body []byte) error {
	return setBuffer(types.BufferTypeHttpRequestBody, 0, math.MaxInt32, body)
}

// AppendHttpRequestBody appends data to the request body.
func AppendHttpRequestBody(data []byte) error {
	return setBuffer(types.BufferTypeHttpRequestBody, math.MaxInt32, 0, data)
}

// PrependHttpRequestBody inserts data before the request body.
func PrependHttpRequestBody(data []byte) error {
	return setBuffer(types.BufferTypeHttpRequestBody, 0, 0, data)
}

// GetHttpResponseBody returns up to maxSize bytes of the (buffered) response body from start.
func GetHttpResponseBody(start, maxSize int) ([]byte, error) {
	return getBuffer(types.BufferTypeHttpResponseBody, start, maxSize)
}

// ReplaceHttpResponseBody replaces the whole (buffered) response body.
func ReplaceHttpResponseBody(body []byte) error {
	return setBuffer(types.BufferTypeHttpResponseBody, 0, math.MaxInt32, body)
}

// AppendHttpResponseBody appends data to the response body.
func AppendHttpResponseBody(data []byte) error {
	return setBuffer(types.BufferTypeHttpResponseBody, math.MaxInt32, 0, data)
}

// PrependHttpResponseBody inserts data before the response body.
func PrependHttpResponseBody(data []byte) error {
	return setBuffer(types.BufferTypeHttpResponseBody, 0, 0, data)
}

// GetHttpCallResponseBody returns up to maxSize bytes of a callout's response body from start
// (readable in the callout's callback).
func GetHttpCallResponseBody(start, maxSize int) ([]byte, error) {
	return getBuffer(types.BufferTypeHttpCallResponseBody, start, maxSize)
}

// ---------------------------------------------------------------------------------------------
// Header maps

func getMap(m types.MapType) ([][2]string, error) {
	data, err := blob(func(data unsafe.Pointer, size *int32) uint32 {
		return abi.ProxyGetHeaderMapPairs(uint32(m), data, size)
	})
	if err != nil {
		return nil, err
	}
	return DeserializeMap(data)
}

func setMap(m types.MapType, pairs [][2]string) error {
	data := SerializeMap(pairs)
	return status(abi.ProxySetHeaderMapPairs(uint32(m), bytesPtr(data), int32(len(data))))
}

func getMapValue(m types.MapType, key string) (string, error) {
	data, err := blob(func(data unsafe.Pointer, size *int32) uint32 {
		return abi.ProxyGetHeaderMapValue(uint32(m), stringPtr(key), int32(len(key)), data, size)
	})
	return string(data), err
}

func addMapValue(m types.MapType, key, value string) error {
	return status(abi.ProxyAddHeaderMapValue(uint32(m), stringPtr(key), int32(len(key)), stringPtr(value), int32(len(value))))
}

func replaceMapValue(m types.MapType, key, value string) error {
	return status(abi.ProxyReplaceHeaderMapValue(uint32(m), stringPtr(key), int32(len(key)), stringPtr(value), int32(len(value))))
}

func removeMapValue(m types.MapType, key string) error {
	return status(abi.ProxyRemoveHeaderMapValue(uint32(m), stringPtr(key), int32(len(key))))
}

// GetHttpRequestHeaders returns the request headers in order, pseudo-headers (":method",
// ":path", ":authority", ":scheme") included.
func GetHttpRequestHeaders() ([][2]string, error) { return getMap(types.MapTypeHttpRequestHeaders) }

// SetHttpRequestHeaders replaces all request headers.
func SetHttpRequestHeaders(headers [][2]string) error {
	return setMap(types.MapTypeHttpRequestHeaders, headers)
}

// GetHttpRequestHeader returns the first value of a request header; types.ErrNotFound if
// it is absent.
func GetHttpRequestHeader(key string) (string, error) {
	return getMapValue(types.MapTypeHttpRequestHeaders, key)
}

// AddHttpRequestHeader adds a request header value (keeping existing ones).
func AddHttpRequestHeader(key, value string) error {
	return addMapValue(types.MapTypeHttpRequestHeaders, key, value)
}

// ReplaceHttpRequestHeader sets a request header, replacing its values.
func ReplaceHttpRequestHeader(key, value string) error {
	return replaceMapValue(types.MapTypeHttpRequestHeaders, key, value)
}

// RemoveHttpRequestHeader removes a request header (absent is not an error).
func RemoveHttpRequestHeader(key string) error {
	return removeMapValue(types.MapTypeHttpRequestHeaders, key)
}

// GetHttpRequestTrailers returns the request trailers.
func GetHttpRequestTrailers() ([][2]string, error) {
	return getMap(types.MapTypeHttpRequestTrailers)
}

// SetHttpRequestTrailers replaces all request trailers.
func SetHttpRequestTrailers(trailers [][2]string) error {
	return setMap(types.MapTypeHttpRequestTrailers, trailers)
}

// GetHttpRequestTrailer returns the first value of a request trailer.
func GetHttpRequestTrailer(key string) (string, error) {
	return getMapValue(types.MapTypeHttpRequestTrailers, key)
}

// AddHttpRequestTrailer adds a request trailer value.
func AddHttpRequestTrailer(key, value string) error {
	return addMapValue(types.MapTypeHttpRequestTrailers, key, value)
}

// ReplaceHttpRequestTrailer sets a request trailer.
func ReplaceHttpRequestTrailer(key, value string) error {
	return replaceMapValue(types.MapTypeHttpRequestTrailers, key, value)
}

// RemoveHttpRequestTrailer removes a request trailer.
func RemoveHttpRequestTrailer(key string) error {
	return removeMapValue(types.MapTypeHttpRequestTrailers, key)
}

// GetHttpResponseHeaders returns the response headers, ":status" included.
func GetHttpResponseHeaders() ([][2]string, error) {
	return getMap(types.MapTypeHttpResponseHeaders)
}

// SetHttpResponseHeaders replaces all response headers.
func SetHttpResponseHeaders(headers [][2]string) error {
	return setMap(types.MapTypeHttpResponseHeaders, headers)
}

// GetHttpResponseHeader returns the first value of a response header; types.ErrNotFound if
// it is absent.
func GetHttpResponseHeader(key string) (string, error) {
	return getMapValue(types.MapTypeHttpResponseHeaders, key)
}

// AddHttpResponseHeader adds a response header value.
func AddHttpResponseHeader(key, value string) error {
	return addMapValue(types.MapTypeHttpResponseHeaders, key, value)
}

// ReplaceHttpResponseHeader sets a response header, replacing its values.
func ReplaceHttpResponseHeader(key, value string) error {
	return replaceMapValue(types.MapTypeHttpResponseHeaders, key, value)
}

// RemoveHttpResponseHeader removes a response header.
func RemoveHttpResponseHeader(key string) error {
	return removeMapValue(types.MapTypeHttpResponseHeaders, key)
}

// GetHttpResponseTrailers returns the response trailers.
func GetHttpResponseTrailers() ([][2]string, error) {
	return getMap(types.MapTypeHttpResponseTrailers)
}

// SetHttpResponseTrailers replaces all response trailers.
func SetHttpResponseTrailers(trailers [][2]string) error {
	return setMap(types.MapTypeHttpResponseTrailers, trailers)
}

// GetHttpResponseTrailer returns the first value of a response trailer.
func GetHttpResponseTrailer(key string) (string, error) {
	return getMapValue(types.MapTypeHttpResponseTrailers, key)
}

// AddHttpResponseTrailer adds a response trailer value.
func AddHttpResponseTrailer(key, value string) error {
	return addMapValue(types.MapTypeHttpResponseTrailers, key, value)
}

// ReplaceHttpResponseTrailer sets a response trailer.
func ReplaceHttpResponseTrailer(key, value string) error {
	return replaceMapValue(types.MapTypeHttpResponseTrailers, key, value)
}

// RemoveHttpResponseTrailer removes a response trailer.
func RemoveHttpResponseTrailer(key string) error {
	return removeMapValue(types.MapTypeHttpResponseTrailers, key)
}

// GetHttpCallResponseHeaders returns a callout's response headers, ":status" included
// (readable in the callout's callback).
func GetHttpCallResponseHeaders() ([][2]string, error) {
	return getMap(types.MapTypeHttpCallResponseHeaders)
}

// GetHttpCallResponseTrailers returns a callout's response trailers.
func GetHttpCallResponseTrailers() ([][2]string, error) {
	return getMap(types.MapTypeHttpCallResponseTrailers)
}

// ---------------------------------------------------------------------------------------------
// Stream control and local replies

// ResumeHttpRequest resumes a request paused by ActionPause (after the current callback
// returns).
func ResumeHttpRequest() error {
	return status(abi.ProxyContinueStream(uint32(types.StreamTypeRequest)))
}

// ResumeHttpResponse resumes a paused response.
func ResumeHttpResponse() error {
	return status(abi.ProxyContinueStream(uint32(types.StreamTypeResponse)))
}

// ResetHttpRequest resets the request (the client's stream is reset).
func ResetHttpRequest() error {
	return status(abi.ProxyCloseStream(uint32(types.StreamTypeRequest)))
}

// ResetHttpResponse resets the response.
func ResetHttpResponse() error {
	return status(abi.ProxyCloseStream(uint32(types.StreamTypeResponse)))
}

// SendHttpResponse answers the stream with a local reply: the upstream is skipped (from the
// request phase) or its response replaced (from OnHttpResponseHeaders). The body is sent
// verbatim. gRPCStatus is -1 for none. Return ActionPause from the callback that sends it.
func SendHttpResponse(statusCode uint32, headers [][2]string, body []byte, gRPCStatus int32) error {
	h := SerializeMap(headers)
	return status(abi.ProxySendLocalResponse(statusCode, nil, 0, bytesPtr(body), int32(len(body)), bytesPtr(h), int32(len(h)), gRPCStatus))
}

// GetStatus returns the status code and message of the last failed operation; after a failed
// HTTP callout (numHeaders == 0 in its callback) barbacane, like Envoy, answers 11 and "reset".
func GetStatus() (uint32, string, error) {
	var code uint32
	msg, err := blob(func(data unsafe.Pointer, size *int32) uint32 {
		return abi.ProxyGetStatus(&code, data, size)
	})
	return code, string(msg), err
}

// ---------------------------------------------------------------------------------------------
// HTTP callouts

// DispatchHttpCall sends an HTTP request to the named upstream (cluster): in barbacane one of
// the spec's `x-barbacane-upstreams`. headers must include ":method", ":path" and
// ":authority". When the response arrives (or the call fails, numHeaders == 0), callback runs
// with the dispatching context effective again, so it can read the response with
// GetHttpCallResponseHeaders / GetHttpCallResponseBody and resume or answer the stream. A
// paused stream stays paused until the filter resumes it. timeoutMilliseconds 0 means none.
func DispatchHttpCall(upstream string, headers [][2]string, body []byte, trailers [][2]string,
	timeoutMilliseconds uint32, callback func(numHeaders, bodySize, numTrailers int)) (uint32, error) {
	h := SerializeMap(headers)
	var t []byte
	if len(trailers) > 0 {
		t = SerializeMap(trailers)
	}
	var calloutID uint32
	err := status(abi.ProxyHttpCall(stringPtr(upstream), int32(len(upstream)), bytesPtr(h), int32(len(h)),
		bytesPtr(body), int32(len(body)), bytesPtr(t), int32(len(t)), timeoutMilliseconds, &calloutID))
	if err != nil {
		return 0, err
	}
	state.registerCallout(calloutID, callback)
	return calloutID, nil
}

// ---------------------------------------------------------------------------------------------
// Properties

// GetProperty returns a property's raw value, e.g. GetProperty([]string{"request", "path"}).
// Values are typed as in Envoy: strings raw, integers 8 bytes little-endian, maps in the
// header-map format; see the GetProperty* helpers. types.ErrNotFound if the host has no such
// property.
func GetProperty(path []string) ([]byte, error) {
	p := SerializePropertyPath(path)
	return blob(func(data unsafe.Pointer, size *int32) uint32 {
		return abi.ProxyGetProperty(bytesPtr(p), int32(len(p)), data, size)
	})
}

// GetPropertyString returns a string property (e.g. request.path or source.address).
func GetPropertyString(path []string) (string, error) {
	v, err := GetProperty(path)
	return string(v), err
}

// GetPropertyInt64 returns an integer property (e.g. source.port or response.code).
func GetPropertyInt64(path []string) (int64, error) {
	v, err := GetProperty(path)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, types.ErrSerializationFailure
	}
	return int64(binary.LittleEndian.Uint64(v)), nil
}

// GetPropertyUint64 returns an unsigned integer property (e.g. connection.id).
func GetPropertyUint64(path []string) (uint64, error) {
	v, err := GetPropertyInt64(path)
	return uint64(v), err
}

// GetPropertyBool returns a boolean property (e.g. connection.mtls).
func GetPropertyBool(path []string) (bool, error) {
	v, err := GetProperty(path)
	if err != nil {
		return false, err
	}
	if len(v) != 1 {
		return false, types.ErrSerializationFailure
	}
	return v[0] != 0, nil
}

// GetPropertyMap returns a map property (e.g. request.headers) as pairs.
func GetPropertyMap(path []string) ([][2]string, error) {
	v, err := GetProperty(path)
	if err != nil {
		return nil, err
	}
	return DeserializeMap(v)
}

// SetProperty stores value under path in the stream's filter state, where later filters of
// the chain (and this one) read it back with GetProperty.
func SetProperty(path []string, value []byte) error {
	p := SerializePropertyPath(path)
	return status(abi.ProxySetProperty(bytesPtr(p), int32(len(p)), bytesPtr(value), int32(len(value))))
}

// ---------------------------------------------------------------------------------------------
// Shared data and queues

// GetSharedData returns the value stored under key, shared by every VM of this plugin's
// vm_id, and its compare-and-swap token; types.ErrNotFound if there is none.
func GetSharedData(key string) ([]byte, uint32, error) {
	var cas uint32
	data, err := blob(func(data unsafe.Pointer, size *int32) uint32 {
		return abi.ProxyGetSharedData(stringPtr(key), int32(len(key)), data, size, &cas)
	})
	return data, cas, err
}

// SetSharedData stores value under key. With cas != 0 it succeeds only if the value is still
// the one GetSharedData returned with that token, else types.ErrCasMismatch (retry: read,
// change, write). cas == 0 always writes.
func SetSharedData(key string, value []byte, cas uint32) error {
	return status(abi.ProxySetSharedData(stringPtr(key), int32(len(key)), bytesPtr(value), int32(len(value)), cas))
}

// RegisterSharedQueue creates (or reopens) the queue name of this vm_id; the calling plugin's
// OnQueueReady then runs once per item enqueued.
func RegisterSharedQueue(name string) (uint32, error) {
	var id uint32
	err := status(abi.ProxyRegisterSharedQueue(stringPtr(name), int32(len(name)), &id))
	return id, err
}

// ResolveSharedQueue returns the id of the queue name registered by vmID ("" for this
// plugin's own); types.ErrNotFound if nobody registered it.
func ResolveSharedQueue(vmID, name string) (uint32, error) {
	var id uint32
	err := status(abi.ProxyResolveSharedQueue(stringPtr(vmID), int32(len(vmID)), stringPtr(name), int32(len(name)), &id))
	return id, err
}

// EnqueueSharedQueue appends data to a queue.
func EnqueueSharedQueue(queueID uint32, data []byte) error {
	return status(abi.ProxyEnqueueSharedQueue(queueID, bytesPtr(data), int32(len(data))))
}

// DequeueSharedQueue takes the oldest item of a queue; types.ErrEmpty when there is none.
func DequeueSharedQueue(queueID uint32) ([]byte, error) {
	return blob(func(data unsafe.Pointer, size *int32) uint32 {
		return abi.ProxyDequeueSharedQueue(queueID, data, size)
	})
}

// ---------------------------------------------------------------------------------------------
// Foreign functions

// CallForeignFunction calls a host-specific function by name; types.ErrNotFound if the host
// has none of that name.
func CallForeignFunction(name string, args []byte) ([]byte, error) {
	return blob(func(data unsafe.Pointer, size *int32) uint32 {
		return abi.ProxyCallForeignFunction(stringPtr(name), int32(len(name)), bytesPtr(args), int32(len(args)), data, size)
	})
}

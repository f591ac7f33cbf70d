// Package types holds the enumerations, statuses and context interfaces of the Proxy-Wasm ABI
// as the proxywasm package exposes them. The names follow the upstream Go SDK
// (proxy-wasm/proxy-wasm-go-sdk) so that filters move between the two by changing imports.
package types

// Action is what a stream callback tells the host to do next.
type Action uint32

const (
	// ActionContinue lets the stream go on to the next filter (and the upstream or client).
	ActionContinue Action = 0
	// ActionPause stops the stream here. From a headers callback it holds the headers and
	// the body until the filter resumes the stream (ResumeHttpRequest / ResumeHttpResponse)
	// or answers it (SendHttpResponse). From a body callback it buffers: the host calls again
	// with the cumulative size when more arrives.
	ActionPause Action = 1
)

// OnVMStartStatus is the result of VMContext.OnVMStart.
type OnVMStartStatus bool

const (
	// OnVMStartStatusOK accepts the VM.
	OnVMStartStatusOK OnVMStartStatus = true
	// OnVMStartStatusFailed makes the host refuse the plugin.
	OnVMStartStatusFailed OnVMStartStatus = false
)

// OnPluginStartStatus is the result of PluginContext.OnPluginStart.
type OnPluginStartStatus bool

const (
	// OnPluginStartStatusOK accepts the plugin configuration.
	OnPluginStartStatusOK OnPluginStartStatus = true
	// OnPluginStartStatusFailed refuses it: barbacane then fails the compile (diagnostic
	// E1061) quoting what the plugin logged at error level.
	OnPluginStartStatusFailed OnPluginStartStatus = false
)

// LogLevel is the level of a log line (proxy_log_level_t).
type LogLevel uint32

// The log levels, from the most to the least verbose.
const (
	LogLevelTrace    LogLevel = 0
	LogLevelDebug    LogLevel = 1
	LogLevelInfo     LogLevel = 2
	LogLevelWarn     LogLevel = 3
	LogLevelError    LogLevel = 4
	LogLevelCritical LogLevel = 5
)

// String returns the level's lower-case name.
func (l LogLevel) String() string {
	switch l {
	case LogLevelTrace:
		return "trace"
	case LogLevelDebug:
		return "debug"
	case LogLevelInfo:
		return "info"
	case LogLevelWarn:
		return "warn"
	case LogLevelError:
		return "error"
	case LogLevelCritical:
		return "critical"
	}
	return "unknown"
}

// MapType selects a header map (proxy_map_type_t).
type MapType uint32

// The header maps.
const (
	MapTypeHttpRequestHeaders       MapType = 0
	MapTypeHttpRequestTrailers      MapType = 1
	MapTypeHttpResponseHeaders      MapType = 2
	MapTypeHttpResponseTrailers     MapType = 3
	MapTypeGrpcCallInitialMetadata  MapType = 4
	MapTypeGrpcCallTrailingMetadata MapType = 5
	MapTypeHttpCallResponseHeaders  MapType = 6
	MapTypeHttpCallResponseTrailers MapType = 7
)

// BufferType selects a byte buffer (proxy_buffer_type_t).
type BufferType uint32

// The buffers.
const (
	BufferTypeHttpRequestBody          BufferType = 0
	BufferTypeHttpResponseBody         BufferType = 1
	BufferTypeDownstreamData           BufferType = 2
	BufferTypeUpstreamData             BufferType = 3
	BufferTypeHttpCallResponseBody     BufferType = 4
	BufferTypeGrpcCallMessage          BufferType = 5
	BufferTypeVMConfiguration          BufferType = 6
	BufferTypePluginConfiguration      BufferType = 7
	BufferTypeForeignFunctionArguments BufferType = 8
)

// StreamType selects the direction of a stream (proxy_stream_type_t).
type StreamType uint32

// The stream directions.
const (
	StreamTypeRequest    StreamType = 0
	StreamTypeResponse   StreamType = 1
	StreamTypeDownstream StreamType = 2
	StreamTypeUpstream   StreamType = 3
)

// MetricType is the kind of a metric (proxy_metric_type_t).
type MetricType uint32

// The metric kinds.
const (
	MetricTypeCounter   MetricType = 0
	MetricTypeGauge     MetricType = 1
	MetricTypeHistogram MetricType = 2
)

// PeerType says which side closed a connection (proxy_peer_type_t).
type PeerType uint32

// The peers.
const (
	PeerTypeUnknown PeerType = 0
	PeerTypeLocal   PeerType = 1
	PeerTypeRemote  PeerType = 2
)

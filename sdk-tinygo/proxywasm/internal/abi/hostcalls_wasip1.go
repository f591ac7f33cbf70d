//go:build wasip1

package abi

import "unsafe"

// The host functions of ABI 0.2.1 (module `env`) the SDK uses. Pointer arguments point into
// the guest's memory; `unsafe.Pointer` out-parameters receive a pointer to a block the host
// allocated with proxy_on_memory_allocate (see Take). Every function returns a proxy_status_t.

//go:wasmimport env proxy_log
func ProxyLog(level uint32, msg *byte, msgLen int32) uint32

//go:wasmimport env proxy_get_log_level
func ProxyGetLogLevel(level *uint32) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func ProxyGetCurrentTimeNanoseconds(nanos *uint64) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func ProxySetTickPeriodMilliseconds(period uint32) uint32

//go:wasmimport env proxy_set_effective_context
func ProxySetEffectiveContext(contextID uint32) uint32

//go:wasmimport env proxy_done
func ProxyDone() uint32

//go:wasmimport env proxy_get_buffer_bytes
func ProxyGetBufferBytes(bufferType uint32, start, maxSize int32, data unsafe.Pointer, size *int32) uint32

//go:wasmimport env proxy_set_buffer_bytes
func ProxySetBufferBytes(bufferType uint32, start, size int32, data *byte, dataSize int32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func ProxyGetHeaderMapPairs(mapType uint32, data unsafe.Pointer, size *int32) uint32

//go:wasmimport env proxy_set_header_map_pairs
func ProxySetHeaderMapPairs(mapType uint32, data *byte, size int32) uint32

//go:wasmimport env proxy_get_header_map_value
func ProxyGetHeaderMapValue(mapType uint32, key *byte, keyLen int32, value unsafe.Pointer, valueLen *int32) uint32

//go:wasmimport env proxy_add_header_map_value
func ProxyAddHeaderMapValue(mapType uint32, key *byte, keyLen int32, value *byte, valueLen int32) uint32

//go:wasmimport env proxy_replace_header_map_value
func ProxyReplaceHeaderMapValue(mapType uint32, key *byte, keyLen int32, value *byte, valueLen int32) uint32

//go:wasmimport env proxy_remove_header_map_value
func ProxyRemoveHeaderMapValue(mapType uint32, key *byte, keyLen int32) uint32

//go:wasmimport env proxy_continue_stream
func ProxyContinueStream(streamType uint32) uint32

//go:wasmimport env proxy_close_stream
func ProxyCloseStream(streamType uint32) uint32

//go:wasmimport env proxy_get_status
func ProxyGetStatus(code *uint32, msg unsafe.Pointer, msgLen *int32) uint32

//go:wasmimport env proxy_send_local_response
func ProxySendLocalResponse(statusCode uint32, details *byte, detailsLen int32, body *byte, bodyLen int32, headers *byte, headersLen int32, grpcStatus int32) uint32

//go:wasmimport env proxy_http_call
func ProxyHttpCall(upstream *byte, upstreamLen int32, headers *byte, headersLen int32, body *byte, bodyLen int32, trailers *byte, trailersLen int32, timeoutMillis uint32, calloutID *uint32) uint32

//go:wasmimport env proxy_set_shared_data
func ProxySetSharedData(key *byte, keyLen int32, value *byte, valueLen int32, cas uint32) uint32

//go:wasmimport env proxy_get_shared_data
func ProxyGetSharedData(key *byte, keyLen int32, value unsafe.Pointer, valueLen *int32, cas *uint32) uint32

//go:wasmimport env proxy_register_shared_queue
func ProxyRegisterSharedQueue(name *byte, nameLen int32, queueID *uint32) uint32

//go:wasmimport env proxy_resolve_shared_queue
func ProxyResolveSharedQueue(vmID *byte, vmIDLen int32, name *byte, nameLen int32, queueID *uint32) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func ProxyEnqueueSharedQueue(queueID uint32, value *byte, valueLen int32) uint32

//go:wasmimport env proxy_dequeue_shared_queue
func ProxyDequeueSharedQueue(queueID uint32, value unsafe.Pointer, valueLen *int32) uint32

//go:wasmimport env proxy_define_metric
func ProxyDefineMetric(metricType uint32, name *byte, nameLen int32, metricID *uint32) uint32

//go:wasmimport env proxy_record_metric
func ProxyRecordMetric(metricID uint32, value uint64) uint32

//go:wasmimport env proxy_increment_metric
func ProxyIncrementMetric(metricID uint32, offset int64) uint32

//go:wasmimport env proxy_get_metric
func ProxyGetMetric(metricID uint32, value *uint64) uint32

//go:wasmimport env proxy_get_property
func ProxyGetProperty(path *byte, pathLen int32, value unsafe.Pointer, valueLen *int32) uint32

//go:wasmimport env proxy_set_property
func ProxySetProperty(path *byte, pathLen int32, value *byte, valueLen int32) uint32

//go:wasmimport env proxy_call_foreign_function
func ProxyCallForeignFunction(name *byte, nameLen int32, args *byte, argsLen int32, result unsafe.Pointer, resultLen *int32) uint32

//go:build !wasip1

package abi

import "unsafe"

// Outside wasip1 (native `go vet`, `go test`) the host functions are stubs answering
// StatusUnimplemented, so the packages build and their pure logic can be tested natively.

const unimplemented = 12

// ProxyLog stands for proxy_log.
func ProxyLog(level uint32, msg *byte, msgLen int32) uint32 { return unimplemented }

// ProxyGetLogLevel stands for proxy_get_log_level.
func ProxyGetLogLevel(level *uint32) uint32 { return unimplemented }

// ProxyGetCurrentTimeNanoseconds stands for proxy_get_current_time_nanoseconds.
func ProxyGetCurrentTimeNanoseconds(nanos *uint64) uint32 { return unimplemented }

// ProxySetTickPeriodMilliseconds stands for proxy_set_tick_period_milliseconds.
func ProxySetTickPeriodMilliseconds(period uint32) uint32 { return unimplemented }

// ProxySetEffectiveContext stands for proxy_set_effective_context.
func ProxySetEffectiveContext(contextID uint32) uint32 { return unimplemented }

// ProxyDone stands for proxy_done.
func ProxyDone() uint32 { return unimplemented }

// ProxyGetBufferBytes stands for proxy_get_buffer_bytes.
func ProxyGetBufferBytes(bufferType uint32, start, maxSize int32, data unsafe.Pointer, size *int32) uint32 {
	return unimplemented
}

// ProxySetBufferBytes stands for proxy_set_buffer_bytes.
func ProxySetBufferBytes(bufferType uint32, start, size int32, data *byte, dataSize int32) uint32 {
	return unimplemented
}

// ProxyGetHeaderMapPairs stands for proxy_get_header_map_pairs.
func ProxyGetHeaderMapPairs(mapType uint32, data unsafe.Pointer, size *int32) uint32 {
	return unimplemented
}

// ProxySetHeaderMapPairs stands for proxy_set_header_map_pairs.
func ProxySetHeaderMapPairs(mapType uint32, data *byte, size int32) uint32 { return unimplemented }

// ProxyGetHeaderMapValue stands for proxy_get_header_map_value.
func ProxyGetHeaderMapValue(mapType uint32, key *byte, keyLen int32, value unsafe.Pointer, valueLen *int32) uint32 {
	return unimplemented
}

// ProxyAddHeaderMapValue stands for proxy_add_header_map_value.
func ProxyAddHeaderMapValue(mapType uint32, key *byte, keyLen int32, value *byte, valueLen int32) uint32 {
	return unimplemented
}

// ProxyReplaceHeaderMapValue stands for proxy_replace_header_map_value.
func ProxyReplaceHeaderMapValue(mapType uint32, key *byte, keyLen int32, value *byte, valueLen int32) uint32 {
	return unimplemented
}

// ProxyRemoveHeaderMapValue stands for proxy_remove_header_map_value.
func ProxyRemoveHeaderMapValue(mapType uint32, key *byte, keyLen int32) uint32 { return unimplemented }

// ProxyContinueStream stands for proxy_continue_stream.
func ProxyContinueStream(streamType uint32) uint32 { return unimplemented }

// ProxyCloseStream stands for proxy_close_stream.
func ProxyCloseStream(streamType uint32) uint32 { return unimplemented }

// ProxyGetStatus stands for proxy_get_status.
func ProxyGetStatus(code *uint32, msg unsafe.Pointer, msgLen *int32) uint32 { return unimplemented }

// ProxySendLocalResponse stands for proxy_send_local_response.
func ProxySendLocalResponse(statusCode uint32, details *byte, detailsLen int32, body *byte, bodyLen int32, headers *byte, headersLen int32, grpcStatus int32) uint32 {
	return unimplemented
}

// ProxyHttpCall stands for proxy_http_call.
func ProxyHttpCall(upstream *byte, upstreamLen int32, headers *byte, headersLen int32, body *byte, bodyLen int32, trailers *byte, trailersLen int32, timeoutMillis uint32, calloutID *uint32) uint32 {
	return unimplemented
}

// ProxySetSharedData stands for proxy_set_shared_data.
func ProxySetSharedData(key *byte, keyLen int32, value *byte, valueLen int32, cas uint32) uint32 {
	return unimplemented
}

// ProxyGetSharedData stands for proxy_get_shared_data.
func ProxyGetSharedData(key *byte, keyLen int32, value unsafe.Pointer, valueLen *int32, cas *uint32) uint32 {
	return unimplemented
}

// ProxyRegisterSharedQueue stands for proxy_register_shared_queue.
func ProxyRegisterSharedQueue(name *byte, nameLen int32, queueID *uint32) uint32 {
	return unimplemented
}

// ProxyResolveSharedQueue stands for proxy_resolve_shared_queue.
func ProxyResolveSharedQueue(vmID *byte, vmIDLen int32, name *byte, nameLen int32, queueID *uint32) uint32 {
	return unimplemented
}

// ProxyEnqueueSharedQueue stands for proxy_enqueue_shared_queue.
func ProxyEnqueueSharedQueue(queueID uint32, value *byte, valueLen int32) uint32 {
	return unimplemented
}

// ProxyDequeueSharedQueue stands for proxy_dequeue_shared_queue.
func ProxyDequeueSharedQueue(queueID uint32, value unsafe.Pointer, valueLen *int32) uint32 {
	return unimplemented
}

// ProxyDefineMetric stands for proxy_define_metric.
func ProxyDefineMetric(metricType uint32, name *byte, nameLen int32, metricID *uint32) uint32 {
	return unimplemented
}

// ProxyRecordMetric stands for proxy_record_metric.
func ProxyRecordMetric(metricID uint32, value uint64) uint32 { return unimplemented }

// ProxyIncrementMetric stands for proxy_increment_metric.
func ProxyIncrementMetric(metricID uint32, offset int64) uint32 { return unimplemented }

// ProxyGetMetric stands for proxy_get_metric.
func ProxyGetMetric(metricID uint32, value *uint64) uint32 { return unimplemented }

// ProxyGetProperty stands for proxy_get_property.
func ProxyGetProperty(path *byte, pathLen int32, value unsafe.Pointer, valueLen *int32) uint32 {
	return unimplemented
}

// ProxySetProperty stands for proxy_set_property.
func ProxySetProperty(path *byte, pathLen int32, value *byte, valueLen int32) uint32 {
	return unimplemented
}

// ProxyCallForeignFunction stands for proxy_call_foreign_function.
func ProxyCallForeignFunction(name *byte, nameLen int32, args *byte, argsLen int32, result unsafe.Pointer, resultLen *int32) uint32 {
	return unimplemented
}

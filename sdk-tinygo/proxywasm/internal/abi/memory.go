// Package abi is the raw Proxy-Wasm ABI: the host functions (//go:wasmimport on wasip1, stubs
// elsewhere) and the guest allocator's bookkeeping. The proxywasm package wraps it.
package abi

import "unsafe"

// live keeps every block handed to the host reachable from a Go root until the guest has taken
// it over. Go's GC never moves objects, but it frees any object nothing in Go refers to:
// between proxy_on_memory_allocate returning and the host's pointer landing in a Go variable,
// the only reference is the host's (and the host writes it into guest memory without a GC
// write barrier). Each host function that returns a blob takes its block with Take, which also
// drops every other entry (blocks the host allocated but did not hand back).
var live = map[*byte][]byte{}

// Allocate returns a zeroed block of size bytes (at least one) for the host to fill; it is
// what proxy_on_memory_allocate answers.
func Allocate(size uint32) *byte {
	if size == 0 {
		size = 1
	}
	buf := make([]byte, size)
	live[&buf[0]] = buf
	return &buf[0]
}

// Take returns the blob the host wrote at (ptr, size) as a Go slice, which from then on keeps
// the block alive, and releases the allocator's references. A nil pointer or a size of zero is
// an empty (nil) blob. Call it after every host function with a blob out-parameter, whatever
// the status.
func Take(ptr *byte, size int32) []byte {
	var out []byte
	if ptr != nil && size > 0 {
		out = unsafe.Slice(ptr, size)
	}
	clear(live)
	return out
}

// Pending says how many allocated blocks have not been taken yet (for tests).
func Pending() int {
	return len(live)
}

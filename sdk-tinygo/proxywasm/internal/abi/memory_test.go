package abi

import (
	"testing"
	"unsafe"
)

func TestBlocksStayLiveUntilTaken(t *testing.T) {
	p := Allocate(3)
	_ = Allocate(0) // a block the host never hands back
	if Pending() != 2 {
		t.Fatalf("pending %d", Pending())
	}
	copy(unsafe.Slice(p, 3), "abc")
	if got := string(Take(p, 3)); got != "abc" {
		t.Fatalf("%q", got)
	}
	if Pending() != 0 {
		t.Fatalf("pending after take %d", Pending())
	}
	if Take(nil, 5) != nil || Take(p, 0) != nil {
		t.Fatal("empty blobs are nil")
	}
}

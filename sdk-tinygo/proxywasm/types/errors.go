package types

import "strconv"

// Status is a host function's result (proxy_status_t). Every non-OK status is also an error,
// so the proxywasm functions return it as their error and callers compare with errors.Is:
//
//	if errors.Is(err, types.ErrNotFound) { ... }
type Status uint32

// The statuses of ABI 0.2.1 (and those cpp-host adds).
const (
	StatusOK                   Status = 0
	StatusNotFound             Status = 1
	StatusBadArgument          Status = 2
	StatusSerializationFailure Status = 3
	StatusParseFailure         Status = 4
	StatusBadExpression        Status = 5
	StatusInvalidMemoryAccess  Status = 6
	StatusEmpty                Status = 7
	StatusCasMismatch          Status = 8
	StatusResultMismatch       Status = 9
	StatusInternalFailure      Status = 10
	StatusBrokenConnection     Status = 11
	StatusUnimplemented        Status = 12
)

// The errors the proxywasm functions return, one per non-OK status.
var (
	ErrNotFound             error = StatusNotFound
	ErrBadArgument          error = StatusBadArgument
	ErrSerializationFailure error = StatusSerializationFailure
	ErrParseFailure         error = StatusParseFailure
	ErrBadExpression        error = StatusBadExpression
	ErrInvalidMemoryAccess  error = StatusInvalidMemoryAccess
	ErrEmpty                error = StatusEmpty
	ErrCasMismatch          error = StatusCasMismatch
	ErrResultMismatch       error = StatusResultMismatch
	ErrInternalFailure      error = StatusInternalFailure
	ErrBrokenConnection     error = StatusBrokenConnection
	ErrUnimplemented        error = StatusUnimplemented
)

// Error describes the status, e.g. "proxy-wasm status 1 (not found)".
func (s Status) Error() string {
	return "proxy-wasm status " + strconv.FormatUint(uint64(s), 10) + " (" + s.name() + ")"
}

func (s Status) name() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusNotFound:
		return "not found"
	case StatusBadArgument:
		return "bad argument"
	case StatusSerializationFailure:
		return "serialization failure"
	case StatusParseFailure:
		return "parse failure"
	case StatusBadExpression:
		return "bad expression"
	case StatusInvalidMemoryAccess:
		return "invalid memory access"
	case StatusEmpty:
		return "empty"
	case StatusCasMismatch:
		return "cas mismatch"
	case StatusResultMismatch:
		return "result mismatch"
	case StatusInternalFailure:
		return "internal failure"
	case StatusBrokenConnection:
		return "broken connection"
	case StatusUnimplemented:
		return "unimplemented"
	}
	return "unknown"
}

// AsError turns a status into nil (OK) or the status as an error.
func (s Status) AsError() error {
	if s == StatusOK {
		return nil
	}
	return s
}

// The names the upstream Go SDK (proxy-wasm/proxy-wasm-go-sdk) gives some of these errors,
// so that filters ported from it compile unchanged.
var (
	ErrorStatusNotFound    = ErrNotFound
	ErrorStatusBadArgument = ErrBadArgument
	ErrorStatusEmpty       = ErrEmpty
	ErrorStatusCasMismatch = ErrCasMismatch
	ErrorInternalFailure   = ErrInternalFailure
	ErrorUnimplemented     = ErrUnimplemented
)

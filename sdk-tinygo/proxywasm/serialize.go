package proxywasm

import (
	"encoding/binary"
	"errors"
	"strings"
)

// The header-map pair format of the ABI (little-endian):
//
//	u32 n | n × (u32 key_len, u32 value_len) | n × (key, 0x00, value, 0x00)

// SerializeMap encodes pairs in the ABI's header-map format (also used for local-reply
// headers, callout headers and trailers, and map-valued properties).
func SerializeMap(pairs [][2]string) []byte {
	size := 4 + 8*len(pairs)
	for _, p := range pairs {
		size += len(p[0]) + len(p[1]) + 2
	}
	out := make([]byte, size)
	binary.LittleEndian.PutUint32(out, uint32(len(pairs)))
	at := 4
	for _, p := range pairs {
		binary.LittleEndian.PutUint32(out[at:], uint32(len(p[0])))
		binary.LittleEndian.PutUint32(out[at+4:], uint32(len(p[1])))
		at += 8
	}
	for _, p := range pairs {
		at += copy(out[at:], p[0])
		out[at] = 0
		at++
		at += copy(out[at:], p[1])
		out[at] = 0
		at++
	}
	return out
}

var errBadMap = errors.New("proxywasm: malformed header map")

// DeserializeMap decodes the ABI's header-map format. An empty blob, or a single zero byte,
// is an empty map.
func DeserializeMap(data []byte) ([][2]string, error) {
	if len(data) == 0 || (len(data) == 1 && data[0] == 0) {
		return nil, nil
	}
	if len(data) < 4 {
		return nil, errBadMap
	}
	n := uint64(binary.LittleEndian.Uint32(data))
	if n == 0 {
		return nil, nil
	}
	if 4+8*n > uint64(len(data)) {
		return nil, errBadMap
	}
	pairs := make([][2]string, n)
	at := 4 + 8*n
	for i := uint64(0); i < n; i++ {
		keyLen := uint64(binary.LittleEndian.Uint32(data[4+8*i:]))
		valueLen := uint64(binary.LittleEndian.Uint32(data[8+8*i:]))
		if at+keyLen+valueLen+2 > uint64(len(data)) {
			return nil, errBadMap
		}
		pairs[i][0] = string(data[at : at+keyLen])
		at += keyLen + 1
		pairs[i][1] = string(data[at : at+valueLen])
		at += valueLen + 1
	}
	return pairs, nil
}

// SerializePropertyPath joins path segments with 0x00, as the ABI expects property paths.
func SerializePropertyPath(path []string) []byte {
	return []byte(strings.Join(path, "\x00"))
}

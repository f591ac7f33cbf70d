package proxywasm

import (
	"bytes"
	"reflect"
	"testing"
)

func TestSerializeMapMatchesTheABIExample(t *testing.T) {
	got := SerializeMap([][2]string{{":method", "GET"}, {"x-id", "7"}})
	want := []byte{
		2, 0, 0, 0,
		7, 0, 0, 0, 3, 0, 0, 0,
		4, 0, 0, 0, 1, 0, 0, 0,
	}
	want = append(want, ":method\x00GET\x00x-id\x007\x00"...)
	if !bytes.Equal(got, want) || len(got) != 39 {
		t.Fatalf("got %v", got)
	}
}

func TestMapsRoundTrip(t *testing.T) {
	for _, pairs := range [][][2]string{
		{{"a", "1"}},
		{{"set-cookie", "a=1"}, {"set-cookie", "b=2"}, {"", ""}, {"k", "v\x00with nul"}},
	} {
		got, err := DeserializeMap(SerializeMap(pairs))
		if err != nil || !reflect.DeepEqual(got, pairs) {
			t.Fatalf("%v: %v %v", pairs, got, err)
		}
	}
}

func TestEmptyMaps(t *testing.T) {
	for _, data := range [][]byte{nil, {0}, {0, 0, 0, 0}, SerializeMap(nil)} {
		got, err := DeserializeMap(data)
		if err != nil || len(got) != 0 {
			t.Fatalf("%v: %v %v", data, got, err)
		}
	}
}

func TestMalformedMapsAreErrors(t *testing.T) {
	good := SerializeMap([][2]string{{"key", "value"}})
	for _, data := range [][]byte{{1, 0}, {1, 0, 0, 0}, good[:len(good)-1], {255, 255, 255, 255, 0}} {
		if _, err := DeserializeMap(data); err == nil {
			t.Fatalf("%v decoded", data)
		}
	}
}

func TestPropertyPaths(t *testing.T) {
	if got := string(SerializePropertyPath([]string{"request", "headers", "x-id"})); got != "request\x00headers\x00x-id" {
		t.Fatalf("%q", got)
	}
}

package config

import (
	"errors"
	"reflect"
	"testing"
)

type inner struct {
	Limit int `json:"limit"`
}

type settings struct {
	Header  string   `json:"header"`
	Origins []string `json:"origins"`
	Inner   inner    `json:"inner"`
}

func TestParsesAndKeepsDefaults(t *testing.T) {
	s := settings{Header: "x-default"}
	if err := Parse([]byte(`{"origins": ["a", "b"], "inner": {"limit": 3}}`), &s); err != nil {
		t.Fatal(err)
	}
	want := settings{Header: "x-default", Origins: []string{"a", "b"}, Inner: inner{Limit: 3}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("%+v", s)
	}
}

func TestNoConfigurationIsAnEmptyObject(t *testing.T) {
	for _, text := range []string{"", "  \n\t"} {
		s := settings{Header: "x"}
		if err := Parse([]byte(text), &s); err != nil || s.Header != "x" {
			t.Fatalf("%q: %v %+v", text, err, s)
		}
	}
}

func TestErrorsSayWhere(t *testing.T) {
	for text, want := range map[string]string{
		`{"inner": {"limit": "three"}}`: "invalid configuration at /inner/limit: expected int, got string",
		`{"header": 1}`:                 "invalid configuration at /header: expected string, got number",
		`{"nope": 1}`:                   `invalid configuration: unknown field "nope"`,
		`{"header": "a"} {}`:            "invalid configuration: unexpected text after the configuration",
		`{"header": `:                   "invalid configuration: unexpected end of the configuration",
		`header: a`:                     "invalid configuration: invalid character 'h' looking for beginning of value",
	} {
		var s settings
		err := Parse([]byte(text), &s)
		var cfgErr *Error
		if !errors.As(err, &cfgErr) {
			t.Fatalf("%s: %v is not a *config.Error", text, err)
		}
		if err.Error() != want {
			t.Errorf("%s:\n got %s\nwant %s", text, err, want)
		}
	}
}

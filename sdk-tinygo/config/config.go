// Package config parses a plugin's configuration: the JSON text a middleware's `config`
// becomes (read with proxywasm.GetPluginConfiguration in OnPluginStart) into the plugin's own
// Go type, with encoding/json.
//
// The gateway checks the configuration against the plugin's JSON Schema when it compiles the
// spec, so parsing here only has to be strict (unknown fields are errors) and say where it
// failed: errors carry a JSON pointer to the offending field when encoding/json gives one.
//
//	type settings struct {
//		Header string `json:"header"`
//	}
//
//	func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
//		if err := config.Load(&p.settings); err != nil {
//			return types.OnPluginStartStatusFailed // Load logged why; the compile quotes it
//		}
//		return types.OnPluginStartStatusOK
//	}
//
// encoding/json works by reflection: it is fine with Go; with TinyGo prefer simple structs.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/barbacane/sdk-tinygo/proxywasm"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

// Error says why a configuration was refused.
type Error struct {
	// Pointer is the JSON pointer of the field that failed (`/allow_origins`), empty for the
	// document itself or when encoding/json does not say.
	Pointer string
	// Message says what is wrong with it.
	Message string
}

// Error returns "invalid configuration[ at <pointer>]: <message>", the line barbacane quotes
// when it refuses the middleware.
func (e *Error) Error() string {
	if e.Pointer == "" {
		return "invalid configuration: " + e.Message
	}
	return "invalid configuration at " + e.Pointer + ": " + e.Message
}

// Parse decodes data into v (a pointer). No configuration, or only whitespace, parses as
// `{}`, so a plugin whose fields all have defaults (set them in v before) needs no `config:`.
// Unknown fields and text after the document are errors. Failures are *Error.
func Parse(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describe(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &Error{Message: "unexpected text after the configuration"}
	}
	return nil
}

// Load reads the plugin configuration (call it from OnPluginStart) and parses it into v. A
// refusal is logged at error level, which is what `barbacane compile` quotes when it rejects
// the middleware, so OnPluginStart can simply fail when this returns an error.
func Load(v any) error {
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, types.ErrNotFound) {
		proxywasm.LogErrorf("cannot read the plugin configuration: %v", err)
		return err
	}
	if err := Parse(data, v); err != nil {
		proxywasm.LogError(err.Error())
		return err
	}
	return nil
}

func describe(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		e := &Error{Message: "expected " + typeName(typeErr) + ", got " + typeErr.Value}
		if typeErr.Field != "" {
			e.Pointer = "/" + strings.ReplaceAll(escape(typeErr.Field), ".", "/")
		}
		return e
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return &Error{Message: syntaxErr.Error()}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return &Error{Message: "unexpected end of the configuration"}
	}
	// encoding/json reports unknown fields as `json: unknown field "name"`.
	return &Error{Message: strings.TrimPrefix(err.Error(), "json: ")}
}

func typeName(e *json.UnmarshalTypeError) string {
	if e.Type == nil {
		return "another type"
	}
	return e.Type.String()
}

// escape applies RFC 6901 escaping to one path ('.'-separated by encoding/json).
func escape(field string) string {
	return strings.ReplaceAll(strings.ReplaceAll(field, "~", "~0"), "/", "~1")
}

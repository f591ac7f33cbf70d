// Package proxywasm is barbacane's SDK for writing gateway plugins in Go.
//
// Plugins are Proxy-Wasm modules built with TinyGo or with Go 1.24 or later for the wasip1
// target, so the same module runs in barbacane and in Envoy. The SDK has no third-party
// dependencies.
//
// This package is a placeholder: the SDK itself arrives with issue 6.
package proxywasm

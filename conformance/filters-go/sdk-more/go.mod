module barbacane.dev/conformance/sdk-more

go 1.24

require github.com/barbacane/sdk-tinygo v0.0.0

replace github.com/barbacane/sdk-tinygo => ../../../sdk-tinygo

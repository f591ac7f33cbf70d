module barbacane.dev/conformance/headers

go 1.24

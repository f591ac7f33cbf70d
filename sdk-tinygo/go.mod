module github.com/barbacane/sdk-tinygo

go 1.24

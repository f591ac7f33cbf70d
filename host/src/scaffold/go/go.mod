module example.com/{{name}}

go 1.24

require github.com/barbacane/sdk-tinygo v0.0.0

{{go_replace}}

//go:build !wasip1

// End to end: builds this plugin for wasip1, serves it with the real barbacane (on PATH, or
// $BARBACANE) in front of a mock route, and checks the header it adds.
package main

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestAddsTheConfiguredHeaderThroughBarbacane(t *testing.T) {
	barbacane := os.Getenv("BARBACANE")
	if barbacane == "" {
		barbacane = "barbacane"
	}
	dir := t.TempDir()
	wasm := filepath.Join(dir, "plugin.wasm")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-o", wasm, ".")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the module: %v\n%s", err, out)
	}
	schema, err := filepath.Abs("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "barbacane.yaml"),
		"plugins:\n  {{name}}: {source: \"file:plugin.wasm\", schema: \""+schema+"\"}\n")
	write(t, filepath.Join(dir, "api.yaml"), `openapi: 3.1.0
info: {title: test, version: "1"}
x-barbacane-middlewares:
  - {name: {{name}}, config: {header: x-greeting, value: hi}}
paths:
  /hello:
    get:
      x-barbacane-dispatch: {name: mock, config: {body: hello}}
`)
	serve := exec.Command(barbacane, "serve", "--spec", "api.yaml", "--manifest", "barbacane.yaml",
		"--listen", "127.0.0.1:0", "--workers", "1")
	serve.Dir = dir
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	serve.Stderr = os.Stderr
	if err := serve.Start(); err != nil {
		t.Fatalf("starting %s: %v (install barbacane or set $BARBACANE)", barbacane, err)
	}
	defer func() { _ = serve.Process.Kill(); _ = serve.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening on ") {
		t.Fatalf("barbacane did not start: %q %v", line, err)
	}
	url := strings.TrimSpace(strings.TrimPrefix(line, "listening on ")) + "/hello"
	response, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	if response.StatusCode != 200 {
		t.Fatalf("status %d", response.StatusCode)
	}
	if got := response.Header.Get("x-greeting"); got != "hi" {
		t.Fatalf("x-greeting = %q, want hi", got)
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

package problem

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestBodyHasTheGatewayShapeAndOrder(t *testing.T) {
	p := New(401, "unauthorized", "no credentials").WithHeader("www-authenticate", `Bearer realm="api"`)
	want := `{"type":"urn:barbacane:error:unauthorized","title":"Unauthorized","status":401,"detail":"no credentials"}`
	if got := string(p.Body()); got != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
	wantHeaders := [][2]string{{"content-type", "application/problem+json"}, {"www-authenticate", `Bearer realm="api"`}}
	if got := p.ResponseHeaders(); !reflect.DeepEqual(got, wantHeaders) {
		t.Fatalf("headers %v", got)
	}
}

func TestTitles(t *testing.T) {
	if got := New(429, "rate-limited", "").Title; got != "Too Many Requests" {
		t.Fatal(got)
	}
	if got := New(599, "odd", "").Title; got != "Error" {
		t.Fatal(got)
	}
	if got := New(403, "forbidden", "").WithTitle("Nope").Title; got != "Nope" {
		t.Fatal(got)
	}
}

func TestBodyIsValidJSONForAnyText(t *testing.T) {
	for _, detail := range []string{
		`a "quoted" \ detail`, "tab\tnew\nline\r\x00\x1f\x7f", "héllo → 世界", "bad \xff utf8", "",
	} {
		body := New(400, "bad", detail).Body()
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("%q: %v: %s", detail, err, body)
		}
		want := detail
		if detail == "bad \xff utf8" {
			want = "bad \ufffd utf8"
		}
		if doc["detail"] != want || doc["status"] != float64(400) || doc["type"] != "urn:barbacane:error:bad" {
			t.Fatalf("%q: %v", detail, doc)
		}
	}
}

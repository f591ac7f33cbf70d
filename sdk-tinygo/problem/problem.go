// Package problem builds RFC 9457 problem replies shaped exactly like barbacane's own:
// `content-type: application/problem+json` and a body with `type`
// (`urn:barbacane:error:<kind>`), `title` (the status's reason phrase), `status` and `detail`,
// in that order. A client then handles a 401 from a Go plugin and a 404 from the router alike.
//
//	if token == "" {
//		_ = problem.New(401, "unauthorized", "no credentials").
//			WithHeader("www-authenticate", `Bearer realm="api"`).
//			Send()
//		return types.ActionPause
//	}
//
// The body is written by hand (no reflection), so the package suits TinyGo too.
package problem

import (
	"strconv"
	"unicode/utf8"

	"github.com/barbacane/sdk-tinygo/proxywasm"
)

// TypePrefix is the prefix of every problem `type`; the kind follows it.
const TypePrefix = "urn:barbacane:error:"

// ContentType is the media type of problem bodies.
const ContentType = "application/problem+json"

// Problem is a problem reply.
type Problem struct {
	// Status is the HTTP status.
	Status int
	// Kind is the `type` suffix, a lowercase slug such as `unauthorized` or `rate-limited`.
	Kind string
	// Title is a short summary; New sets the status's reason phrase, as the gateway does.
	Title string
	// Detail says what happened to this request, for humans.
	Detail string
	// Headers are extra response headers (`www-authenticate`, `retry-after`, …).
	Headers [][2]string
}

// New returns a problem with status, kind and detail; the title is the reason phrase.
func New(status int, kind, detail string) *Problem {
	return &Problem{Status: status, Kind: kind, Title: ReasonPhrase(status), Detail: detail}
}

// WithTitle replaces the title.
func (p *Problem) WithTitle(title string) *Problem {
	p.Title = title
	return p
}

// WithHeader adds a response header.
func (p *Problem) WithHeader(name, value string) *Problem {
	p.Headers = append(p.Headers, [2]string{name, value})
	return p
}

// TypeURI returns the full `type`: `urn:barbacane:error:<kind>`.
func (p *Problem) TypeURI() string {
	return TypePrefix + p.Kind
}

// Body returns the JSON body.
func (p *Problem) Body() []byte {
	out := make([]byte, 0, 96+len(p.Kind)+len(p.Title)+len(p.Detail))
	out = append(out, `{"type":`...)
	out = appendJSONString(out, p.TypeURI())
	out = append(out, `,"title":`...)
	out = appendJSONString(out, p.Title)
	out = append(out, `,"status":`...)
	out = strconv.AppendInt(out, int64(p.Status), 10)
	out = append(out, `,"detail":`...)
	out = appendJSONString(out, p.Detail)
	return append(out, '}')
}

// ResponseHeaders returns the content type followed by the extra headers.
func (p *Problem) ResponseHeaders() [][2]string {
	headers := make([][2]string, 0, 1+len(p.Headers))
	headers = append(headers, [2]string{"content-type", ContentType})
	return append(headers, p.Headers...)
}

// Send answers the current stream with this problem (a local reply). As with any local reply,
// return types.ActionPause from the callback that sent it.
func (p *Problem) Send() error {
	return proxywasm.SendHttpResponse(uint32(p.Status), p.ResponseHeaders(), p.Body(), -1)
}

const hex = "0123456789abcdef"

// appendJSONString appends s as a JSON string (invalid UTF-8 becomes U+FFFD).
func appendJSONString(out []byte, s string) []byte {
	out = append(out, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				out = append(out, '\\', c)
			case c == '\n':
				out = append(out, '\\', 'n')
			case c == '\r':
				out = append(out, '\\', 'r')
			case c == '\t':
				out = append(out, '\\', 't')
			case c < 0x20 || c == 0x7f:
				out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				out = append(out, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			out = append(out, `\ufffd`...)
		} else {
			out = append(out, s[i:i+size]...)
		}
		i += size
	}
	return append(out, '"')
}

// ReasonPhrase returns the reason phrase of status as the gateway writes it, or "Error" for
// statuses without one.
func ReasonPhrase(status int) string {
	switch status {
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 402:
		return "Payment Required"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 406:
		return "Not Acceptable"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 409:
		return "Conflict"
	case 410:
		return "Gone"
	case 411:
		return "Length Required"
	case 412:
		return "Precondition Failed"
	case 413:
		return "Payload Too Large"
	case 414:
		return "URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Range Not Satisfiable"
	case 417:
		return "Expectation Failed"
	case 421:
		return "Misdirected Request"
	case 422:
		return "Unprocessable Entity"
	case 423:
		return "Locked"
	case 424:
		return "Failed Dependency"
	case 426:
		return "Upgrade Required"
	case 428:
		return "Precondition Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 451:
		return "Unavailable For Legal Reasons"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	case 507:
		return "Insufficient Storage"
	case 511:
		return "Network Authentication Required"
	}
	return "Error"
}

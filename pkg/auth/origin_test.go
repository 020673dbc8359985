package auth

import (
	"strings"
	"testing"
)

func TestSameOrigin(t *testing.T) {
	tests := []struct {
		name                string
		host, origin, fetch string
		want                bool
	}{
		{"no headers: a non-browser client", "deployd.example:8080", "", "", true},
		{"same origin by both", "deployd.example:8080", "http://deployd.example:8080", "same-origin", true},
		{"same origin by Origin only", "deployd.example:8080", "http://deployd.example:8080", "", true},
		{"same origin by Sec-Fetch-Site only", "deployd.example:8080", "", "same-origin", true},
		{"user-initiated navigation", "deployd.example", "", "none", true},
		{"default http port on one side", "deployd.example", "http://deployd.example:80", "", true},
		{"default https port on one side", "deployd.example:443", "https://deployd.example", "", true},
		{"host case differs", "Deployd.Example", "http://deployd.example", "", true},
		{"loopback with port", "127.0.0.1:34567", "http://127.0.0.1:34567", "same-origin", true},
		{"IPv6 literal", "[::1]:8080", "http://[::1]:8080", "", true},
		{"cross-site", "deployd.example", "", "cross-site", false},
		{"cross-site despite matching Origin", "deployd.example", "http://deployd.example", "cross-site", false},
		{"same-site sibling", "deployd.example", "", "same-site", false},
		{"unknown Sec-Fetch-Site", "deployd.example", "", "whatever", false},
		{"Sec-Fetch-Site in capitals", "deployd.example", "", "CROSS-SITE", false},
		{"other host", "deployd.example", "http://evil.example", "", false},
		{"other host that contains ours", "deployd.example", "http://deployd.example.evil.example", "", false},
		{"other port", "deployd.example:8080", "http://deployd.example:8081", "", false},
		{"https origin against the http port", "deployd.example:80", "https://deployd.example", "", false},
		{"https origin, Host without port (behind TLS)", "deployd.example", "https://deployd.example", "same-origin", true},
		{"null origin", "deployd.example", "null", "", false},
		{"null origin of a cross-site form", "deployd.example", "null", "cross-site", false},
		{"null origin of our own no-referrer form post", "deployd.example", "null", "same-origin", true},
		{"null origin with Sec-Fetch-Site none", "deployd.example", "null", "none", false},
		{"garbage origin", "deployd.example", "::not a url", "", false},
		{"origin without scheme", "deployd.example", "deployd.example", "", false},
		{"non-http scheme", "deployd.example", "file://deployd.example", "", false},
		{"empty host with an Origin", "", "http://deployd.example", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SameOrigin(tt.host, tt.origin, tt.fetch); got != tt.want {
				t.Errorf("SameOrigin(%q, %q, %q) = %v, want %v", tt.host, tt.origin, tt.fetch, got, tt.want)
			}
		})
	}
}

func FuzzSameOrigin(f *testing.F) {
	f.Add("deployd.example:8080", "http://deployd.example:8080", "same-origin")
	f.Add("deployd.example", "null", "")
	f.Add("[::1]:80", "http://[::1]", "none")
	f.Add("", "https://", "cross-site")
	f.Fuzz(func(t *testing.T, host, origin, fetch string) {
		got := SameOrigin(host, origin, fetch)
		if got && (fetch == "cross-site" || fetch == "same-site") {
			t.Fatalf("SameOrigin(%q, %q, %q) = true for a cross-site request", host, origin, fetch)
		}
		if got && origin == "null" && strings.ToLower(fetch) != "same-origin" {
			t.Fatalf("SameOrigin(%q, null, %q) = true without the browser vouching same-origin", host, fetch)
		}
	})
}

// fakeHeader is a request's headers, Host among them.
type fakeHeader map[string]string

func (h fakeHeader) Host() []byte           { return []byte(h["Host"]) }
func (h fakeHeader) Peek(key string) []byte { return []byte(h[key]) }

func TestSameOriginRequest_IgnoresXForwardedHost(t *testing.T) {
	tests := []struct {
		name string
		h    fakeHeader
		want bool
	}{
		{"same origin", fakeHeader{"Host": "deployd.example", "Origin": "https://deployd.example"}, true},
		{"foreign Origin with a forged X-Forwarded-Host to match", fakeHeader{"Host": "deployd.example",
			"Origin": "https://evil.example", "X-Forwarded-Host": "evil.example"}, false},
		{"own Origin with some other X-Forwarded-Host", fakeHeader{"Host": "deployd.example",
			"Origin": "https://deployd.example", "X-Forwarded-Host": "proxy.internal"}, true},
		{"cross-site by Sec-Fetch-Site", fakeHeader{"Host": "deployd.example", "Sec-Fetch-Site": "cross-site"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SameOriginRequest(tt.h); got != tt.want {
				t.Errorf("SameOriginRequest(%v) = %v, want %v", tt.h, got, tt.want)
			}
		})
	}
}

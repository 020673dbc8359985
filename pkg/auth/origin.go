package auth

import (
	"net"
	"net/url"
	"strings"
)

// SameOrigin reports whether a request with these headers may change state
// on behalf of a cookie: host is the request's Host, origin its Origin
// header and secFetchSite its Sec-Fetch-Site header.
//
// Browsers send at least one of the two headers on every cross-site POST,
// so a request with neither comes from a non-browser client, which cannot
// be carrying a victim's cookie, and is allowed; the CSRF token is checked
// as well in any case. Refused: Sec-Fetch-Site "cross-site" or
// "same-site" (a sibling subdomain is another party) or any value we do not
// know, an Origin of "null" (sandboxed frames, data: URLs, some redirects)
// or one that does not parse, and an Origin whose host and port differ
// from host.
//
// One exception: Origin "null" with Sec-Fetch-Site "same-origin" is a form
// post from one of our own pages. The pages send Referrer-Policy:
// no-referrer, under which browsers serialize a form post's Origin as
// "null"; Sec-Fetch-Site cannot be set by a page, so it settles the question.
func SameOrigin(host, origin, secFetchSite string) bool {
	site := strings.ToLower(secFetchSite)
	switch site {
	case "", "same-origin", "none":
	default:
		return false
	}
	if origin == "" || (origin == "null" && site == "same-origin") {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	oh, op := splitHostPort(u.Host, u.Scheme)
	hh, hp := splitHostPort(host, u.Scheme)
	return hh != "" && strings.EqualFold(oh, hh) && op == hp
}

// RequestHeader is the part of a request SameOriginRequest reads;
// fasthttp's RequestHeader (fiber's c.Request().Header) has it.
type RequestHeader interface {
	// Host is the request's own Host header.
	Host() []byte
	Peek(key string) []byte
}

// SameOriginRequest is SameOrigin for a request: the one rule the API and
// the status page share. The host compared is the request's own Host,
// never X-Forwarded-Host: anyone can send that header, and an attacker's
// page posting with X-Forwarded-Host set to its own origin would
// otherwise pass. The shipped nginx sites pass Host through
// (proxy_set_header Host $host).
func SameOriginRequest(h RequestHeader) bool {
	return SameOrigin(string(h.Host()), string(h.Peek("Origin")), string(h.Peek("Sec-Fetch-Site")))
}

// splitHostPort splits "host[:port]", filling in scheme's default port.
func splitHostPort(hostport, scheme string) (string, string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		// No port (or an IPv6 literal without one).
		host, port = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), ""
	}
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	return host, port
}

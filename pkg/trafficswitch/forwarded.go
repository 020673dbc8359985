package trafficswitch

import (
	"net/http/httputil"
	"net/netip"
	"strings"
)

// setForwarded sets X-Forwarded-For, -Host and -Proto on the outgoing
// request. ReverseProxy has already dropped the client's X-Forwarded-*
// and Forwarded headers.
//
// From a trusted peer (nginx; any peer of a service served on a unix
// socket, trustPeer, where the socket's permissions decide who connects)
// the client's values are kept: its
// X-Forwarded-For gets the peer appended (as nginx's
// $proxy_add_x_forwarded_for does), its X-Forwarded-Host and -Proto pass
// as they are (the peer's Host and "http" when absent), and Forwarded and
// X-Real-IP stay. From any other peer nothing it claims is believed:
// X-Forwarded-For is the peer, X-Forwarded-Host its Host,
// X-Forwarded-Proto "http", and X-Real-IP is dropped. Host itself is
// always passed unchanged.
//
// vals holds the three header values; the caller lends it (the
// exchange's own array) so that setting them allocates nothing. Each
// header gets a slice of it capped at its length, so an append to one
// value copies rather than overwrites the next.
func (sw *Switch) setForwarded(pr *httputil.ProxyRequest, vals *[3]string, trustPeer bool) {
	in, out := pr.In, pr.Out
	peer := peerIP(in.RemoteAddr)
	vals[0], vals[1], vals[2] = peer, in.Host, "http"
	if in.TLS != nil {
		vals[2] = "https"
	}
	if trustPeer || sw.trusted(peer) {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			// A socket peer has no address to append.
			vals[0] = strings.Join(prior, ", ")
			if peer != "" {
				vals[0] += ", " + peer
			}
		}
		if v := in.Header["X-Forwarded-Host"]; len(v) > 0 {
			vals[1] = v[0]
		}
		if v := in.Header["X-Forwarded-Proto"]; len(v) > 0 {
			vals[2] = v[0]
		}
		if v := in.Header["Forwarded"]; len(v) > 0 {
			out.Header["Forwarded"] = v
		}
	} else {
		delete(out.Header, "X-Real-Ip")
	}
	if vals[0] != "" {
		out.Header["X-Forwarded-For"] = vals[0:1:1]
	}
	out.Header["X-Forwarded-Host"] = vals[1:2:2]
	out.Header["X-Forwarded-Proto"] = vals[2:3:3]
}

// peerIP is the address part of a RemoteAddr ("10.0.0.1:5000",
// "[::1]:5000"), without allocating; "" when there is none.
func peerIP(remoteAddr string) string {
	i := strings.LastIndexByte(remoteAddr, ':')
	if i < 0 {
		return ""
	}
	host := remoteAddr[:i]
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host
}

func (sw *Switch) trusted(ip string) bool {
	if len(sw.opts.TrustedProxies) == 0 || ip == "" {
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range sw.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

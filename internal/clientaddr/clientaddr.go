// Package clientaddr decides which address a request came from when it may
// have passed through proxies. A request whose TCP peer is a trusted proxy
// (nginx) is from the rightmost X-Forwarded-For hop that is not itself a
// trusted proxy; any other request is from its peer. Everything left of
// that hop was written by the client and is never believed.
//
// It imports nothing of deployd's, so that the config, the API and the
// traffic switch share one reading of "trusted proxy".
package clientaddr

import (
	"fmt"
	"net/netip"
	"strings"
)

// Proxies are the trusted proxies: addresses and CIDR prefixes. The zero
// value trusts nobody.
type Proxies []netip.Prefix

// Parse reads addresses ("127.0.0.1", "::1") and CIDR prefixes
// ("172.18.0.0/16"); surrounding spaces are ignored. The error names the
// first entry that is neither.
func Parse(entries []string) (Proxies, error) {
	out := make(Proxies, 0, len(entries))
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if strings.Contains(e, "/") {
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", e, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an address or a prefix", e)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Trusted reports whether a is one of the proxies. An IPv4-mapped IPv6
// address counts as its IPv4 address.
func (p Proxies) Trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, pr := range p {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// maxHops bounds the walk through X-Forwarded-For: a client may send a
// header of any length, and no real chain of trusted proxies is this long.
const maxHops = 16

// Client returns the address a request from peer came from. forwardedFor
// holds the X-Forwarded-For header values in the order received; they are
// read only when peer is trusted. The walk goes right to left, since each
// proxy appends the address it saw, and stops at the first hop that is
// not a trusted proxy. A hop that does not parse ends the walk at the last
// trusted address: whatever wrote it was not a proxy that follows the
// rules, so nothing to its left can be attributed.
func (p Proxies) Client(peer netip.Addr, forwardedFor []string) netip.Addr {
	peer = peer.Unmap()
	if len(p) == 0 || !p.Trusted(peer) {
		return peer
	}
	client := peer
	hops := 0
	for i := len(forwardedFor) - 1; i >= 0; i-- {
		rest := forwardedFor[i]
		for rest != "" {
			var hop string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				hop, rest = rest[j+1:], rest[:j]
			} else {
				hop, rest = rest, ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue
			}
			a, ok := parseHop(hop)
			if !ok {
				return client
			}
			client = a
			if hops++; hops >= maxHops || !p.Trusted(a) {
				return client
			}
		}
	}
	return client
}

// parseHop reads one X-Forwarded-For element: an address, optionally with
// a port ("10.0.0.1:5000", "[::1]:5000"), as some proxies write them.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

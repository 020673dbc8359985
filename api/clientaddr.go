package api

import (
	"net"
	"net/netip"

	"github.com/gofiber/fiber/v2"
)

const headerForwardedFor = "X-Forwarded-For"

// clientAddress makes the request's remote address the client's: the TCP
// peer, or, when the peer is one of Options.TrustedProxies, the rightmost
// X-Forwarded-For hop that is not (clientaddr.Proxies.Client). It runs
// first, so that c.IP() means the client everywhere after it: the webhook's
// and the login's failure limits, and the audit trail's addresses. Without
// trusted proxies it does nothing, and X-Forwarded-For is never read.
func (s *Server) clientAddress(c *fiber.Ctx) error {
	if len(s.proxies) == 0 {
		return c.Next()
	}
	ctx := c.Context()
	tcp, ok := ctx.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return c.Next()
	}
	peer, ok := netip.AddrFromSlice(tcp.IP)
	if !ok || !s.proxies.Trusted(peer) {
		return c.Next()
	}
	raw := c.Request().Header.PeekAll(headerForwardedFor)
	if len(raw) == 0 {
		return c.Next()
	}
	values := make([]string, len(raw))
	for i, v := range raw {
		values[i] = string(v)
	}
	client := s.proxies.Client(peer, values)
	// The port is the proxy's connection's, which says nothing of the
	// client; keep it anyway so that the address stays well-formed.
	ctx.SetRemoteAddr(&net.TCPAddr{IP: client.AsSlice(), Port: tcp.Port})
	return c.Next()
}

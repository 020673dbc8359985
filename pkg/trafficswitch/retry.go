package trafficswitch

import (
	"context"
	"errors"
	"net"
	"net/http"
)

// retryable reports whether the failed attempt may be tried again. The
// switch does not buffer request bodies (memory and latency stay flat
// whatever clients upload), so a body is sent again only when the failed
// attempt never read it. Then a request is retried when
//
//   - the replica was never reached (a dial error: connection refused,
//     dial timeout), whatever its method; or
//   - it has a body and the attempt did not read it: the replica cannot
//     have had the whole request, whatever its method; or
//   - its method is idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or
//     an Idempotency-Key header, as net/http counts them) and the error is
//     a connection error, not a timeout: a replica too slow to answer is
//     not given the same work twice.
//
// Never when the client has gone. Everything else, typically a POST whose
// connection broke after it was sent, gets a 502: only the client knows
// whether to send it again.
func (ex *exchange) retryable(req *http.Request, err error) bool {
	if ex.Err() != nil {
		return false
	}
	hasBody := ex.body != nil
	if hasBody && !ex.body.detach() {
		return false
	}
	if isDialError(err) {
		return true
	}
	if hasBody {
		return true
	}
	return idempotent(req) && !isTimeout(err)
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	if _, ok := req.Header["Idempotency-Key"]; ok {
		return true
	}
	_, ok := req.Header["X-Idempotency-Key"]
	return ok
}

// reason says why the switch, not a replica, answered an error or could
// not finish a response. It is the reason label of
// deployd_switch_proxy_errors_total.
type reason int

const (
	reasonDial       reason = iota // no replica accepted a connection
	reasonTimeout                  // no response headers within ResponseHeaderTimeout
	reasonUpstream                 // the connection broke before the response
	reasonUpgrade                  // a protocol switch failed
	reasonClientGone               // the client left before the answer
	reasonAborted                  // the response body broke off after the headers
	numReasons
)

func (r reason) String() string {
	switch r {
	case reasonDial:
		return "dial"
	case reasonTimeout:
		return "timeout"
	case reasonUpstream:
		return "upstream"
	case reasonUpgrade:
		return "upgrade"
	case reasonClientGone:
		return "client_gone"
	case reasonAborted:
		return "aborted"
	}
	return "unknown"
}

func (r reason) status() int {
	if r == reasonTimeout {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

func (r reason) body() string {
	switch r {
	case reasonDial:
		return "502 Bad Gateway: no replica of this service accepted a connection.\n"
	case reasonTimeout:
		return "504 Gateway Timeout: the service did not answer in time.\n"
	case reasonUpgrade:
		return "502 Bad Gateway: the service did not complete the protocol switch.\n"
	}
	return "502 Bad Gateway: the connection to the service broke before it answered.\n"
}

func classify(ex *exchange, err error) reason {
	switch {
	case ex.Err() != nil || errors.Is(err, context.Canceled):
		return reasonClientGone
	case ex.status == http.StatusSwitchingProtocols:
		return reasonUpgrade
	case isDialError(err):
		return reasonDial
	case isTimeout(err):
		return reasonTimeout
	}
	return reasonUpstream
}

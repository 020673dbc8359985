// Package trafficswitch is deployd's request-level traffic switch: per
// service it listens on a fixed address (nginx's upstream points there,
// written once) and forwards each request to the active color's replicas
// with net/http/httputil.ReverseProxy.
//
// A switch is one atomic change of the service's target set (SetTargets).
// Requests already in flight on the old set finish there; every request
// that starts after SetTargets returns goes to the new set. Drain then
// waits until the old color has nothing in flight, closing its upgraded
// (WebSocket) connections and its event streams at the drain timeout.
//
// What a request meets, in order:
//
//  1. maintenance: a 503 with the operator's message (Maintenance);
//  2. hold: while the service is paused, the request waits for Resume,
//     bounded in time and number, else a 503 with Retry-After (Pause);
//  3. the active target set; none yet, or an empty one, is a 503;
//  4. a replica: the one with the fewest requests in flight, ties broken
//     round robin, skipping replicas that refused a connection in the last
//     Options.FailTimeout;
//  5. the forward, on the color's keep-alive pool, retried on another
//     replica by the rules in retry.go; a request that cannot be forwarded
//     gets a 502 (504 on a response timeout) with a short text body.
//
// Bodies stream both ways. Server-sent events and responses of unknown
// length are flushed as they arrive (ReverseProxy's own rule), and Upgrade
// requests (WebSocket) pass through with a 101.
//
// Everything a request does is counted per service and color (metrics.go),
// and Window reports a color's recent requests and 5xx answers for the
// controller's traffic rule.
//
// The Switch knows nothing of the controller: colors are plain strings and
// errors wrap the package's sentinels (ErrInvalid, ErrNotFound,
// ErrConflict, ErrClosed), which an adapter maps to its own codes: Control
// is the controller's TrafficControl port (pause and maintenance),
// TrafficReader its TrafficReader port (Window, for the traffic rule).
package trafficswitch

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
// ErrConflict, ErrClosed), which an adapter maps to its own codes: Router
// is the controller's Router port, Control its TrafficControl port (pause
// and maintenance), TrafficReader its TrafficReader port (Window, for the
// traffic rule).
//
// The adapters drive a Plane, the Switch as the daemon sees it, so that
// the Switch can run in a process of its own (a control plane and a data
// plane, as Envoy and its control plane): a kill or a restart of the
// daemon then never touches traffic. Local is the Plane of a Switch in
// this process; Client that of the switch process, over the JSON control
// API that NewControlHandler serves on its unix socket (wire.go), with
// ErrUnreachable when nothing answers there.
//
// On a cluster, traffic enters through several edge nodes with a switch
// process each. Each serves the same control API over TCP as well, only
// to callers with its token (ServerOptions.Token, NewTCPClient), and
// Fanout is the Plane of them all: a change is made on every edge or,
// when one fails, put back on the others; edges that disagree read as out
// of sync, so that Router's caller sets them again.
//
// The switch process keeps its routing across its own restarts: State is
// what it persists after every change (SaveState, atomically) and
// Restore applies it again (LoadState). In a graceful upgrade the new
// process takes over the listeners' sockets, and the old one follows the
// new one's state file with Restore while Handoff ends its part: new
// connections go to the new process, busy keep-alive connections are
// closed after their next answer, idle ones are left to the client.
package trafficswitch

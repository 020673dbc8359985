package trafficswitch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// ErrUnreachable: the switch process did not answer on its control socket
// or TCP address (no socket, nobody listening, the connection broke). The error also
// wraps the dial's or the transport's own. A mutating call whose
// connection broke after it was sent may or may not have taken effect:
// read Status.
var ErrUnreachable = errors.New("traffic switch unreachable")

// ErrUnauthorized: the switch process refused the call for want of its
// control token (a Client of NewTCPClient without the right one).
var ErrUnauthorized = errors.New("unauthorized")

// Client drives the switch process over its control socket, or its TCP
// control address (see wire.go for the API). It implements Plane and, for the switch process's own
// metrics, prometheus.Gatherer. It is safe for concurrent use and holds
// no connection between calls.
type Client struct {
	addr  string // the socket's path or host:port, for messages
	token string // sent as a bearer token when not empty
	hc    *http.Client
}

var (
	_ Plane               = (*Client)(nil)
	_ prometheus.Gatherer = (*Client)(nil)
)

// gatherTimeout bounds Gather, which has no context: a scrape of the
// daemon must not hang on a switch process that does not answer.
const gatherTimeout = 2 * time.Second

// maxResponseBody bounds what the Client reads of an answer other than
// the metrics.
const maxResponseBody = 1 << 20

// NewClient returns a Client of the control socket at socketPath. It does
// not connect: every call dials anew.
func NewClient(socketPath string) *Client { return newClient("unix", socketPath, "") }

// NewTCPClient returns a Client of the control API a switch process
// serves over TCP at addr (host:port; traffic.switchd.control_listen),
// sending token with every call; a wrong or missing one is answered with
// an error wrapping ErrUnauthorized. It does not connect: every call dials
// anew.
func NewTCPClient(addr, token string) *Client { return newClient("tcp", addr, token) }

func newClient(network, addr, token string) *Client {
	var d net.Dialer
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		// A connection per call: during an upgrade the new process takes
		// over the listener, and a kept-alive connection would go on
		// driving the old one. A unix-socket dial costs microseconds, a
		// TCP one on the edges' network little more than the call.
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	// No Timeout: Drain may rightly take minutes. Every call is bounded by
	// its context.
	return &Client{addr: addr, token: token, hc: &http.Client{Transport: tr}}
}

// SetTargets is Switch.SetTargets in the switch process.
func (c *Client) SetTargets(ctx context.Context, service, color string, addrs []string) error {
	return c.call(ctx, http.MethodPut, service, "targets", wireTargets{Color: color, Addrs: addrs}, nil)
}

// Status is Switch.Status in the switch process.
func (c *Client) Status(ctx context.Context, service string) (Status, error) {
	var w wireStatus
	if err := c.call(ctx, http.MethodGet, service, "", nil, &w); err != nil {
		return Status{}, err
	}
	return w.status(), nil
}

// Window is Switch.Window in the switch process.
func (c *Client) Window(ctx context.Context, service, color string) (requests, errors5xx int, err error) {
	var w wireWindow
	if err := c.call(ctx, http.MethodGet, service, "window?color="+url.QueryEscape(color), nil, &w); err != nil {
		return 0, 0, err
	}
	return w.Requests, w.Errors5xx, nil
}

// Drain is Switch.Drain in the switch process: it blocks until the drain
// ends, or until ctx ends, which ends the drain there too. timeout is
// sent in whole milliseconds, rounded up.
func (c *Client) Drain(ctx context.Context, service, color string, timeout time.Duration) (DrainResult, error) {
	var w wireDrainResult
	req := wireDrain{Color: color, TimeoutMS: wireMS(timeout)}
	if err := c.call(ctx, http.MethodPost, service, "drain", req, &w); err != nil {
		return DrainResult{}, err
	}
	return DrainResult(w), nil
}

// Pause is Plane.Pause in the switch process. maxHold is sent in whole
// milliseconds, rounded up.
func (c *Client) Pause(ctx context.Context, service string, maxHold time.Duration, maxHeld int) error {
	req := wirePause{MaxHoldMS: wireMS(maxHold), MaxHeld: maxHeld}
	return c.call(ctx, http.MethodPost, service, "pause", req, nil)
}

// Resume is Switch.Resume in the switch process.
func (c *Client) Resume(ctx context.Context, service string) error {
	return c.call(ctx, http.MethodPost, service, "resume", nil, nil)
}

// Maintenance is Plane.Maintenance in the switch process.
func (c *Client) Maintenance(ctx context.Context, service string, on bool, message string) error {
	req := wireMaintenance{On: on, Message: message}
	return c.call(ctx, http.MethodPost, service, "maintenance", req, nil)
}

// Info describes the switch process. It wraps errors.ErrUnsupported when
// the process does not tell.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var info Info
	err := c.callPath(ctx, http.MethodGet, "/v1/info", nil, &info)
	return info, err
}

// Wait returns when the switch process it reaches stops serving: killed,
// crashed, stopped, or handed over to a new process by an upgrade. It
// returns at once, with an error wrapping ErrUnreachable, when no process
// answers, and ctx's error when ctx ends first.
func (c *Client) Wait(ctx context.Context) error {
	res, err := c.do(ctx, http.MethodGet, "/v1/wait", nil, nil)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return answerError(res)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	return ctx.Err()
}

// Upgrade asks the switch process to replace itself, and returns when it
// says it did (or refused: errors.ErrUnsupported when it cannot, the
// sentinel of its reason otherwise).
func (c *Client) Upgrade(ctx context.Context) error {
	return c.callPath(ctx, http.MethodPost, "/v1/upgrade", nil, nil)
}

// protoAccept asks for the delimited protobuf exposition, which carries
// the families exactly and in order; a text answer is parsed too.
const protoAccept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"

// Gather reads the switch process's own metrics (GET /metrics), within
// 2s, so the daemon can serve them beside its own
// (prometheus.Gatherers). The families come sorted by name.
func (c *Client) Gather() ([]*dto.MetricFamily, error) {
	// Gatherer has no context; the timeout is its bound.
	ctx, cancel := context.WithTimeout(context.Background(), gatherTimeout)
	defer cancel()
	res, err := c.do(ctx, http.MethodGet, "/metrics", nil, http.Header{"Accept": {protoAccept + ",text/plain;version=0.0.4;q=0.5"}})
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, answerError(res)
	}
	dec := expfmt.NewDecoder(res.Body, expfmt.ResponseFormat(res.Header))
	var out []*dto.MetricFamily
	for {
		mf := new(dto.MetricFamily)
		err := dec.Decode(mf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, c.transportError(ctx, "GET", "/metrics", fmt.Errorf("decode metrics: %w", err))
		}
		out = append(out, mf)
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, nil
}

// call is callPath on a service's route (sub "" for its status). The name
// is escaped as one path segment; "." and ".." in full, or the path would
// be cleaned to another route; "" has no route at all.
func (c *Client) call(ctx context.Context, method, service, sub string, in, out any) error {
	if service == "" {
		return fmt.Errorf("%w: empty service name", ErrInvalid)
	}
	seg := url.PathEscape(service)
	if service == "." || service == ".." {
		seg = strings.ReplaceAll(service, ".", "%2E")
	}
	path := "/v1/services/" + seg
	if sub != "" {
		path += "/" + sub
	}
	return c.callPath(ctx, method, path, in, out)
}

// callPath sends in (JSON, unless nil) and decodes a 2xx answer into out
// (unless nil); any other answer is the error it carries.
func (c *Client) callPath(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	var h http.Header
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body, h = bytes.NewReader(b), http.Header{"Content-Type": {"application/json"}}
	}
	res, err := c.do(ctx, method, path, body, h)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return answerError(res)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, maxResponseBody)).Decode(out); err != nil {
		return c.transportError(ctx, method, path, fmt.Errorf("decode answer: %w", err))
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, h http.Header) (*http.Response, error) {
	// The host is a placeholder: the transport dials the address.
	req, err := http.NewRequestWithContext(ctx, method, "http://switch"+path, body)
	if err != nil {
		return nil, fmt.Errorf("traffic switch %s %s: %w", method, path, err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, method, path, err)
	}
	return res, nil
}

// transportError is err of a call that got no (whole) answer: ctx's
// error when ctx ended, else ErrUnreachable.
func (c *Client) transportError(ctx context.Context, method, path string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("traffic switch %s %s: %w", method, path, ctxErr)
	}
	return fmt.Errorf("traffic switch %s %s on %s: %w: %w", method, path, c.addr, ErrUnreachable, err)
}

// answerError is the error an answer other than 2xx carries: its message
// is the switch's, and it wraps the sentinel of its code.
func answerError(res *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(res.Body, maxRequestBody))
	var we wireError
	if err := json.Unmarshal(b, &we); err != nil || we.Code == "" {
		// Not the API's error (an older process without the route):
		// the status and the start of the body say what happened.
		return fmt.Errorf("traffic switch answered %s: %.200s", res.Status, bytes.TrimSpace(b))
	}
	e := &remoteError{message: we.Message}
	for _, m := range wireCodes {
		if m.code == we.Code {
			e.sentinel = m.sentinel
		}
	}
	return e
}

// remoteError is an error the switch process answered: it reads as the
// Switch's own error there and unwraps to the sentinel of its code (none
// for internal errors).
type remoteError struct {
	message  string
	sentinel error
}

func (e *remoteError) Error() string { return e.message }
func (e *remoteError) Unwrap() error { return e.sentinel }

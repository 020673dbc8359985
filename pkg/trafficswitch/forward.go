package trafficswitch

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"time"
)

// exchange is one client request on its way through the switch. It is
// also the request's context (the client's, plus itself as a value), so
// that ReverseProxy's hooks and the round tripper find it without a
// context.WithValue allocation.
type exchange struct {
	context.Context
	svc   *service
	set   *targetSet
	start time.Time

	rep      int    // index of the replica in set counted for this request, -1 for none
	tried    uint64 // replicas of set already tried, a bit per index
	attempts int
	body     *attemptBody // the current attempt's request body, nil without one

	status       int // status answered to the client; statusClientGone when it left
	upgraded     bool
	upgradedConn io.Closer   // the replica side of an upgraded connection
	stream       *streamBody // the response body of an event stream, nil for other answers
	aborted      bool        // the response body broke off after the headers

	fwd [3]string // the X-Forwarded-For, -Host and -Proto values (setForwarded)
}

type exchangeKey struct{}

// statusClientGone is recorded (as nginx logs 499) when the client left
// before an answer; it is not a 5xx.
const statusClientGone = 499

// Value makes the exchange findable from the outgoing request's context.
func (ex *exchange) Value(key any) any {
	if key == (exchangeKey{}) {
		return ex
	}
	return ex.Context.Value(key)
}

func exchangeOf(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

// ServeHTTP is the forwarder: maintenance, hold, target set, replica,
// forward (see the package doc).
func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.sw.handingOff.Load() {
		s.closeAfter(w, r)
	}
	if !s.admit(w, r) {
		return
	}
	set := s.acquire()
	if set == nil {
		s.reject(w, rejectNoTargets, noTargetsBody, "")
		return
	}
	ex := &exchange{Context: r.Context(), svc: s, set: set, start: time.Now(), rep: -1}
	defer func() {
		if p := recover(); p != nil {
			// ReverseProxy panics with http.ErrAbortHandler when a body
			// breaks off mid-copy; the server recovers it and drops the
			// connection, which is all a proxy can do then.
			ex.aborted = true
			ex.finish()
			panic(p)
		}
		ex.finish()
	}()
	s.sw.proxy.ServeHTTP(w, r.WithContext(ex))
}

// acquire returns the active target set with the request counted on its
// color, or nil when the service has no targets. The count is taken
// before the set is confirmed active: a Drain that starts after a
// SetTargets either sees the count or the request sees the new set.
func (s *service) acquire() *targetSet {
	for {
		set := s.active.Load()
		if set == nil || len(set.replicas) == 0 {
			return nil
		}
		set.color.acquire()
		if s.active.Load() == set {
			return set
		}
		set.color.release()
	}
}

// finish is the request's bookkeeping: counts released, metrics, window.
func (ex *exchange) finish() {
	now := time.Now()
	ex.releaseReplica()
	c := ex.set.color
	if ex.upgraded || ex.stream != nil {
		c.mu.Lock()
		delete(c.upgraded, ex)
		delete(c.streams, ex)
		c.mu.Unlock()
	}
	c.release()

	m := &c.m
	m.requests.Inc()
	failed := ex.status >= 500
	if failed {
		m.errors5xx.Inc()
	}
	if !ex.upgraded {
		m.latency.Observe(now.Sub(ex.start).Seconds())
	}
	if ex.aborted {
		m.proxyErrors[reasonAborted].Inc()
	}
	ex.set.win.record(ex.svc.sw.since(now), ex.svc.sw.windowWidth(), failed)
}

// pickReplica counts the request on a replica of ex.set not tried yet
// when there is one.
func (ex *exchange) pickReplica() bool {
	ex.rep = ex.set.pick(ex.tried, ex.svc.sw.since(ex.start))
	if ex.rep < 0 {
		return false
	}
	if ex.rep < 64 {
		ex.tried |= 1 << ex.rep
	}
	return true
}

func (ex *exchange) releaseReplica() {
	if ex.rep >= 0 {
		ex.set.replicas[ex.rep].inFlight.Add(-1)
		ex.rep = -1
	}
}

func (ex *exchange) replica() *replica { return ex.set.replicas[ex.rep] }

// rewrite is ReverseProxy's Rewrite: forwarding headers, the first
// replica, and the body wrapper that tells whether it was read.
func (sw *Switch) rewrite(pr *httputil.ProxyRequest) {
	ex := pr.In.Context().(*exchange)
	sw.setForwarded(pr, &ex.fwd, ex.svc.socketPeers.Load())
	ex.pickReplica() // the set is not empty: acquire checked
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = ex.replica().addr
	if pr.Out.Body != nil {
		ex.body = &attemptBody{r: pr.Out.Body}
		pr.Out.Body = ex.body
	}
}

// roundTripper forwards on the exchange's color pool and retries by the
// rules of retry.go.
type roundTripper struct{ sw *Switch }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := exchangeOf(req.Context())
	if ex == nil {
		return nil, errors.New("trafficswitch: request did not come through the switch")
	}
	for {
		res, err := ex.set.color.transport.RoundTrip(req)
		if err == nil {
			return res, nil
		}
		ex.attempts++
		if !ex.retryable(req, err) || ex.attempts >= rt.sw.opts.MaxAttempts {
			return nil, err
		}
		if isDialError(err) {
			ex.replica().downUntil.Store(rt.sw.since(time.Now()) + int64(rt.sw.opts.FailTimeout))
		}
		if !ex.moveOn() {
			return nil, err
		}
		ex.set.color.m.retries.Inc()
		req = ex.attemptRequest(req)
	}
}

// moveOn picks the replica for the next attempt: in the service's active
// set (a retry is a new start, so after a switch it goes to the new
// color), another replica than those tried when there is one.
func (ex *exchange) moveOn() bool {
	ex.releaseReplica()
	if active := ex.svc.active.Load(); active != ex.set {
		if next := ex.svc.acquire(); next != nil {
			ex.set.color.release()
			ex.set, ex.tried = next, 0
		}
	}
	return ex.pickReplica()
}

// attemptRequest is req aimed at the exchange's replica, with a fresh
// body wrapper: the previous attempt's request may still be referenced by
// the transport, so it is copied, not changed.
func (ex *exchange) attemptRequest(req *http.Request) *http.Request {
	r2 := new(http.Request)
	*r2 = *req
	u := *req.URL
	u.Host = ex.replica().addr
	r2.URL = &u
	if ex.body != nil {
		ex.body = &attemptBody{r: ex.body.r}
		r2.Body = ex.body
	}
	return r2
}

// modifyResponse is ReverseProxy's ModifyResponse: it records the status
// and, for a 101 or an event stream, registers the upgraded connection or
// the stream with its color so Drain can close it.
func modifyResponse(res *http.Response) error {
	ex := exchangeOf(res.Request.Context())
	ex.status = res.StatusCode
	if isEventStream(res.Header) {
		ex.stream = &streamBody{ReadCloser: res.Body}
		res.Body = ex.stream
		c := ex.set.color
		c.mu.Lock()
		c.streams[ex] = struct{}{}
		c.mu.Unlock()
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		if conn, ok := res.Body.(io.Closer); ok {
			c := ex.set.color
			c.mu.Lock()
			ex.upgraded, ex.upgradedConn = true, conn
			c.upgraded[ex] = struct{}{}
			c.mu.Unlock()
			// A long-lived connection is not a request in flight on the
			// replica: it must not starve it of least-requests picks.
			ex.releaseReplica()
		}
	}
	return nil
}

// isEventStream reports whether h's Content-Type is text/event-stream,
// parameters aside, without allocating.
func isEventStream(h http.Header) bool {
	ct := h["Content-Type"]
	if len(ct) == 0 {
		return false
	}
	media, _, _ := strings.Cut(ct[0], ";")
	return strings.EqualFold(strings.TrimSpace(media), "text/event-stream")
}

// streamBody is an event stream's response body from the replica. end,
// Drain's close at its timeout, closes it under the copy in progress;
// the copy then sees the end of the body rather than an error, so
// ReverseProxy ends the response cleanly (the client's EventSource
// reconnects, to the active color) instead of aborting the connection.
type streamBody struct {
	io.ReadCloser
	ended atomic.Bool
}

func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.ended.Load() {
		err = io.EOF
	}
	return n, err
}

func (b *streamBody) end() {
	b.ended.Store(true)
	_ = b.ReadCloser.Close()
}

// proxyError is ReverseProxy's ErrorHandler: the forward failed before a
// response (or the upgrade failed). It counts the reason and answers 502,
// or 504 for a response timeout, with a short text body.
func (sw *Switch) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	ex := exchangeOf(req.Context())
	reason := classify(ex, err)
	c := ex.set.color
	c.m.proxyErrors[reason].Inc()
	if reason == reasonClientGone {
		ex.status = statusClientGone
		return
	}
	ex.status = reason.status()
	addr := ""
	if ex.rep >= 0 {
		addr = ex.replica().addr
	}
	sw.log.WithFields(map[string]any{
		"service": ex.svc.name, "color": c.name, "replica": addr,
		"reason": reason.String(), "attempts": ex.attempts,
	}).WithError(err).Warn("traffic switch could not forward a request")
	writePlain(w, ex.status, "", reason.body())
}

// writePlain answers a short text/plain body the switch wrote itself.
func writePlain(w http.ResponseWriter, status int, retryAfter, body string) {
	h := w.Header()
	h["Content-Type"] = plainText
	h["Cache-Control"] = noStore
	h["X-Content-Type-Options"] = noSniff
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

var (
	plainText = []string{"text/plain; charset=utf-8"}
	noStore   = []string{"no-store"}
	noSniff   = []string{"nosniff"}
)

// attemptBody is the request body as one attempt's transport sees it. It
// records whether the transport read any of it, and once the attempt has
// failed (detach) it refuses reads, so a transport goroutine that outlives
// the attempt can never take bytes from the next one.
type attemptBody struct {
	r     io.ReadCloser
	state atomic.Int32
}

const (
	bodyUntouched int32 = iota
	bodyRead
	bodyDetached
)

var errBodyDetached = errors.New("trafficswitch: request body belongs to a later attempt")

func (b *attemptBody) Read(p []byte) (int, error) {
	if !b.state.CompareAndSwap(bodyUntouched, bodyRead) && b.state.Load() == bodyDetached {
		return 0, errBodyDetached
	}
	return b.r.Read(p)
}

// Close does not close the client's body: the transport closes a failed
// attempt's body, and the next attempt still needs it. ReverseProxy closes
// the real one when the request ends.
func (b *attemptBody) Close() error { return nil }

// detach ends the attempt's hold on the body and reports whether the
// transport never read from it, which makes it safe to send again.
func (b *attemptBody) detach() bool {
	return b.state.CompareAndSwap(bodyUntouched, bodyDetached) ||
		b.state.Load() == bodyDetached
}

// bufferPool lends ReverseProxy its copy buffers. A channel rather than a
// sync.Pool, because putting a []byte in a sync.Pool allocates.
type bufferPool chan []byte

const (
	bufferPoolSize = 64
	bufferSize     = 32 << 10
)

func (p bufferPool) Get() []byte {
	select {
	case b := <-p:
		return b
	default:
		return make([]byte, bufferSize)
	}
}

func (p bufferPool) Put(b []byte) {
	if cap(b) != bufferSize {
		return
	}
	select {
	case p <- b[:bufferSize]:
	default:
	}
}

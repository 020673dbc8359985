package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// sseEvent is one parsed Server-Sent Event; comment is set for comment
// lines, which carry nothing else.
type sseEvent struct {
	id, typ, data string
	comment       bool
}

// sseReader reads events off a stream, one per next call.
type sseReader struct {
	t  *testing.T
	br *bufio.Reader
}

// next returns the next event or comment; io.EOF when the stream ended.
func (r *sseReader) next() (sseEvent, error) {
	var e sseEvent
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return e, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if e.comment || e.id != "" || e.data != "" {
				return e, nil
			}
		case strings.HasPrefix(line, ":"):
			e.comment = true
		case strings.HasPrefix(line, "id: "):
			e.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			e.typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			e.data = strings.TrimPrefix(line, "data: ")
		default:
			r.t.Errorf("unexpected stream line %q", line)
		}
	}
}

// wantEvent reads the next event and checks its seq and type, and that
// its data is the Event JSON with that seq.
func (r *sseReader) wantEvent(seq int, typ string) Event {
	r.t.Helper()
	e, err := r.next()
	for err == nil && e.comment {
		e, err = r.next()
	}
	if err != nil {
		r.t.Fatalf("read event %d: %v", seq, err)
	}
	if e.id != strconv.Itoa(seq) || e.typ != typ {
		r.t.Fatalf("event id=%q type=%q, want id=%d type=%s", e.id, e.typ, seq, typ)
	}
	var ev Event
	if err := json.Unmarshal([]byte(e.data), &ev); err != nil {
		r.t.Fatalf("event data %q: %v", e.data, err)
	}
	if ev.Seq != seq || ev.Type != typ {
		r.t.Fatalf("event data = %+v, want seq %d type %s", ev, seq, typ)
	}
	return ev
}

func (r *sseReader) wantEnd() {
	r.t.Helper()
	for {
		e, err := r.next()
		if err == io.EOF {
			return
		}
		if err != nil {
			r.t.Fatalf("read: %v, want the stream's end", err)
		}
		if !e.comment {
			r.t.Fatalf("got event %+v, want the stream's end", e)
		}
	}
}

// openStream GETs the events of d-42 from a served harness.
func openStream(t *testing.T, ctx context.Context, base, lastEventID string) (*http.Response, *sseReader) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/deployments/d-42/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+viewerSecret)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET events: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, &sseReader{t: t, br: bufio.NewReader(resp.Body)}
}

func TestEvents_LateClientGetsHistoryThenLiveEventsAndEndsAfterFinalStatus(t *testing.T) {
	h := newHarness(t)
	h.ctl.events = newFakeEvents()
	h.ctl.events.add(controller.EventStatus, "queued", "", false)
	h.ctl.events.add(controller.EventStep, "running", "", false)
	base := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, r := openStream(t, ctx, base, "")
	wantStatus(t, resp, http.StatusOK)
	if got := resp.Header.Get("Content-Type"); got != "text/event-stream" {
		t.Errorf("Content-Type = %q, want text/event-stream", got)
	}
	r.wantEvent(1, "status")
	r.wantEvent(2, "step")

	h.ctl.events.add(controller.EventLog, "", "applying migration 0002", false)
	if got := r.wantEvent(3, "log"); got.Message != "applying migration 0002" {
		t.Errorf("log message = %q, want the line", got.Message)
	}
	h.ctl.events.add(controller.EventStatus, "succeeded", "", true)
	if got := r.wantEvent(4, "status"); got.Status != "succeeded" {
		t.Errorf("final status = %q, want succeeded", got.Status)
	}
	r.wantEnd()
}

func TestEvents_LastEventIDResumesAfterIt(t *testing.T) {
	h := newHarness(t)
	h.ctl.events = newFakeEvents()
	h.ctl.events.add(controller.EventStatus, "queued", "", false)
	h.ctl.events.add(controller.EventStep, "running", "", false)
	h.ctl.events.add(controller.EventStatus, "failed", "health check failed", true)
	base := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, r := openStream(t, ctx, base, "2")
	r.wantEvent(3, "status")
	r.wantEnd()
	if calls := h.ctl.Calls(); len(calls) == 0 || calls[0].method != "Events" || calls[0].limit != 2 {
		t.Errorf("calls = %+v, want Events(d-42, 2) first", calls)
	}
}

func TestEvents_ErrorsBeforeTheStreamAreJSON(t *testing.T) {
	tests := []struct {
		name, lastID string
		err          error
		want         int
	}{
		{"unknown deployment", "", controller.Errorf(controller.ENOTFOUND, "no deployment d-42"), 404},
		{"bad Last-Event-ID", "x", nil, 400},
		{"negative Last-Event-ID", "-1", nil, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.ctl.err = tt.err
			req, _ := http.NewRequest(http.MethodGet, "/api/v1/deployments/d-42/events", nil)
			req.Header.Set("Authorization", "Bearer "+viewerSecret)
			if tt.lastID != "" {
				req.Header.Set("Last-Event-ID", tt.lastID)
			}
			resp := h.send(t, req)
			wantStatus(t, resp, tt.want)
			if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, "application/json") {
				t.Errorf("Content-Type = %q, want JSON", got)
			}
		})
	}
}

func TestEvents_IdleStreamSendsHeartbeats(t *testing.T) {
	h := newHarness(t)
	h.srv.heartbeat = 20 * time.Millisecond
	h.ctl.events = newFakeEvents()
	h.ctl.events.add(controller.EventStatus, "queued", "", false)
	base := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, r := openStream(t, ctx, base, "")
	r.wantEvent(1, "status")
	e, err := r.next()
	if err != nil || !e.comment {
		t.Fatalf("next = %+v, %v; want a heartbeat comment", e, err)
	}
	h.ctl.events.add(controller.EventStatus, "cancelled", "", true)
	r.wantEvent(2, "status")
	r.wantEnd()
}

func TestEvents_ShutdownEndsOpenStreams(t *testing.T) {
	h := newHarness(t)
	h.ctl.events = newFakeEvents()
	h.ctl.events.add(controller.EventStatus, "queued", "", false)
	base := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, r := openStream(t, ctx, base, "")
	r.wantEvent(1, "status")

	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := h.srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown with an open stream: %v", err)
	}
	r.wantEnd()
}

func TestEvents_ClientGoneEndsTheStream(t *testing.T) {
	h := newHarness(t)
	h.srv.heartbeat = 10 * time.Millisecond
	h.ctl.events = newFakeEvents()
	h.ctl.events.add(controller.EventStatus, "queued", "", false)
	base := serve(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	resp, r := openStream(t, ctx, base, "")
	r.wantEvent(1, "status")
	cancel()
	resp.Body.Close()

	// A live stream answers every new event with an Events call; once the
	// writer noticed the client is gone, new events bring no more calls.
	eventsCalls := func() int {
		n := 0
		for _, c := range h.ctl.Calls() {
			if c.method == "Events" {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		before := eventsCalls()
		h.ctl.events.add(controller.EventLog, "", "still there?", false)
		quiet := time.Now().Add(200 * time.Millisecond)
		for eventsCalls() == before && time.Now().Before(quiet) {
			time.Sleep(5 * time.Millisecond)
		}
		if eventsCalls() == before {
			return // the stream has ended
		}
		if time.Now().After(deadline) {
			t.Fatal("stream still reading events 5s after its client left")
		}
	}
}

// openStreamAs GETs the events of d-42 with secret and returns the answer.
func openStreamAs(t *testing.T, ctx context.Context, base, secret string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/deployments/d-42/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET events: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestEvents_StreamsAreCappedPerTokenAndInTotal(t *testing.T) {
	h := newHarness(t)
	h.srv.slots = newStreamSlots(3, 2)
	h.srv.heartbeat = 10 * time.Millisecond
	h.ctl.events = newFakeEvents()
	h.ctl.events.add(controller.EventStatus, "queued", "", false)
	base := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	wantRefused := func(resp *http.Response, what string) {
		t.Helper()
		wantStatus(t, resp, http.StatusTooManyRequests)
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 429 without Retry-After", what)
		}
		if body := decodeJSON[errorBody](t, resp); body.Code != codeRateLimited || !strings.Contains(body.Error, what) {
			t.Errorf("body = %+v, want code %s and a message about %s", body, codeRateLimited, what)
		}
	}
	viewerCtx, closeViewer := context.WithCancel(ctx)
	first := openStreamAs(t, viewerCtx, base, viewerSecret)
	wantStatus(t, first, http.StatusOK)
	wantStatus(t, openStreamAs(t, ctx, base, viewerSecret), http.StatusOK)
	wantRefused(openStreamAs(t, ctx, base, viewerSecret), `token "ci-viewer"`)
	// Another token is not held back by the viewer's streams, up to the
	// total.
	wantStatus(t, openStreamAs(t, ctx, base, operatorSecret), http.StatusOK)
	wantRefused(openStreamAs(t, ctx, base, deployerSecret), "the server has 3 event streams open")

	// A stream that ends gives its slot back.
	closeViewer()
	first.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp := openStreamAs(t, ctx, base, deployerSecret)
		if resp.StatusCode == http.StatusOK {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no slot free 5s after a stream's client left: status %d", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

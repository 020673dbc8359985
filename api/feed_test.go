package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/apicheck"
	"github.com/deployd/deployd/pkg/controller"
)

// openFeed GETs /api/v1/events with secret and, when not "", Last-Event-ID.
func openFeed(t *testing.T, ctx context.Context, base, query, secret, lastEventID string) (*http.Response, *sseReader) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
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

// wantFeed reads the next event, heartbeats skipped unless asked for, and
// checks its id (when not "") and name, and that its data's type is the
// name.
func (r *sseReader) wantFeed(id, typ string) map[string]any {
	r.t.Helper()
	for {
		e, err := r.next()
		if err != nil {
			r.t.Fatalf("read %s event: %v", typ, err)
		}
		if e.comment {
			r.t.Fatalf("comment on the system stream; want named events only")
		}
		if e.typ == feedHeartbeat && typ != feedHeartbeat {
			continue
		}
		if e.typ != typ || (id != "" && e.id != id) {
			r.t.Fatalf("event id=%q event=%q data=%s, want id=%q event=%s", e.id, e.typ, e.data, id, typ)
		}
		var data map[string]any
		if err := json.Unmarshal([]byte(e.data), &data); err != nil {
			r.t.Fatalf("event data %q: %v", e.data, err)
		}
		if data["type"] != typ {
			r.t.Fatalf("data type = %v, want %s", data["type"], typ)
		}
		if ts, _ := data["time"].(string); !strings.HasSuffix(ts, "Z") {
			r.t.Fatalf("data time = %v, want an RFC 3339 UTC time", data["time"])
		}
		return data
	}
}

func feedCursor(seq uint64) string {
	return controller.FeedCursor{Epoch: fakeFeedEpoch, Seq: seq}.String()
}

func deployEvent(status string) controller.FeedEvent {
	return controller.FeedEvent{Type: controller.FeedDeployment, Service: "web", Deployment: "d-42",
		Kind: "deploy", Image: "demoapp:v3", Status: status, Actor: "ci"}
}

func TestSystemEvents_ViewerGetsHelloThenLiveEvents(t *testing.T) {
	h := newHarness(t)
	h.ctl.feed = newFakeFeed()
	h.ctl.feed.add(deployEvent("queued")) // before the connection: not sent
	base := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, _ := openFeed(t, ctx, base, "", "", "")
	wantStatus(t, resp, http.StatusUnauthorized)

	resp, r := openFeed(t, ctx, base, "", viewerSecret, "")
	wantStatus(t, resp, http.StatusOK)
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	checker, err := apicheck.Load(ctx, OpenAPI())
	if err != nil {
		t.Fatalf("load the served document: %v", err)
	}
	if err := checker.Check(resp); err != nil {
		t.Errorf("200 against the document: %v", err)
	}
	hello := r.wantFeed(feedCursor(1), feedHello)
	if hello["resumed"] != false || hello["heartbeat_ms"] != float64(feedHeartbeatInterval.Milliseconds()) {
		t.Errorf("hello = %v, want resumed false and heartbeat_ms %d", hello, feedHeartbeatInterval.Milliseconds())
	}

	h.ctl.feed.add(deployEvent("running"))
	got := r.wantFeed(feedCursor(2), controller.FeedDeployment)
	want := map[string]any{"type": "deployment", "time": "2025-01-02T03:04:05Z", "service": "web", "deployment": "d-42",
		"kind": "deploy", "image": "demoapp:v3", "status": "running", "actor": "ci", "message": ""}
	if d := diffMaps(got, want); d != "" {
		t.Errorf("deployment event: %s", d)
	}
	h.ctl.feed.add(controller.FeedEvent{Type: controller.FeedContainers, Service: "web"})
	if got := r.wantFeed(feedCursor(3), controller.FeedContainers); got["service"] != "web" {
		t.Errorf("containers event = %v, want service web", got)
	}
	h.ctl.feed.add(controller.FeedEvent{Type: controller.FeedNotice, Service: "web", Kind: controller.NotifyRepair, Message: "restarted web-blue-1"})
	if got := r.wantFeed(feedCursor(4), controller.FeedNotice); got["kind"] != "repair" || got["message"] != "restarted web-blue-1" || got["deployment"] != "" {
		t.Errorf("notice = %v, want the repair with every field", got)
	}
}

func diffMaps(got, want map[string]any) string {
	var b strings.Builder
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			b.WriteString("; " + k + ": got " + jsonOf(got[k]) + ", want " + jsonOf(w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			b.WriteString("; unexpected " + k)
		}
	}
	return b.String()
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// The status page's first connection passes its cursor as ?after=, which
// a browser's EventSource can send where it cannot send the header.
func TestSystemEvents_LastEventIDReplaysExactlyTheEventsAfterIt(t *testing.T) {
	for _, via := range []string{"header", "query"} {
		t.Run(via, func(t *testing.T) {
			h := newHarness(t)
			h.ctl.feed = newFakeFeed()
			for _, st := range []string{"queued", "running", "succeeded"} {
				h.ctl.feed.add(deployEvent(st))
			}
			base := serve(t, h)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			var r *sseReader
			if via == "header" {
				_, r = openFeed(t, ctx, base, "", viewerSecret, feedCursor(1))
			} else {
				_, r = openFeed(t, ctx, base, "?after="+feedCursor(1), viewerSecret, "")
			}
			if hello := r.wantFeed(feedCursor(1), feedHello); hello["resumed"] != true {
				t.Errorf("hello = %v, want resumed", hello)
			}
			if got := r.wantFeed(feedCursor(2), controller.FeedDeployment); got["status"] != "running" {
				t.Errorf("first replayed = %v, want running", got)
			}
			if got := r.wantFeed(feedCursor(3), controller.FeedDeployment); got["status"] != "succeeded" {
				t.Errorf("second replayed = %v, want succeeded", got)
			}
			h.ctl.feed.add(controller.FeedEvent{Type: controller.FeedService, Service: "web", Message: "active green"})
			if got := r.wantFeed(feedCursor(4), controller.FeedService); got["message"] != "active green" {
				t.Errorf("live event = %v, want the service change", got)
			}
		})
	}
}

func TestSystemEvents_AnIDItCannotResumeGetsReset(t *testing.T) {
	tests := []struct {
		name, lastID, reason string
	}{
		{"another process", "zzz9-2", "another deployd process"},
		{"malformed", "42", "malformed"},
		{"no longer kept", feedCursor(1), "no longer kept"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.ctl.feed = newFakeFeed()
			h.ctl.feed.keep = 1
			for _, st := range []string{"queued", "running", "succeeded"} {
				h.ctl.feed.add(deployEvent(st))
			}
			base := serve(t, h)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			_, r := openFeed(t, ctx, base, "", viewerSecret, tt.lastID)
			if hello := r.wantFeed(feedCursor(3), feedHello); hello["resumed"] != false {
				t.Errorf("hello = %v, want resumed false", hello)
			}
			if got := r.wantFeed(feedCursor(3), feedReset); !strings.Contains(got["reason"].(string), tt.reason) {
				t.Errorf("reset reason = %q, want it to say %q", got["reason"], tt.reason)
			}
			// Live from now on.
			h.ctl.feed.add(deployEvent("queued"))
			r.wantFeed(feedCursor(4), controller.FeedDeployment)
		})
	}
}

func TestSystemEvents_ServiceFilter(t *testing.T) {
	h := newHarness(t)
	h.ctl.feed = newFakeFeed()
	base := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, r := openFeed(t, ctx, base, "?service=api", viewerSecret, "")
	r.wantFeed(feedCursor(0), feedHello)
	h.ctl.feed.add(deployEvent("queued"))
	h.ctl.feed.add(controller.FeedEvent{Type: controller.FeedContainers, Service: "api"})
	if got := r.wantFeed(feedCursor(2), controller.FeedContainers); got["service"] != "api" {
		t.Errorf("event = %v, want api's only", got)
	}
	for _, c := range h.ctl.Calls() {
		if c.method == "Feed" && c.service != "api" {
			t.Errorf("Feed call %+v, want every read of service api", c)
		}
	}
}

func TestSystemEvents_HeartbeatIsANamedEventAtTheConfiguredInterval(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.FeedHeartbeat = 20 * time.Millisecond })
	h.ctl.feed = newFakeFeed()
	h.ctl.feed.add(deployEvent("queued"))
	base := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, r := openFeed(t, ctx, base, "", viewerSecret, "")
	if hello := r.wantFeed(feedCursor(1), feedHello); hello["heartbeat_ms"] != float64(20) {
		t.Errorf("hello = %v, want heartbeat_ms 20", hello)
	}
	r.wantFeed(feedCursor(1), feedHeartbeat)
	r.wantFeed(feedCursor(1), feedHeartbeat)
}

func TestSystemEvents_StreamsAreCappedPerToken(t *testing.T) {
	h := newHarness(t)
	h.srv.slots = newStreamSlots(8, 1)
	base := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, r := openFeed(t, ctx, base, "", viewerSecret, "")
	wantStatus(t, resp, http.StatusOK)
	r.wantFeed("", feedHello)
	// A deployment stream counts against the same slots.
	refused := openStreamAs(t, ctx, base, viewerSecret)
	wantStatus(t, refused, http.StatusTooManyRequests)
	resp, _ = openFeed(t, ctx, base, "", viewerSecret, "")
	wantStatus(t, resp, http.StatusTooManyRequests)
	if body := decodeJSON[errorBody](t, resp); body.Code != codeRateLimited || resp.Header.Get("Retry-After") == "" {
		t.Errorf("body = %+v, Retry-After %q; want %s with a Retry-After", body, resp.Header.Get("Retry-After"), codeRateLimited)
	}
	resp, _ = openFeed(t, ctx, base, "", operatorSecret, "")
	wantStatus(t, resp, http.StatusOK)
}

func TestSystemEvents_ShutdownEndsTheStream(t *testing.T) {
	h := newHarness(t)
	base := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, r := openFeed(t, ctx, base, "", viewerSecret, "")
	r.wantFeed("", feedHello)

	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := h.srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown with an open stream: %v", err)
	}
	r.wantEnd()
}

func TestSystemEvents_AReaderOvertakenByTheRingGetsResetAndGoesOn(t *testing.T) {
	h := newHarness(t)
	h.ctl.feed = newFakeFeed()
	h.ctl.feed.keep = 1
	base := serve(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, r := openFeed(t, ctx, base, "", viewerSecret, "")
	r.wantFeed(feedCursor(0), feedHello)

	// The stream's next read waits until three events went by a ring
	// that keeps one.
	release := make(chan struct{})
	h.ctl.mu.Lock()
	h.ctl.block = release
	h.ctl.mu.Unlock()
	for _, st := range []string{"queued", "running", "succeeded"} {
		h.ctl.feed.add(deployEvent(st))
	}
	h.ctl.mu.Lock()
	h.ctl.block = nil
	h.ctl.mu.Unlock()
	close(release)

	if got := r.wantFeed(feedCursor(3), feedReset); !strings.Contains(got["reason"].(string), "no longer kept") {
		t.Errorf("reset = %v, want it to say the events are no longer kept", got)
	}
	h.ctl.feed.add(deployEvent("queued"))
	r.wantFeed(feedCursor(4), controller.FeedDeployment)
}

package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// feedServer serves one connection's frames per request, in order, and
// records each request's Last-Event-ID and query.
type feedServer struct {
	mu      sync.Mutex
	answers []string // one per connection; the last repeats
	lastIDs []string
	queries []string
	status  int
}

func (s *feedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.lastIDs = append(s.lastIDs, r.Header.Get("Last-Event-ID"))
	s.queries = append(s.queries, r.URL.RawQuery)
	n := min(len(s.lastIDs), len(s.answers)) - 1
	body, status := s.answers[n], s.status
	s.mu.Unlock()
	if r.URL.Path != "/api/v1/events" {
		http.NotFound(w, r)
		return
	}
	if status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, `{"error":"unknown service \"nope\"","code":"not_found"}`)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, body)
}

func frame(id, typ, data string) string {
	return "id: " + id + "\nevent: " + typ + "\ndata: " + data + "\n\n"
}

func TestWatch_ReconnectsWithTheLastIDAndPassesReset(t *testing.T) {
	s := &feedServer{answers: []string{
		frame("e1-4", "hello", `{"type":"hello","time":"2026-01-02T03:04:05Z","resumed":false,"heartbeat_ms":5000}`) +
			frame("e1-5", "deployment", `{"type":"deployment","time":"2026-01-02T03:04:06Z","service":"web","deployment":"d-1","kind":"deploy","image":"demoapp:v2","status":"queued","actor":"ci","message":""}`),
		frame("e2-0", "hello", `{"type":"hello","time":"2026-01-02T03:04:07Z","resumed":false,"heartbeat_ms":5000}`) +
			frame("e2-0", "reset", `{"type":"reset","time":"2026-01-02T03:04:07Z","reason":"restarted"}`) +
			frame("e2-1", "containers", `{"type":"containers","time":"2026-01-02T03:04:08Z","service":"web"}`),
	}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, testToken, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	c.minBackoff, c.maxBackoff = time.Millisecond, 5*time.Millisecond

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []SystemEvent
	err = c.Watch(ctx, "web", func(ev SystemEvent) error {
		got = append(got, ev)
		if ev.Type == "containers" {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch = %v, want context.Canceled once the test stopped it", err)
	}
	var types []string
	for _, ev := range got {
		types = append(types, ev.Type)
	}
	if want := []string{"hello", "deployment", "hello", "reset", "containers"}; !slices.Equal(types, want) {
		t.Fatalf("events = %v, want %v", types, want)
	}
	d := got[1]
	if d.ID != "e1-5" || d.Service != "web" || d.Deployment != "d-1" || d.Status != "queued" || d.Image != "demoapp:v2" ||
		!d.Time.Equal(time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)) || len(d.Data) == 0 {
		t.Errorf("deployment event = %+v", d)
	}
	if got[3].Reason != "restarted" {
		t.Errorf("reset = %+v, want its reason", got[3])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lastIDs) < 2 || s.lastIDs[0] != "" || s.lastIDs[1] != "e1-5" {
		t.Errorf("Last-Event-IDs = %q, want none, then e1-5", s.lastIDs)
	}
	if s.queries[0] != "service=web" {
		t.Errorf("query = %q, want service=web", s.queries[0])
	}
}

func TestWatch_UnknownServiceIsNotRetried(t *testing.T) {
	s := &feedServer{answers: []string{""}, status: http.StatusNotFound}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, testToken, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	err = c.Watch(ctxT(t), "nope", func(SystemEvent) error { return nil })
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Fatalf("Watch = %v, want a 404 APIError", err)
	}
	if len(s.lastIDs) != 1 {
		t.Errorf("%d requests, want 1", len(s.lastIDs))
	}
}

package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

const testToken = "tok-0123456789abcdef"

// recorded is one request the fake server saw.
type recorded struct {
	Method, Path, RawPath, Query, Auth, Body string
}

// fakeAPI answers every request with status and body and records it.
func fakeAPI(t *testing.T, status int, body string) (*Client, *[]recorded) {
	t.Helper()
	var (
		mu   sync.Mutex
		reqs []recorded
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, recorded{r.Method, r.URL.Path, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Authorization"), string(b)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, testToken, srv.Client())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, &reqs
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const deploymentJSON = `{"id":"d-1","service":"web","kind":"deploy","image":"demoapp:v2","from_color":"blue","to_color":"green",
"status":"running","error":"","steps":[{"name":"pull","status":"succeeded","started_at":"2026-01-02T03:04:05Z","finished_at":null,"message":"pulled"}],
"trigger":{"source":"api","actor":"ci","commit":"abc"},"created_at":"2026-01-02T03:04:05Z","finished_at":null}`

func TestClient_CallsSendRouteTokenAndBody(t *testing.T) {
	tests := []struct {
		name string
		call func(context.Context, *Client) error
		want recorded
	}{
		{
			name: "deploy",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Deploy(ctx, "web", "v2", "abc", "alice")
				return err
			},
			want: recorded{Method: "POST", Path: "/api/v1/services/web/deployments", Body: `{"image":"v2","commit":"abc","on_behalf_of":"alice"}`},
		},
		{
			name: "deploy leaves out empty commit and actor",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Deploy(ctx, "web", "v2", "", "")
				return err
			},
			want: recorded{Method: "POST", Path: "/api/v1/services/web/deployments", Body: `{"image":"v2"}`},
		},
		{
			name: "rollback",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Rollback(ctx, "web", false)
				return err
			},
			want: recorded{Method: "POST", Path: "/api/v1/services/web/rollback"},
		},
		{
			name: "cancel escapes the id",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Cancel(ctx, "d/1?x")
				return err
			},
			want: recorded{Method: "POST", Path: "/api/v1/deployments/d/1?x/cancel", RawPath: "/api/v1/deployments/d%2F1%3Fx/cancel"},
		},
		{
			name: "deployment",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Deployment(ctx, "d-1")
				return err
			},
			want: recorded{Method: "GET", Path: "/api/v1/deployments/d-1"},
		},
		{
			name: "deployments with service and limit",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Deployments(ctx, "web", 5)
				return err
			},
			want: recorded{Method: "GET", Path: "/api/v1/deployments", Query: "limit=5&service=web"},
		},
		{
			name: "deployments of all services",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Deployments(ctx, "", 0)
				return err
			},
			want: recorded{Method: "GET", Path: "/api/v1/deployments"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, reqs := fakeAPI(t, http.StatusOK, `{}`)
			if err := tt.call(ctxT(t), c); err != nil {
				t.Fatalf("call: %v", err)
			}
			if len(*reqs) != 1 {
				t.Fatalf("requests = %d, want 1", len(*reqs))
			}
			got := (*reqs)[0]
			want := tt.want
			want.Auth = "Bearer " + testToken
			if want.RawPath == "" {
				want.RawPath = want.Path
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("request =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestNew_BaseURLPathPrefixIsKept(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.Path
		_, _ = io.WriteString(w, `{"services":[]}`)
	}))
	defer srv.Close()
	c, err := New(srv.URL+"/deployd/", testToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Services(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if want := "/deployd/api/v1/services"; got != want {
		t.Fatalf("path = %q, want %q", got, want)
	}
}

func TestNew_RefusesBadInput(t *testing.T) {
	tests := []struct{ name, url, token, want string }{
		{"no scheme", "deployd.example.com", testToken, "must start with http:// or https://"},
		{"other scheme", "ftp://x", testToken, "must start with http"},
		{"no host", "http://", testToken, "no host"},
		{"user info", "https://u:pw@x", testToken, "must not hold user info"},
		{"no token", "https://x", "", "no API token"},
		{"token with newline", "https://x", testToken + "\n", "whitespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.url, tt.token, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New(%q) error = %v, want it to contain %q", tt.url, err, tt.want)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Fatalf("error %q repeats the URL's password", err)
			}
		})
	}
}

func TestDeployment_DecodesControllerTypes(t *testing.T) {
	c, _ := fakeAPI(t, http.StatusOK, deploymentJSON)
	d, err := c.Deployment(ctxT(t), "d-1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != controller.StatusRunning || d.ToColor != controller.Green || len(d.Steps) != 1 ||
		d.Steps[0].Status != controller.StepSucceeded || d.Trigger.Actor != "ci" {
		t.Fatalf("deployment = %+v, want running to green with one succeeded step by ci", d)
	}
}

func TestServices_UnwrapsList(t *testing.T) {
	c, _ := fakeAPI(t, http.StatusOK, `{"services":[{"name":"web","active_color":"blue","active_image":"demoapp:v1","colors":{}}]}`)
	got, err := c.Services(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "web" || got[0].ActiveColor != controller.Blue {
		t.Fatalf("services = %+v, want web active on blue", got)
	}
}

func TestClient_ErrorAnswersAreAPIErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		want     APIError
		sentinel error
	}{
		{
			name:   "busy service",
			status: http.StatusConflict,
			body:   `{"error":"service web is busy","code":"conflict","deployment_id":"d-7"}`,
			want:   APIError{Status: 409, Code: "conflict", Message: "service web is busy", DeploymentID: "d-7"},
		},
		{
			name:     "not found",
			status:   http.StatusNotFound,
			body:     `{"error":"no service \"x\"","code":"not_found"}`,
			want:     APIError{Status: 404, Code: "not_found", Message: `no service "x"`},
			sentinel: controller.ErrNotFound,
		},
		{
			name:     "unavailable",
			status:   http.StatusServiceUnavailable,
			body:     `{"error":"docker is down","code":"unavailable"}`,
			want:     APIError{Status: 503, Code: "unavailable", Message: "docker is down"},
			sentinel: controller.ErrUnavailable,
		},
		{
			name:   "proxy page",
			status: http.StatusBadGateway,
			body:   `<html>bad gateway</html>`,
			want:   APIError{Status: 502},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := fakeAPI(t, tt.status, tt.body)
			_, err := c.Deploy(ctxT(t), "web", "v2", "", "")
			var got *APIError
			if !errors.As(err, &got) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if *got != tt.want {
				t.Fatalf("APIError = %+v, want %+v", *got, tt.want)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Fatalf("errors.Is(%v, %v) = false, want true", err, tt.sentinel)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Fatalf("error %q contains the token", err)
			}
		})
	}
}

// sseServer serves a deployment's events: the first connection sends
// events 1..dropAfter and drops; later ones resume after Last-Event-ID.
type sseServer struct {
	events    []api.Event
	dropAfter int

	mu          sync.Mutex
	lastEventID []string
}

func (s *sseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"bad token","code":"unauthorized"}`)
		return
	}
	if !strings.HasSuffix(r.URL.Path, "/api/v1/deployments/d-1/events") {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"no deployment","code":"not_found"}`)
		return
	}
	s.mu.Lock()
	first := len(s.lastEventID) == 0
	s.lastEventID = append(s.lastEventID, r.Header.Get("Last-Event-ID"))
	s.mu.Unlock()
	from := 0
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		_, _ = fmt.Sscan(id, &from)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	_, _ = io.WriteString(w, ": keep-alive\n\n")
	for _, ev := range s.events {
		if ev.Seq <= from {
			continue
		}
		if first && ev.Seq > s.dropAfter {
			// Drop the connection mid-stream, as a restarting proxy would.
			panic(http.ErrAbortHandler)
		}
		b, _ := json.Marshal(ev)
		fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Type, b)
		fl.Flush()
	}
}

func (s *sseServer) resumedFrom() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lastEventID...)
}

func testEvents() []api.Event {
	return []api.Event{
		{Seq: 1, Type: controller.EventStatus, Status: "running"},
		{Seq: 2, Type: controller.EventStep, Step: "pull", Status: "running"},
		{Seq: 3, Type: controller.EventLog, Step: "pull", Message: "pulled demoapp:v2"},
		{Seq: 4, Type: controller.EventStep, Step: "pull", Status: "succeeded"},
		{Seq: 5, Type: controller.EventStep, Step: "health", Status: "running"},
		{Seq: 6, Type: controller.EventStatus, Status: "succeeded"},
	}
}

func newSSEClient(t *testing.T, s *sseServer) *Client {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, testToken, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	c.minBackoff, c.maxBackoff = time.Millisecond, 5*time.Millisecond
	return c
}

func seqs(evs []api.Event) []int {
	out := make([]int, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.Seq)
	}
	return out
}

func TestEvents_DroppedConnectionResumesWithLastEventID(t *testing.T) {
	s := &sseServer{events: testEvents(), dropAfter: 3}
	c := newSSEClient(t, s)
	var got []api.Event
	err := c.Events(ctxT(t), "d-1", 0, func(e api.Event) error {
		got = append(got, e)
		return nil
	})
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if want := []int{1, 2, 3, 4, 5, 6}; !reflect.DeepEqual(seqs(got), want) {
		t.Fatalf("seqs = %v, want %v (each once, in order)", seqs(got), want)
	}
	if got[2].Message != "pulled demoapp:v2" || got[2].Step != "pull" {
		t.Fatalf("event 3 = %+v, want the pull log line", got[2])
	}
	if want := []string{"", "3"}; !reflect.DeepEqual(s.resumedFrom(), want) {
		t.Fatalf("Last-Event-ID per connection = %q, want %q", s.resumedFrom(), want)
	}
}

func TestEvents_AfterSkipsSeenEvents(t *testing.T) {
	s := &sseServer{events: testEvents(), dropAfter: 100}
	c := newSSEClient(t, s)
	var got []api.Event
	err := c.Events(ctxT(t), "d-1", 4, func(e api.Event) error {
		got = append(got, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{5, 6}; !reflect.DeepEqual(seqs(got), want) {
		t.Fatalf("seqs = %v, want %v", seqs(got), want)
	}
	if want := []string{"4"}; !reflect.DeepEqual(s.resumedFrom(), want) {
		t.Fatalf("Last-Event-ID = %q, want %q", s.resumedFrom(), want)
	}
}

func TestEvents_CallbackErrorStopsTheStream(t *testing.T) {
	c := newSSEClient(t, &sseServer{events: testEvents(), dropAfter: 100})
	stop := errors.New("stop here")
	n := 0
	err := c.Events(ctxT(t), "d-1", 0, func(api.Event) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v, want the callback's error", err)
	}
	if n != 2 {
		t.Fatalf("callback calls = %d, want 2", n)
	}
}

func TestEvents_UnknownDeploymentIsNotRetried(t *testing.T) {
	s := &sseServer{events: testEvents()}
	c := newSSEClient(t, s)
	err := c.Events(ctxT(t), "nope", 0, func(api.Event) error { return nil })
	if !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("err = %v, want not found", err)
	}
	if n := len(s.resumedFrom()); n != 0 {
		t.Fatalf("stream connections = %d, want 0", n)
	}
}

func TestEvents_StreamWithoutFinalStatusRetriesUntilContextEnds(t *testing.T) {
	// The server never sends a final status: Events keeps reconnecting and
	// gives up only with its context.
	s := &sseServer{events: testEvents()[:4], dropAfter: 100}
	c := newSSEClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	n := 0
	err := c.Events(ctx, "d-1", 0, func(api.Event) error { n++; return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if n != 4 {
		t.Fatalf("events = %d, want 4 (no repeats across reconnects)", n)
	}
	if got := len(s.resumedFrom()); got < 2 {
		t.Fatalf("connections = %d, want reconnects", got)
	}
}

func TestSSEFrame_Parsing(t *testing.T) {
	tests := []struct {
		name   string
		lines  []string
		want   api.Event
		wantOK bool
	}{
		{
			name:   "seq from the id line when data has none",
			lines:  []string{"id: 7", "event: log", `data: {"message":"x"}`},
			want:   api.Event{Seq: 7, Type: "log", Message: "x"},
			wantOK: true,
		},
		{
			name:   "data split over lines",
			lines:  []string{"id:2", `data: {"seq":2,`, `data: "type":"step"}`},
			want:   api.Event{Seq: 2, Type: "step"},
			wantOK: true,
		},
		{
			name:  "comment only",
			lines: []string{": ping"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f sseFrame
			for _, l := range tt.lines {
				f.add(l)
			}
			got, ok, err := f.event()
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantOK || got != tt.want {
				t.Fatalf("event = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func FuzzSSEFrame(f *testing.F) {
	f.Add("id: 1\nevent: step\ndata: {\"seq\":1,\"type\":\"step\"}")
	f.Add(": ping\ndata: {")
	f.Fuzz(func(t *testing.T, in string) {
		var fr sseFrame
		for _, l := range strings.Split(in, "\n") {
			fr.add(l)
		}
		ev, ok, err := fr.event()
		if err != nil && ok {
			t.Fatalf("event() = %+v, ok with error %v", ev, err)
		}
	})
}

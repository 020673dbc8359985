package dockerx

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// fakeEngine is an httptest server speaking just enough of the Docker
// Engine API for one test. Routes are "METHOD /path" without the version
// prefix; every request is recorded so tests can check what was sent.
type fakeEngine struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	routes map[string]http.HandlerFunc
	reqs   []fakeRequest
}

type fakeRequest struct {
	Method string
	Path   string
	Query  url.Values
	Body   []byte
}

var versionPrefix = regexp.MustCompile(`^/v[0-9.]+`)

func newFakeEngine(t *testing.T) *fakeEngine {
	t.Helper()
	f := &fakeEngine{t: t, routes: map[string]http.HandlerFunc{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	path := versionPrefix.ReplaceAllString(r.URL.Path, "")
	if path == "/_ping" {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "OK")
		return
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, fakeRequest{Method: r.Method, Path: path, Query: r.URL.Query(), Body: body})
	h := f.routes[r.Method+" "+path]
	f.mu.Unlock()
	if h == nil {
		writeEngineError(w, http.StatusNotFound, "fake engine: no route for "+r.Method+" "+path)
		return
	}
	h(w, r)
}

func (f *fakeEngine) handle(route string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[route] = h
}

// requests returns the recorded requests for route ("METHOD /path").
func (f *fakeEngine) requests(route string) []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeRequest
	for _, r := range f.reqs {
		if r.Method+" "+r.Path == route {
			out = append(out, r)
		}
	}
	return out
}

// client returns a Client connected to the fake with fast pull retries.
func (f *fakeEngine) client(publish bool) (*Client, *logtest.Hook) {
	f.t.Helper()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := New(ctx, Options{
		Host:         "tcp://" + f.srv.Listener.Addr().String(),
		PublishPorts: publish,
		Logger:       log,
		PullRetries:  3,
		PullBackoff:  time.Millisecond,
	})
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	f.t.Cleanup(func() { _ = c.Close() })
	return c, hook
}

func writeEngineError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// fixture serves a file from testdata as the response body.
func fixture(t *testing.T, name string) http.HandlerFunc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return func(w http.ResponseWriter, _ *http.Request) {
		if strings.HasSuffix(name, ".json") {
			w.Header().Set("Content-Type", "application/json")
		}
		_, _ = w.Write(b)
	}
}

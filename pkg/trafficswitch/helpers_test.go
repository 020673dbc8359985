package trafficswitch

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// harness is a Switch serving one service on a loopback port.
type harness struct {
	t       *testing.T
	sw      *Switch
	reg     *prometheus.Registry
	log     *test.Hook
	service string
	url     string // http://127.0.0.1:<port>
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	logger, hook := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	reg := prometheus.NewRegistry()
	opts.Logger, opts.Registerer = logger, reg
	sw, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sw.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	h := &harness{t: t, sw: sw, reg: reg, log: hook, service: "web"}
	if err := sw.Listen(context.Background(), h.service, "127.0.0.1:0"); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	h.url = "http://" + sw.Addr(h.service).String()
	return h
}

func (h *harness) setTargets(color string, addrs ...string) {
	h.t.Helper()
	if err := h.sw.SetTargets(h.service, color, addrs); err != nil {
		h.t.Fatalf("SetTargets(%s, %v): %v", color, addrs, err)
	}
}

// backend is a replica: it answers its name, after reading the request
// body, and counts its requests.
type backend struct {
	name string
	srv  *httptest.Server
	hits chan struct{}
}

// newBackend starts a replica named name; handler, when set, serves
// instead of the default answer.
func newBackend(t testing.TB, name string, handler http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{name: name, hits: make(chan struct{}, 1<<16)}
	if handler == nil {
		handler = func(w http.ResponseWriter, r *http.Request) {
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("X-Replica", name)
			_, _ = fmt.Fprintf(w, "%s %s %d", name, r.Method, n)
		}
	}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case b.hits <- struct{}{}:
		default:
		}
		handler(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

func (b *backend) hitCount() int { return len(b.hits) }

// refusedAddr is a loopback address nothing listens on: dials to it are
// refused.
func refusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return addr
}

// do sends one request with a fresh client and returns status and body.
func do(t testing.TB, method, url, body string, header http.Header) (int, string) {
	t.Helper()
	status, got, err := tryDo(http.DefaultClient, method, url, body, header)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return status, got
}

func tryDo(c *http.Client, method, url, body string, header http.Header) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, "", fmt.Errorf("read body: %w", err)
	}
	return res.StatusCode, string(b), nil
}

// counterValue reads one series of a counter or gauge from the registry;
// 0 when absent.
func counterValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

package trafficswitch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/internal/testenv"
	"github.com/deployd/deployd/internal/xtest"
)

// The goal: 16 keep-alive clients, 20 switches, 0 failed requests
// of any method. Every switch goes to a fresh set of replicas (1 or 2),
// and the old set is drained and then stopped, as a deploy does.
const (
	loadClients  = 16
	loadSwitches = 20
	// loadDwell is the steady traffic between two switches.
	loadDwell = 60 * time.Millisecond
	// loadLimit bounds a whole run.
	loadLimit = 60 * time.Second
)

func TestLoad_NoFailedRequestAcross20Switches(t *testing.T) {
	if testing.Short() {
		t.Skip("load test; skipped with -short")
	}
	for _, mix := range []string{"all-POST", "mixed"} {
		t.Run("direct/"+mix, func(t *testing.T) {
			h := newHarness(t, Options{})
			runLoad(t, h, h.url, mix)
		})
	}
}

func TestLoad_ThroughNginx_NoFailedPOSTAcross20Switches(t *testing.T) {
	if testing.Short() {
		t.Skip("load test; skipped with -short")
	}
	for _, mix := range []string{"all-POST", "mixed"} {
		t.Run(mix, func(t *testing.T) {
			trusted, _ := ParseTrustedProxies([]string{"127.0.0.1"})
			h := newHarness(t, Options{TrustedProxies: trusted})
			h.setTargets("blue", newBackend(t, "blue-warmup", nil).addr())
			ng := nginxBeforeSwitch(t, h)
			status, body, err := testenv.Get(t.Context(), ng.URL+"/")
			if err != nil || status != http.StatusOK || !strings.HasPrefix(body, "blue-warmup") {
				t.Fatalf("nginx -> switch -> replica: %d %q %v", status, body, err)
			}
			runLoad(t, h, ng.URL, mix)
		})
	}
}

// nginxBeforeSwitch starts a private nginx whose upstream for h's
// service points at the switch, written before nginx starts: the design's
// "written once", with no reload at all during the test.
func nginxBeforeSwitch(t *testing.T, h *harness) *lab.Nginx {
	t.Helper()
	if _, err := lab.FindNginx(); err != nil {
		if testenv.InCI() {
			t.Fatalf("%v (CI=true, so this is a failure, not a skip)", err)
		}
		t.Skipf("%v; skipping", err)
	}
	service := testenv.UniqueService(t)
	prefix := t.TempDir()
	if err := os.MkdirAll(filepath.Join(prefix, "upstreams"), 0o755); err != nil {
		t.Fatalf("upstreams dir: %v", err)
	}
	conf := fmt.Sprintf("upstream %s {\n    server %s max_fails=0;\n    keepalive 16;\n}\n", service, h.sw.Addr(h.service))
	if err := os.WriteFile(filepath.Join(prefix, "upstreams", service+".conf"), []byte(conf), 0o644); err != nil {
		t.Fatalf("write upstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ng, err := lab.StartNginx(ctx, prefix, lab.NginxConfig{Services: []string{service}})
	if err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ng.Stop(ctx); err != nil {
			t.Errorf("stop nginx: %v", err)
		}
		if t.Failed() {
			t.Logf("nginx error log (tail):\n%s", ng.ErrorLogTail())
		}
	})
	return ng
}

// loadStats is what the clients saw.
type loadStats struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
}

func (s *loadStats) fail(format string, args ...any) {
	s.failed.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) < 10 {
		s.failures = append(s.failures, fmt.Sprintf(format, args...))
	}
}

// runLoad sends load to url with loadClients keep-alive clients while it
// makes loadSwitches switches of h's service, and fails the test on any
// failed request.
func runLoad(t *testing.T, h *harness, url, mix string) {
	ctx, cancel := context.WithTimeout(context.Background(), loadLimit)
	defer cancel()
	var (
		stats   loadStats
		current atomic.Value // prefix of the active set's replica names
		firstAt atomic.Int64 // unix nanos of the first answer from the active set
	)
	current.Store("blue-warmup")
	firstAt.Store(1)

	// The first set.
	color, gen := "blue", 0
	set := startSet(t, color, gen)
	h.setTargets(color, set.addrs()...)
	current.Store(set.prefix)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range loadClients {
		wg.Go(func() {
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				method, body := http.MethodPost, fmt.Sprintf("client=%d&n=%d", c, i)
				if mix == "mixed" && i%2 == 1 {
					method, body = http.MethodGet, ""
				}
				status, got, err := tryDo(client, method, url+"/orders", body, nil)
				want := fmt.Sprintf(" %s %d", method, len(body))
				switch {
				case err != nil:
					stats.fail("%s: %v", method, err)
				case status != http.StatusOK || !strings.HasSuffix(got, want):
					stats.fail("%s: %d %q", method, status, got)
				default:
					stats.ok.Add(1)
					if strings.HasPrefix(got, current.Load().(string)) && firstAt.Load() == 0 {
						firstAt.CompareAndSwap(0, time.Now().UnixNano())
					}
				}
			}
		})
	}

	var toFirst []time.Duration
	var drains []DrainResult
	start := time.Now()
	for i := 1; i <= loadSwitches && ctx.Err() == nil; i++ {
		time.Sleep(loadDwell)
		old, oldColor := set, color
		color = map[string]string{"blue": "green", "green": "blue"}[color]
		set = startSet(t, color, i)
		firstAt.Store(0)
		current.Store(set.prefix)
		switched := time.Now()
		h.setTargets(color, set.addrs()...)
		res, err := h.sw.Drain(ctx, h.service, oldColor, 5*time.Second)
		if err != nil {
			t.Fatalf("switch %d: Drain: %v", i, err)
		}
		if res.TimedOut {
			t.Errorf("switch %d: Drain timed out: %+v", i, res)
		}
		drains = append(drains, res)
		old.stop()
		xtest.Eventually(t, 5*time.Second, time.Millisecond, "an answer from the new set", func() error {
			if firstAt.Load() == 0 {
				return fmt.Errorf("none yet from %s", set.prefix)
			}
			return nil
		})
		toFirst = append(toFirst, time.Duration(firstAt.Load()-switched.UnixNano()))
	}
	time.Sleep(loadDwell)
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	slices.Sort(toFirst)
	waited := 0
	for _, d := range drains {
		waited += d.Waited
	}
	t.Logf("%s: %d switches, %d requests ok, %d failed in %s (%.0f req/s); drains waited for %d requests in all; first new-set answer after a switch: median %s, max %s",
		mix, len(toFirst), stats.ok.Load(), stats.failed.Load(), elapsed.Round(time.Millisecond),
		float64(stats.ok.Load())/elapsed.Seconds(), waited, toFirst[len(toFirst)/2], toFirst[len(toFirst)-1])
	if len(toFirst) != loadSwitches {
		t.Errorf("made %d switches in %s, want %d", len(toFirst), loadLimit, loadSwitches)
	}
	if n := stats.failed.Load(); n != 0 {
		t.Errorf("%d failed requests across %d switches, want 0; first ones:\n  %s", n, loadSwitches, strings.Join(stats.failures, "\n  "))
	}
	if stats.ok.Load() < loadSwitches*loadClients {
		t.Errorf("only %d requests ok: the load did not run", stats.ok.Load())
	}
}

// replicaSet is one deploy's replicas, named <color>-<gen>-<i>.
type replicaSet struct {
	prefix   string
	backends []*backend
}

func startSet(t *testing.T, color string, gen int) *replicaSet {
	s := &replicaSet{prefix: fmt.Sprintf("%s-%d-", color, gen)}
	for i := range 1 + gen%2 {
		name := fmt.Sprintf("%s%d", s.prefix, i)
		s.backends = append(s.backends, newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			_, _ = fmt.Fprintf(w, "%s %s %d", name, r.Method, n)
		}))
	}
	return s
}

func (s *replicaSet) addrs() []string {
	out := make([]string, len(s.backends))
	for i, b := range s.backends {
		out[i] = b.addr()
	}
	return out
}

// stop stops the replicas as a deploy stops the old color's containers.
func (s *replicaSet) stop() {
	for _, b := range s.backends {
		b.srv.Close()
	}
}

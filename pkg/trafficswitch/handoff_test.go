package trafficswitch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/deployd/deployd/internal/xtest"
)

// handoffPair is an old and a new Switch of one service; the old one
// serves ln, the new one gets a duplicate of it with takeOver, as a new
// process gets the old one's file descriptors.
type handoffPair struct {
	old, new       *Switch
	oldReg, newReg *prometheus.Registry
	ln             *net.TCPListener
	url            string
}

func newHandoffPair(t *testing.T, backend string) *handoffPair {
	t.Helper()
	p := &handoffPair{oldReg: prometheus.NewRegistry(), newReg: prometheus.NewRegistry()}
	for _, sw := range []struct {
		dst *(*Switch)
		reg *prometheus.Registry
	}{{&p.old, p.oldReg}, {&p.new, p.newReg}} {
		s, err := New(Options{Registerer: sw.reg})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.Close(ctx)
		})
		if err := s.SetTargets("web", "blue", []string{backend}); err != nil {
			t.Fatalf("SetTargets: %v", err)
		}
		*sw.dst = s
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p.ln = ln.(*net.TCPListener)
	p.url = "http://" + ln.Addr().String()
	if err := p.old.Serve("web", ln); err != nil {
		t.Fatalf("old Serve: %v", err)
	}
	return p
}

// takeOver serves a duplicate of the old Switch's listener on the new
// one: from then on both accept on the same socket.
func (p *handoffPair) takeOver(t *testing.T) {
	t.Helper()
	f, err := p.ln.File()
	if err != nil {
		t.Fatalf("dup listener: %v", err)
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatalf("file listener: %v", err)
	}
	if err := p.new.Serve("web", ln); err != nil {
		t.Fatalf("new Serve: %v", err)
	}
}

func requests(t *testing.T, reg *prometheus.Registry) float64 {
	return counterValue(t, reg, "deployd_switch_requests_total", map[string]string{"service": "web"})
}

// busyClient sends POSTs one after another on one keep-alive connection
// at a time until stop, and counts what failed.
type busyClient struct {
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	failures atomic.Int64
	firstErr atomic.Value
}

func startBusyClient(url string) *busyClient {
	b := &busyClient{stop: make(chan struct{}), done: make(chan struct{})}
	c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	go func() {
		defer close(b.done)
		defer c.CloseIdleConnections()
		for i := 0; ; i++ {
			select {
			case <-b.stop:
				return
			default:
			}
			// POST: net/http never retries it by itself once sent, so a
			// connection closed under it would show as a failure.
			status, body, err := tryDo(c, http.MethodPost, url+"/", fmt.Sprintf("request %d", i), nil)
			if err == nil && (status != http.StatusOK || !strings.HasPrefix(body, "blue POST")) {
				err = fmt.Errorf("got %d %q", status, body)
			}
			if err != nil {
				b.failures.Add(1)
				b.firstErr.CompareAndSwap(nil, err)
			}
		}
	}()
	return b
}

func (b *busyClient) finish() (failures int64, first any) {
	b.stopOnce.Do(func() { close(b.stop) })
	<-b.done
	return b.failures.Load(), b.firstErr.Load()
}

// idleRequest sends a GET with c and reports whether it reused a
// connection and whether the answer closes it.
func idleRequest(t *testing.T, c *http.Client, url string) (reused, closes bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("idle client's request: %v", err)
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("idle client's request = %d, %v; want 200", res.StatusCode, err)
	}
	return reused, res.Close
}

func TestHandoff_KeepAliveClientSeesNoFailureAndHandoffWaitsForIdleConnections(t *testing.T) {
	tests := []struct {
		name string
		// end makes the idle client's connection to the old Switch end.
		end func(t *testing.T, c *http.Client, url string)
	}{
		{"the client closes its idle connection", func(_ *testing.T, c *http.Client, _ string) { c.CloseIdleConnections() }},
		{"the next request on it is answered and closes it", func(t *testing.T, c *http.Client, url string) {
			reused, closes := idleRequest(t, c, url)
			if !reused || !closes {
				t.Errorf("request on the idle connection: reused %v, Connection: close %v; want both", reused, closes)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backend := newBackend(t, "blue", nil)
			p := newHandoffPair(t, backend.addr())
			// An idle keep-alive connection to the old Switch, as nginx
			// keeps them.
			idle := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			t.Cleanup(idle.CloseIdleConnections)
			if reused, _ := idleRequest(t, idle, p.url); reused {
				t.Fatal("first request reused a connection")
			}
			busy := startBusyClient(p.url)
			t.Cleanup(func() { busy.finish() })
			xtest.Eventually(t, 5*time.Second, time.Millisecond, "the busy client on the old switch", func() error {
				if n := requests(t, p.oldReg); n < 20 {
					return fmt.Errorf("%v requests", n)
				}
				return nil
			})

			p.takeOver(t)
			handoff := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				handoff <- p.old.Handoff(ctx)
			}()
			xtest.Eventually(t, 5*time.Second, time.Millisecond, "the busy client on the new switch", func() error {
				if n := requests(t, p.newReg); n < 20 {
					return fmt.Errorf("%v requests", n)
				}
				return nil
			})
			select {
			case err := <-handoff:
				t.Fatalf("Handoff returned (%v) with an idle connection open", err)
			default:
			}

			tt.end(t, idle, p.url)
			select {
			case err := <-handoff:
				if err != nil {
					t.Fatalf("Handoff: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("Handoff did not return once the idle connection closed (%d open)", p.old.conns.open())
			}
			if failures, first := busy.finish(); failures != 0 {
				t.Errorf("busy client: %d failed request(s), first: %v", failures, first)
			}
			// The new switch serves on alone.
			if status, _ := do(t, http.MethodGet, p.url+"/", "", nil); status != http.StatusOK {
				t.Errorf("after the handoff: %d, want 200 from the new switch", status)
			}
		})
	}
}

func TestHandoff_ContextEndClosesTheConnectionsLeft(t *testing.T) {
	backend := newBackend(t, "blue", nil)
	p := newHandoffPair(t, backend.addr())
	idle := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	t.Cleanup(idle.CloseIdleConnections)
	idleRequest(t, idle, p.url)
	p.takeOver(t)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.old.Handoff(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Handoff = %v, want DeadlineExceeded", err)
	}
	xtest.Eventually(t, 5*time.Second, time.Millisecond, "the old switch's idle connection closed", func() error {
		if n := p.old.conns.open(); n != 0 {
			return fmt.Errorf("%d open", n)
		}
		return nil
	})
	if err := p.old.Handoff(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("second Handoff = %v, want ErrClosed", err)
	}
	// The idle client's next request goes to the new switch.
	if reused, _ := idleRequest(t, idle, p.url); reused {
		t.Error("request reused the connection the old switch closed")
	}
}

// Serve is refused once a handoff began: its listener would never be
// closed.
func TestHandoff_RefusesNewListeners(t *testing.T) {
	sw := newBareSwitch(t)
	if err := sw.Handoff(context.Background()); err != nil {
		t.Fatalf("Handoff without listeners: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Serve("web", ln); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Handoff = %v, want ErrClosed", err)
	}
}

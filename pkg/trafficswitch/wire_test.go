package trafficswitch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/deployd/deployd/internal/xtest"
)

// wireHarness is a harness whose Switch also serves the control API on a
// unix socket, and a Client of it.
type wireHarness struct {
	*harness
	c       *Client
	socket  string
	changes atomic.Int32 // OnChange calls
}

// socketPath is a fresh socket path short enough for sun_path (108
// bytes), which t.TempDir's long names can exceed.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tsw")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "control.sock")
}

// serveControl serves h on a new unix socket until the test ends.
func serveControl(t *testing.T, h http.Handler) string {
	t.Helper()
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen on %s: %v", path, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return path
}

func newWireHarness(t *testing.T, o ServerOptions) *wireHarness {
	t.Helper()
	h := &wireHarness{harness: newHarness(t, Options{})}
	o.Switch = h.sw
	o.OnChange = func() { h.changes.Add(1) }
	h.socket = serveControl(t, NewControlHandler(o))
	h.c = NewClient(h.socket)
	return h
}

// comparable strips what JSON cannot carry and does not matter: a time's
// monotonic reading and its location (the instant is kept to the
// nanosecond).
func comparable(st Status) Status {
	st.PausedSince = st.PausedSince.UTC().Round(0)
	st.MaintenanceSince = st.MaintenanceSince.UTC().Round(0)
	return st
}

func (h *wireHarness) wantSameStatus(service string) Status {
	h.t.Helper()
	ctx := context.Background()
	got, err := h.c.Status(ctx, service)
	if err != nil {
		h.t.Fatalf("Client.Status(%s): %v", service, err)
	}
	want, err := h.sw.Status(service)
	if err != nil {
		h.t.Fatalf("Switch.Status(%s): %v", service, err)
	}
	if !reflect.DeepEqual(comparable(got), comparable(want)) {
		h.t.Fatalf("Client.Status = %+v\nwant the Switch's %+v", got, want)
	}
	return got
}

func TestClient_EveryCallRoundTrips(t *testing.T) {
	started := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	upgrades := 0
	h := newWireHarness(t, ServerOptions{
		Info:    func() Info { return Info{PID: 42, Version: "1.2.3", Fingerprint: "sha256:ab", Started: started} },
		Upgrade: func() error { upgrades++; return nil },
	})
	ctx := context.Background()
	blue, green := newBackend(t, "blue", nil), newBackend(t, "green", nil)

	if err := h.c.SetTargets(ctx, h.service, "blue", []string{blue.addr()}); err != nil {
		t.Fatalf("SetTargets(blue): %v", err)
	}
	if status, body := do(t, http.MethodGet, h.url+"/", "", nil); status != 200 || !strings.HasPrefix(body, "blue") {
		t.Fatalf("after SetTargets(blue): %d %q, want 200 from blue", status, body)
	}
	if err := h.c.SetTargets(ctx, h.service, "green", []string{green.addr()}); err != nil {
		t.Fatalf("SetTargets(green): %v", err)
	}
	do(t, http.MethodGet, h.url+"/", "", nil)
	if req, errs, err := h.c.Window(ctx, h.service, "green"); req != 1 || errs != 0 || err != nil {
		t.Errorf("Window(green) = %d, %d, %v; want 1, 0, nil", req, errs, err)
	}
	if req, errs, err := h.c.Window(ctx, "nosuch", "green"); req != 0 || errs != 0 || err != nil {
		t.Errorf("Window of an unknown service = %d, %d, %v; want 0, 0, nil", req, errs, err)
	}
	res, err := h.c.Drain(ctx, h.service, "blue", time.Second)
	if err != nil || res.TimedOut || res.Waited != 0 {
		t.Errorf("Drain(blue) = %+v, %v; want nothing to wait for", res, err)
	}

	// A hold that is not whole seconds and a message: the status carries
	// both exactly.
	if err := h.c.Pause(ctx, h.service, 1500*time.Millisecond, 7); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := h.c.Maintenance(ctx, h.service, true, "Back at 18:00 UTC"); err != nil {
		t.Fatalf("Maintenance: %v", err)
	}
	st := h.wantSameStatus(h.service)
	if !st.Paused || st.MaxHold != 1500*time.Millisecond || st.MaxHeld != 7 || st.Message != "Back at 18:00 UTC" ||
		st.Active != "green" || len(st.Colors) != 2 || st.Addr == "" || st.PausedSince.IsZero() {
		t.Errorf("Status = %+v, want paused 1.5s/7 in maintenance, green active of 2 colors", st)
	}
	if err := h.c.Resume(ctx, h.service); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if err := h.c.Maintenance(ctx, h.service, false, ""); err != nil {
		t.Fatalf("Maintenance off: %v", err)
	}
	if st := h.wantSameStatus(h.service); st.Paused || st.Maintenance {
		t.Errorf("Status = %+v, want neither paused nor in maintenance", st)
	}
	// Pause and Maintenance create the service, as Local does.
	if err := h.c.Maintenance(ctx, "api", true, ""); err != nil {
		t.Fatalf("Maintenance of a new service: %v", err)
	}
	h.wantSameStatus("api")
	if got, want := h.changes.Load(), int32(7); got != want {
		t.Errorf("OnChange calls = %d, want %d (one per successful change)", got, want)
	}

	info, err := h.c.Info(ctx)
	if err != nil || info.PID != 42 || info.Version != "1.2.3" || info.Fingerprint != "sha256:ab" || !info.Started.Equal(started) {
		t.Errorf("Info = %+v, %v; want the process's", info, err)
	}
	if err := h.c.Upgrade(ctx); err != nil || upgrades != 1 {
		t.Errorf("Upgrade = %v with %d upgrade(s), want nil and 1", err, upgrades)
	}
}

// Service names are one path segment whatever they hold.
func TestClient_ServiceNamesSurviveThePath(t *testing.T) {
	h := newWireHarness(t, ServerOptions{})
	ctx := context.Background()
	for _, name := range []string{"a/b", "..", ".", "x%2Fy", "q?x=1#f"} {
		t.Run(name, func(t *testing.T) {
			if err := h.c.SetTargets(ctx, name, "blue", []string{"127.0.0.1:9"}); err != nil {
				t.Fatalf("SetTargets: %v", err)
			}
			if st := h.wantSameStatus(name); st.Service != name {
				t.Errorf("Status.Service = %q, want %q", st.Service, name)
			}
		})
	}
}

// Every error kind crosses the wire with its sentinel and the Switch's
// own message.
func TestClient_MapsEveryErrorKind(t *testing.T) {
	h := newWireHarness(t, ServerOptions{})
	ctx := context.Background()
	h.setTargets("green", "127.0.0.1:9")
	tests := []struct {
		name     string
		call     func(p Plane) error
		sentinel error
	}{
		{"bad target", func(p Plane) error { return p.SetTargets(ctx, h.service, "blue", []string{"nope"}) }, ErrInvalid},
		{"bad color", func(p Plane) error { return p.SetTargets(ctx, h.service, "Blue!", nil) }, ErrInvalid},
		{"hold limit of 0", func(p Plane) error { return p.Pause(ctx, h.service, time.Second, 0) }, ErrInvalid},
		{"message with a newline", func(p Plane) error { return p.Maintenance(ctx, h.service, true, "a\nb") }, ErrInvalid},
		{"status of an unknown service", func(p Plane) error { _, err := p.Status(ctx, "nope"); return err }, ErrNotFound},
		{"resume of an unknown service", func(p Plane) error { return p.Resume(ctx, "nope") }, ErrNotFound},
		{"drain of an unknown service", func(p Plane) error { _, err := p.Drain(ctx, "nope", "blue", 0); return err }, ErrNotFound},
		{"resume when not paused", func(p Plane) error { return p.Resume(ctx, h.service) }, ErrConflict},
		{"drain of the active color", func(p Plane) error { _, err := p.Drain(ctx, h.service, "green", 0); return err }, ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(h.c)
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("error = %v, want %v", err, tt.sentinel)
			}
			local := tt.call(Local(h.sw))
			if local == nil || err.Error() != local.Error() {
				t.Errorf("message = %q, want the Switch's %q", err, local)
			}
		})
	}
	if n := h.changes.Load(); n != 0 {
		t.Errorf("OnChange calls = %d after failed calls only, want 0", n)
	}
}

func TestClient_ProcessErrorsAndMissingFeatures(t *testing.T) {
	ctx := context.Background()
	t.Run("no info, no upgrade, no metrics", func(t *testing.T) {
		h := newWireHarness(t, ServerOptions{})
		if _, err := h.c.Info(ctx); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("Info = %v, want ErrUnsupported", err)
		}
		if err := h.c.Upgrade(ctx); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("Upgrade = %v, want ErrUnsupported", err)
		}
		if _, err := h.c.Gather(); !errors.Is(err, ErrNotFound) {
			t.Errorf("Gather = %v, want ErrNotFound", err)
		}
	})
	t.Run("upgrade refused", func(t *testing.T) {
		h := newWireHarness(t, ServerOptions{Upgrade: func() error {
			return fmt.Errorf("upgrade: %w: one is running", ErrConflict)
		}})
		if err := h.c.Upgrade(ctx); !errors.Is(err, ErrConflict) || err.Error() != "upgrade: conflict: one is running" {
			t.Errorf("Upgrade = %v, want the process's conflict", err)
		}
	})
	t.Run("upgrade failed", func(t *testing.T) {
		h := newWireHarness(t, ServerOptions{Upgrade: func() error { return errors.New("exec: no such file") }})
		err := h.c.Upgrade(ctx)
		if err == nil || err.Error() != "exec: no such file" {
			t.Fatalf("Upgrade = %v, want the process's message", err)
		}
		for _, s := range []error{ErrInvalid, ErrNotFound, ErrConflict, ErrClosed, ErrUnreachable} {
			if errors.Is(err, s) {
				t.Errorf("internal error %v wraps %v", err, s)
			}
		}
	})
	t.Run("closed switch", func(t *testing.T) {
		h := newWireHarness(t, ServerOptions{})
		if err := h.sw.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if _, err := h.c.Status(ctx, h.service); !errors.Is(err, ErrClosed) {
			t.Errorf("Status = %v, want ErrClosed", err)
		}
		if _, _, err := h.c.Window(ctx, h.service, "blue"); !errors.Is(err, ErrClosed) {
			t.Errorf("Window = %v, want ErrClosed", err)
		}
	})
	t.Run("body over the limit", func(t *testing.T) {
		h := newWireHarness(t, ServerOptions{})
		addrs := make([]string, 0, 5000)
		for i := range cap(addrs) {
			addrs = append(addrs, fmt.Sprintf("replica-%04d.example:8080", i))
		}
		if err := h.c.SetTargets(ctx, h.service, "blue", addrs); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetTargets with a body over 64 KiB = %v, want ErrInvalid", err)
		}
	})
	t.Run("empty service name", func(t *testing.T) {
		h := newWireHarness(t, ServerOptions{})
		if _, err := h.c.Status(ctx, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("Status(\"\") = %v, want ErrInvalid", err)
		}
	})
}

func TestClient_UnreachableSocket(t *testing.T) {
	gone := socketPath(t)
	ln, err := net.Listen("unix", gone)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	// Keep the file, stop listening: dials are refused.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := ln.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	tests := []struct {
		name   string
		socket string
		errno  error
	}{
		{"no socket file", filepath.Join(filepath.Dir(gone), "missing.sock"), syscall.ENOENT},
		{"nobody listening", gone, syscall.ECONNREFUSED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClient(tt.socket)
			ctx := context.Background()
			calls := map[string]func() error{
				"Status":     func() error { _, err := c.Status(ctx, "web"); return err },
				"SetTargets": func() error { return c.SetTargets(ctx, "web", "blue", nil) },
				"Window":     func() error { _, _, err := c.Window(ctx, "web", "blue"); return err },
				"Info":       func() error { _, err := c.Info(ctx); return err },
				"Gather":     func() error { _, err := c.Gather(); return err },
			}
			for name, call := range calls {
				err := call()
				if !errors.Is(err, ErrUnreachable) || !errors.Is(err, tt.errno) {
					t.Errorf("%s = %v, want ErrUnreachable wrapping %v", name, err, tt.errno)
				}
			}
		})
	}
}

// slowOldColor has a request in flight on blue, green active, and
// returns the function that lets the request finish.
func slowOldColor(t *testing.T, h *harness) (release func(), done <-chan answer) {
	t.Helper()
	started, rel := make(chan struct{}), make(chan struct{})
	blue := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-rel
	})
	h.setTargets("blue", blue.addr())
	ch := make(chan answer, 1)
	go func() { ch <- get(h.url + "/long") }()
	<-started
	h.setTargets("green", newBackend(t, "green", nil).addr())
	return sync1(func() { close(rel) }), ch
}

// sync1 makes f safe to call more than once (the test and its cleanup).
func sync1(f func()) func() {
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			f()
		}
	}
}

// drainWaiters is how many Drains wait on the color in the Switch.
func drainWaiters(h *harness, color string) int32 {
	s, err := h.sw.serviceFor(h.service, false)
	if err != nil {
		return -1
	}
	s.mu.Lock()
	c := s.colors[color]
	s.mu.Unlock()
	if c == nil {
		return -1
	}
	return c.waiters.Load()
}

func TestClient_DrainEndsWithTheInFlightRequest(t *testing.T) {
	h := newWireHarness(t, ServerOptions{})
	release, done := slowOldColor(t, h.harness)
	t.Cleanup(release)
	type drained struct {
		res DrainResult
		err error
	}
	ch := make(chan drained, 1)
	go func() {
		res, err := h.c.Drain(context.Background(), h.service, "blue", time.Minute)
		ch <- drained{res, err}
	}()
	xtest.Eventually(t, 5*time.Second, 2*time.Millisecond, "the drain waits in the switch", func() error {
		if n := drainWaiters(h.harness, "blue"); n != 1 {
			return fmt.Errorf("%d drain(s) waiting", n)
		}
		return nil
	})
	select {
	case d := <-ch:
		t.Fatalf("Drain returned with the request in flight: %+v, %v", d.res, d.err)
	default:
	}
	release()
	if a := <-done; a.err != nil || a.status != http.StatusOK {
		t.Fatalf("in-flight request = %+v, want 200", a)
	}
	select {
	case d := <-ch:
		if d.err != nil || d.res.Waited != 1 || d.res.TimedOut || d.res.Took <= 0 {
			t.Errorf("Drain = %+v, %v; want 1 request waited for, no timeout", d.res, d.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the request ended")
	}
}

func TestClient_DrainEndsWhenItsContextEnds(t *testing.T) {
	h := newWireHarness(t, ServerOptions{})
	release, _ := slowOldColor(t, h.harness)
	t.Cleanup(release)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := h.c.Drain(ctx, h.service, "blue", time.Hour)
		errc <- err
	}()
	xtest.Eventually(t, 5*time.Second, 2*time.Millisecond, "the drain waits in the switch", func() error {
		if n := drainWaiters(h.harness, "blue"); n != 1 {
			return fmt.Errorf("%d drain(s) waiting", n)
		}
		return nil
	})
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreachable) {
			t.Errorf("Drain = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return when its context ended")
	}
	// The switch's drain ends with the call, not an hour later.
	xtest.Eventually(t, 5*time.Second, 2*time.Millisecond, "the switch's drain ends", func() error {
		if n := drainWaiters(h.harness, "blue"); n != 0 {
			return fmt.Errorf("%d drain(s) still waiting", n)
		}
		return nil
	})
}

func TestClient_GatherReturnsTheSwitchMetrics(t *testing.T) {
	h := &wireHarness{harness: newHarness(t, Options{})}
	h.c = NewClient(serveControl(t, NewControlHandler(ServerOptions{
		Switch:  h.sw,
		Metrics: promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{}),
	})))
	h.setTargets("blue", newBackend(t, "blue", nil).addr())
	for range 3 {
		do(t, http.MethodGet, h.url+"/", "", nil)
	}
	got, err := h.c.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	want, err := h.reg.Gather()
	if err != nil {
		t.Fatalf("registry Gather: %v", err)
	}
	names := func(mfs []*dto.MetricFamily) []string {
		out := make([]string, len(mfs))
		for i, mf := range mfs {
			out[i] = mf.GetName()
		}
		return out
	}
	if g, w := names(got), names(want); !slices.Equal(g, w) {
		t.Fatalf("families = %v, want the switch's %v", g, w)
	}
	for _, mf := range got {
		if mf.GetName() != "deployd_switch_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 3 {
				t.Errorf("deployd_switch_requests_total = %v, want 3", v)
			}
			return
		}
	}
	t.Error("no deployd_switch_requests_total series")
}

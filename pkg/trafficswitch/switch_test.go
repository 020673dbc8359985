package trafficswitch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/xtest"
)

func TestSetTargets_NextRequestGoesToTheNewSet(t *testing.T) {
	h := newHarness(t, Options{})
	blue := newBackend(t, "blue", nil)
	green := []*backend{newBackend(t, "green1", nil), newBackend(t, "green2", nil)}
	client := &http.Client{}
	for i := range 20 {
		if i%2 == 0 {
			h.setTargets("blue", blue.addr())
		} else {
			h.setTargets("green", green[0].addr(), green[1].addr())
		}
		// Over a kept-alive client connection: the switch, not the
		// connection, decides.
		for range 3 {
			status, body, err := tryDo(client, http.MethodGet, h.url+"/", "", nil)
			if err != nil {
				t.Fatalf("switch %d: GET: %v", i, err)
			}
			want := "blue"
			if i%2 == 1 {
				want = "green"
			}
			if status != http.StatusOK || !strings.HasPrefix(body, want) {
				t.Fatalf("switch %d: got %d %q, want 200 from %s", i, status, body, want)
			}
		}
	}
	st, err := h.sw.Status(h.service)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Generation != 20 || st.Active != "green" {
		t.Errorf("status generation %d active %q, want 20 green", st.Generation, st.Active)
	}
}

func TestSetTargets_SpreadsRequestsOverReplicas(t *testing.T) {
	h := newHarness(t, Options{})
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	h.setTargets("blue", a.addr(), b.addr())
	for range 10 {
		if status, body := do(t, http.MethodGet, h.url+"/", "", nil); status != http.StatusOK {
			t.Fatalf("GET: %d %q", status, body)
		}
	}
	// Sequential requests leave every replica idle: the tie-break alone
	// decides, and it is round robin.
	if a.hitCount() != 5 || b.hitCount() != 5 {
		t.Errorf("hits a=%d b=%d, want 5 and 5", a.hitCount(), b.hitCount())
	}
}

func TestPick_LeastRequestsFirst(t *testing.T) {
	set := newTargetSet(&colorState{}, []string{"a:1", "b:1", "c:1"})
	set.replicas[0].inFlight.Store(3)
	set.replicas[1].inFlight.Store(1)
	set.replicas[2].inFlight.Store(2)
	if got := set.pick(0, 0); got != 1 {
		t.Fatalf("pick = %d, want 1 (fewest in flight)", got)
	}
	// b now has 2, like c: the tie goes round robin, and tried replicas
	// and replicas marked down come last.
	set.replicas[2].downUntil.Store(100)
	if got := set.pick(0, 50); got != 1 {
		t.Fatalf("pick with c down = %d, want 1", got)
	}
	if got := set.pick(1<<1, 50); got != 0 {
		t.Fatalf("pick with b tried and c down = %d, want 0", got)
	}
}

func TestSwitch_InFlightRequestFinishesOnTheOldSet(t *testing.T) {
	h := newHarness(t, Options{})
	started, release := make(chan struct{}), make(chan struct{})
	blue := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = fmt.Fprint(w, "blue slow")
	})
	green := newBackend(t, "green", nil)
	h.setTargets("blue", blue.addr())

	type answer struct {
		status int
		body   string
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		s, b, err := tryDo(http.DefaultClient, http.MethodPost, h.url+"/slow", "payload", nil)
		done <- answer{s, b, err}
	}()
	<-started
	h.setTargets("green", green.addr())
	if status, body := do(t, http.MethodGet, h.url+"/", "", nil); status != http.StatusOK || !strings.HasPrefix(body, "green") {
		t.Fatalf("new request: %d %q, want 200 from green", status, body)
	}
	st, _ := h.sw.Status(h.service)
	if got := colorOf(st, "blue").InFlight; got != 1 {
		t.Errorf("blue in flight = %d, want 1", got)
	}
	close(release)
	a := <-done
	if a.err != nil || a.status != http.StatusOK || a.body != "blue slow" {
		t.Fatalf("in-flight request: %d %q %v, want 200 \"blue slow\"", a.status, a.body, a.err)
	}
}

func colorOf(st Status, color string) ColorStatus {
	for _, c := range st.Colors {
		if c.Color == color {
			return c
		}
	}
	return ColorStatus{}
}

func TestSetTargets_NoAddressesAnswers503(t *testing.T) {
	h := newHarness(t, Options{})
	if status, _ := do(t, http.MethodGet, h.url+"/", "", nil); status != http.StatusServiceUnavailable {
		t.Fatalf("before any targets: status %d, want 503", status)
	}
	h.setTargets("blue")
	status, body := do(t, http.MethodGet, h.url+"/", "", nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "no replica") {
		t.Fatalf("empty set: %d %q, want 503 saying no replica", status, body)
	}
	if got := counterValue(t, h.reg, "deployd_switch_rejected_total", map[string]string{"reason": "no_targets"}); got != 2 {
		t.Errorf("rejected no_targets = %v, want 2", got)
	}
}

func TestSetTargets_InvalidInputChangesNothing(t *testing.T) {
	h := newHarness(t, Options{})
	good := newBackend(t, "good", nil)
	h.setTargets("blue", good.addr())
	for _, tt := range []struct {
		name  string
		color string
		addrs []string
	}{
		{"empty color", "", []string{good.addr()}},
		{"upper-case color", "Blue", []string{good.addr()}},
		{"no port", "green", []string{"127.0.0.1"}},
		{"port zero", "green", []string{"127.0.0.1:0"}},
		{"port too big", "green", []string{"127.0.0.1:70000"}},
		{"no host", "green", []string{":8080"}},
		{"duplicate", "green", []string{good.addr(), good.addr()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := h.sw.SetTargets(h.service, tt.color, tt.addrs)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("SetTargets = %v, want ErrInvalid", err)
			}
			if st, _ := h.sw.Status(h.service); st.Active != "blue" {
				t.Fatalf("active = %q, want blue untouched", st.Active)
			}
		})
	}
}

func TestListen_BadAddressesFail(t *testing.T) {
	h := newHarness(t, Options{})
	ctx := context.Background()
	if err := h.sw.Listen(ctx, "other", "127.0.0.1"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Listen without port = %v, want ErrInvalid", err)
	}
	if err := h.sw.Listen(ctx, "other", "127.0.0.1:99999"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Listen on port 99999 = %v, want ErrInvalid", err)
	}
	for _, bad := range []string{"unix:relative.sock", "unix:/run/my web.sock", "unix:/run/a;b.sock", "unix:/" + strings.Repeat("s", 103)} {
		if err := h.sw.Listen(ctx, "other", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Listen on %q = %v, want ErrInvalid", bad, err)
		}
	}
	taken := h.sw.Addr(h.service).String()
	if err := h.sw.Listen(ctx, "other", taken); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Listen on a port in use = %v, want EADDRINUSE", err)
	}
	if err := h.sw.Listen(ctx, h.service, "127.0.0.1:0"); !errors.Is(err, ErrConflict) {
		t.Errorf("second Listen of a service = %v, want ErrConflict", err)
	}
	if h.sw.Addr("other") != nil {
		t.Errorf("failed Listens left an address for other")
	}
}

func TestSwitch_UnknownServiceIsNotFound(t *testing.T) {
	h := newHarness(t, Options{})
	if err := h.sw.Pause("nope", time.Second, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Pause = %v, want ErrNotFound", err)
	}
	if _, err := h.sw.Drain(context.Background(), "nope", "blue", time.Second); !errors.Is(err, ErrNotFound) {
		t.Errorf("Drain = %v, want ErrNotFound", err)
	}
	if _, err := h.sw.Status("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Status = %v, want ErrNotFound", err)
	}
}

func TestClose_StopsListeningAndRefusesCalls(t *testing.T) {
	sw, err := New(Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := sw.Listen(context.Background(), "web", "127.0.0.1:0"); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	addr := sw.Addr("web").String()
	if err := sw.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.Close()
		t.Errorf("dial %s after Close succeeded, want refused", addr)
	}
	if err := sw.SetTargets("web", "blue", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("SetTargets after Close = %v, want ErrClosed", err)
	}
	if err := sw.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSwitch_ConcurrentSwitchesAndRequestsAreRaceFree(t *testing.T) {
	h := newHarness(t, Options{})
	blue, green := newBackend(t, "blue", nil), newBackend(t, "green", nil)
	h.setTargets("blue", blue.addr())
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			c := &http.Client{}
			for ctx.Err() == nil {
				if status, body, err := tryDo(c, http.MethodPost, h.url+"/", "x", nil); err != nil || status != http.StatusOK {
					errs <- fmt.Errorf("POST: %d %q %v", status, body, err)
					return
				}
			}
		})
	}
	for i := 0; ctx.Err() == nil; i++ {
		if i%2 == 0 {
			h.setTargets("green", green.addr())
		} else {
			h.setTargets("blue", blue.addr())
		}
		_, _ = h.sw.Status(h.service)
		_, _ = h.sw.Window(h.service, "blue")
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	xtest.Eventually(t, 2*time.Second, 5*time.Millisecond, "nothing in flight", func() error {
		st, _ := h.sw.Status(h.service)
		for _, c := range st.Colors {
			if c.InFlight != 0 {
				return fmt.Errorf("%s has %d in flight", c.Color, c.InFlight)
			}
		}
		return nil
	})
}

func TestHandler_ServesOnTheCallersServer(t *testing.T) {
	h := newHarness(t, Options{})
	handler, err := h.sw.Handler("api")
	if err != nil {
		t.Fatalf("Handler: %v", err)
	}
	srv := httptest.NewServer(handler)
	defer srv.Close()
	if err := h.sw.SetTargets("api", "blue", []string{newBackend(t, "api-blue", nil).addr()}); err != nil {
		t.Fatalf("SetTargets: %v", err)
	}
	if status, body := do(t, http.MethodGet, srv.URL+"/", "", nil); status != http.StatusOK || !strings.HasPrefix(body, "api-blue") {
		t.Fatalf("got %d %q, want 200 from api-blue", status, body)
	}
	if _, err := h.sw.Handler("bad name"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Handler(%q) = %v, want ErrInvalid", "bad name", err)
	}
}

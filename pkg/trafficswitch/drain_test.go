package trafficswitch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/xtest"
)

func TestDrain_WaitsForTheLongRequestOfTheOldColor(t *testing.T) {
	h := newHarness(t, Options{})
	started, release := make(chan struct{}), make(chan struct{})
	blue := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = fmt.Fprint(w, "blue done")
	})
	green := newBackend(t, "green", nil)
	h.setTargets("blue", blue.addr())
	reqDone := make(chan error, 1)
	go func() {
		status, body, err := tryDo(http.DefaultClient, http.MethodGet, h.url+"/long", "", nil)
		if err == nil && (status != http.StatusOK || body != "blue done") {
			err = fmt.Errorf("got %d %q, want 200 \"blue done\"", status, body)
		}
		reqDone <- err
	}()
	<-started
	h.setTargets("green", green.addr())

	type drained struct {
		res DrainResult
		err error
		at  time.Time // when Drain returned
	}
	drainDone := make(chan drained, 1)
	go func() {
		res, err := h.sw.Drain(context.Background(), h.service, "blue", 10*time.Second)
		drainDone <- drained{res, err, time.Now()}
	}()
	select {
	case d := <-drainDone:
		t.Fatalf("Drain returned %+v, %v while blue still had a request in flight", d.res, d.err)
	case <-time.After(100 * time.Millisecond):
	}
	released := time.Now()
	close(release)
	if err := <-reqDone; err != nil {
		t.Fatalf("long request: %v", err)
	}
	d := <-drainDone
	if d.err != nil {
		t.Fatalf("Drain: %v", d.err)
	}
	if d.res.Waited != 1 || d.res.TimedOut || d.res.Remaining != 0 || d.res.ForcedClosed != 0 {
		t.Errorf("Drain = %+v, want Waited 1, no timeout", d.res)
	}
	// Drain's own clock starts when its goroutine runs, which may be a
	// little after the test's 100 ms began: what must hold is that it
	// returned only once the request was let go.
	if d.at.Before(released) {
		t.Errorf("Drain returned %s before the request was released", released.Sub(d.at))
	}
	if d.res.Took <= 0 {
		t.Errorf("Drain reports it took %s, want the time it waited", d.res.Took)
	}
}

func TestDrain_TimeoutLeavesSlowRequestRunning(t *testing.T) {
	h := newHarness(t, Options{})
	started, release := make(chan struct{}), make(chan struct{})
	blue := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	})
	h.setTargets("blue", blue.addr())
	reqDone := make(chan error, 1)
	go func() {
		status, _, err := tryDo(http.DefaultClient, http.MethodGet, h.url+"/", "", nil)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("status %d, want 200", status)
		}
		reqDone <- err
	}()
	<-started
	h.setTargets("green", newBackend(t, "green", nil).addr())
	res, err := h.sw.Drain(context.Background(), h.service, "blue", 50*time.Millisecond)
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if !res.TimedOut || res.Waited != 1 || res.Remaining != 1 {
		t.Errorf("Drain = %+v, want a timeout with 1 request remaining", res)
	}
	close(release)
	if err := <-reqDone; err != nil {
		t.Fatalf("slow request after the drain timeout: %v", err)
	}
}

func TestDrain_ActiveColorIsAConflict(t *testing.T) {
	h := newHarness(t, Options{})
	h.setTargets("blue", newBackend(t, "blue", nil).addr())
	if _, err := h.sw.Drain(context.Background(), h.service, "blue", time.Second); !errors.Is(err, ErrConflict) {
		t.Fatalf("Drain of the active color = %v, want ErrConflict", err)
	}
	res, err := h.sw.Drain(context.Background(), h.service, "green", time.Second)
	if err != nil || res != (DrainResult{}) {
		t.Fatalf("Drain of a color that never served = %+v, %v, want zero and nil", res, err)
	}
}

// wsBackend answers an Upgrade: websocket request with a 101 and then
// echoes lines until the connection closes. It is a raw handshake, enough
// for what a proxy sees of WebSocket.
func wsBackend(t *testing.T, name string) *backend {
	return newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			_, _ = fmt.Fprint(w, name)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = brw.WriteString(name + " " + line)
			if err := brw.Flush(); err != nil {
				return
			}
		}
	})
}

// wsClient is the client side of wsBackend's protocol, through the switch.
type wsClient struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialWS(t *testing.T, base string) *wsClient {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_, err = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if err != nil {
		t.Fatalf("write handshake: %v", err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read handshake: %v", err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake status %d, want 101", res.StatusCode)
	}
	return &wsClient{conn: conn, br: br}
}

func (c *wsClient) echo(msg string) (string, error) {
	_ = c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, msg+"\n"); err != nil {
		return "", err
	}
	line, err := c.br.ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

func TestWebSocket_SurvivesTheSwitchUntilTheDrainTimeout(t *testing.T) {
	h := newHarness(t, Options{})
	blue, green := wsBackend(t, "blue"), wsBackend(t, "green")
	h.setTargets("blue", blue.addr())
	ws := dialWS(t, h.url)
	if got, err := ws.echo("hello"); err != nil || got != "blue hello" {
		t.Fatalf("echo before the switch: %q %v", got, err)
	}

	h.setTargets("green", green.addr())
	if status, body := do(t, http.MethodGet, h.url+"/", "", nil); status != http.StatusOK || body != "green" {
		t.Fatalf("new request after the switch: %d %q, want green", status, body)
	}
	if got, err := ws.echo("still"); err != nil || got != "blue still" {
		t.Fatalf("echo after the switch: %q %v, want the old color's connection alive", got, err)
	}
	if got := counterValue(t, h.reg, "deployd_switch_upgraded_connections", map[string]string{"color": "blue"}); got != 1 {
		t.Errorf("upgraded connections gauge = %v, want 1", got)
	}

	const timeout = 300 * time.Millisecond
	type drained struct {
		res DrainResult
		err error
	}
	drainDone := make(chan drained, 1)
	go func() {
		res, err := h.sw.Drain(context.Background(), h.service, "blue", timeout)
		drainDone <- drained{res, err}
	}()
	time.Sleep(timeout / 3)
	if got, err := ws.echo("draining"); err != nil || got != "blue draining" {
		t.Fatalf("echo during the drain: %q %v, want alive until the timeout", got, err)
	}
	d := <-drainDone
	if d.err != nil {
		t.Fatalf("Drain: %v", d.err)
	}
	if !d.res.TimedOut || d.res.ForcedClosed != 1 || d.res.Upgraded != 1 || d.res.Waited != 0 || d.res.Took < timeout {
		t.Errorf("Drain = %+v, want Upgraded 1 closed at the %s timeout", d.res, timeout)
	}
	if got, err := ws.echo("after"); err == nil {
		t.Fatalf("echo after the drain timeout answered %q, want the connection closed", got)
	}
	xtest.Eventually(t, 2*time.Second, 5*time.Millisecond, "blue's upgraded connection released", func() error {
		st, _ := h.sw.Status(h.service)
		if c := colorOf(st, "blue"); c.Upgraded != 0 || c.InFlight != 0 {
			return fmt.Errorf("blue: %+v", c)
		}
		return nil
	})
}

func TestWebSocket_DrainWithoutTimeoutClosesAtOnce(t *testing.T) {
	h := newHarness(t, Options{})
	h.setTargets("blue", wsBackend(t, "blue").addr())
	ws := dialWS(t, h.url)
	h.setTargets("green", wsBackend(t, "green").addr())
	res, err := h.sw.Drain(context.Background(), h.service, "blue", 0)
	if err != nil || res.ForcedClosed != 1 {
		t.Fatalf("Drain(0) = %+v, %v, want 1 closed", res, err)
	}
	if _, err := ws.echo("x"); err == nil {
		t.Fatal("connection still echoes after Drain(0)")
	}
}

func TestClose_ClosesUpgradedConnections(t *testing.T) {
	h := newHarness(t, Options{})
	h.setTargets("blue", wsBackend(t, "blue").addr())
	ws := dialWS(t, h.url)
	if _, err := ws.echo("x"); err != nil {
		t.Fatalf("echo: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.sw.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := ws.echo("y"); err == nil {
		t.Fatal("connection still echoes after Close")
	}
}

// sseBackend streams "data: <name> <i>" events every 10ms until its client
// leaves, which it reports on left.
func sseBackend(t *testing.T, name string, left chan<- struct{}) *backend {
	return newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 1; ; i++ {
			if _, err := fmt.Fprintf(w, "data: %s %d\n\n", name, i); err != nil {
				break
			}
			if err := rc.Flush(); err != nil {
				break
			}
			select {
			case <-tick.C:
				continue
			case <-r.Context().Done():
			}
			break
		}
		left <- struct{}{}
	})
}

// An event stream is long-lived like a WebSocket: it runs on the old
// color through the switch and the drain, and is closed at the drain
// timeout, cleanly for the client, rather than left on the old color.
func TestSSE_SurvivesTheSwitchUntilTheDrainTimeout(t *testing.T) {
	h := newHarness(t, Options{})
	left := make(chan struct{}, 1)
	h.setTargets("blue", sseBackend(t, "blue", left).addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /events: %v", err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	next := func() (string, error) {
		for {
			line, err := br.ReadString('\n')
			if err != nil || strings.HasPrefix(line, "data: ") {
				return strings.TrimSpace(strings.TrimPrefix(line, "data: ")), err
			}
		}
	}
	if ev, err := next(); err != nil || !strings.HasPrefix(ev, "blue ") {
		t.Fatalf("first event: %q %v", ev, err)
	}

	h.setTargets("green", newBackend(t, "green", nil).addr())
	const timeout = 300 * time.Millisecond
	type drained struct {
		res DrainResult
		err error
	}
	drainDone := make(chan drained, 1)
	go func() {
		res, err := h.sw.Drain(context.Background(), h.service, "blue", timeout)
		drainDone <- drained{res, err}
	}()
	var last string
	for {
		ev, err := next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("stream after %q: %v, want a clean end", last, err)
			}
			break
		}
		if !strings.HasPrefix(ev, "blue ") {
			t.Fatalf("event %q, want the old color's", ev)
		}
		last = ev
	}
	d := <-drainDone
	if d.err != nil {
		t.Fatalf("Drain: %v", d.err)
	}
	if !d.res.TimedOut || d.res.Waited != 1 || d.res.ClosedStreams != 1 || d.res.Remaining != 0 || d.res.Took < timeout {
		t.Errorf("Drain = %+v, want the stream waited for and closed at the %s timeout", d.res, timeout)
	}
	select {
	case <-left:
	case <-time.After(5 * time.Second):
		t.Fatal("the replica still streams 5s after the drain timeout")
	}
	xtest.Eventually(t, 2*time.Second, 5*time.Millisecond, "blue's stream released", func() error {
		st, _ := h.sw.Status(h.service)
		if c := colorOf(st, "blue"); c.InFlight != 0 {
			return fmt.Errorf("blue: %+v", c)
		}
		return nil
	})
}

func TestClose_EndsOpenEventStreamsAtOnce(t *testing.T) {
	h := newHarness(t, Options{})
	h.setTargets("blue", sseBackend(t, "blue", make(chan struct{}, 1)).addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /events: %v", err)
	}
	defer res.Body.Close()
	if _, err := bufio.NewReader(res.Body).ReadString('\n'); err != nil {
		t.Fatalf("first line: %v", err)
	}

	start := time.Now()
	if err := h.sw.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %s with an event stream open, want it ended at once", took)
	}
}

package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

// serve runs h's server on a loopback port until the test ends and returns
// its base URL once it answers.
func serve(t *testing.T, h *harness) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	base := "http://" + ln.Addr().String()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server on %s not answering: %v", base, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sendPartial sends head and the first bytes of a body on a connection of
// its own, and returns the answer. The server must answer without the rest
// of the body, and must then close the connection, since the unread rest
// would otherwise be parsed as the next request.
func sendPartial(t *testing.T, base, head, bodyPrefix string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, head+bodyPrefix); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if !resp.Close {
		t.Errorf("answer %d keeps the connection open with a body unread", resp.StatusCode)
	}
	// A close with unread bytes in the server's buffer arrives as a reset.
	if n, err := br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after the answer: read %d bytes, %v; want the server to close the connection", n, err)
	}
	return resp
}

// A body announced over a route's limit is refused on the declared length
// once fasthttp has its first 8 KiB; the rest is never read.
func TestServe_BodyOverTheRouteLimitIsRefusedUnread(t *testing.T) {
	h := newHarness(t)
	base := serve(t, h)
	head := fmt.Sprintf("POST /api/v1/services/web/deployments HTTP/1.1\r\nHost: x\r\n"+
		"Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		deployerSecret, 2<<20)
	resp := sendPartial(t, base, head, strings.Repeat(" ", 8<<10))
	wantStatus(t, resp, fiber.StatusRequestEntityTooLarge)
	if id := resp.Header.Get("X-Request-Id"); !validRequestID(id) {
		t.Errorf("X-Request-Id = %q, want an id on a refused body", id)
	}
	if body := decodeJSON[errorBody](t, resp); body.Code != "invalid" || body.Error == "" {
		t.Errorf("body = %+v, want code invalid and a message", body)
	}
	if calls := h.ctl.Calls(); len(calls) != 0 {
		t.Errorf("controller called: %+v", calls)
	}
}

func TestServe_ShutdownWaitsForInFlightRequests(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	h.ctl.block = release
	h.ctl.entered = make(chan struct{}, 1)
	base := serve(t, h)

	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/services", nil)
		req.Header.Set("Authorization", "Bearer "+viewerSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	select {
	case <-h.ctl.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the controller")
	}

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shutdown <- h.srv.Shutdown(ctx)
	}()
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v while a request was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if r := <-done; r.err != nil || r.status != 200 {
		t.Errorf("in-flight request: status %d, err %v; want 200", r.status, r.err)
	}
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the request finished")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still accepts connections after Shutdown")
	}
}

func TestServe_ShutdownGivesUpWhenContextEnds(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	h.ctl.block = release
	h.ctl.entered = make(chan struct{}, 1)
	base := serve(t, h)
	requested := make(chan struct{})
	go func() {
		defer close(requested)
		req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/services", nil)
		req.Header.Set("Authorization", "Bearer "+viewerSecret)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-h.ctl.entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	close(release)
	<-requested
}

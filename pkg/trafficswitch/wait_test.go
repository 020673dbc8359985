package trafficswitch

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

// Wait holds until the process stops serving, and then returns at once;
// with nothing on the socket it returns ErrUnreachable at once.
func TestClient_WaitEndsWhenTheProcessStops(t *testing.T) {
	sw, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sw.Close(context.Background()) })
	sock := socketPath(t)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stopping := make(chan struct{})
	srv := &http.Server{Handler: NewControlHandler(ServerOptions{Switch: sw, Stopping: stopping})}
	srv.RegisterOnShutdown(func() { close(stopping) })
	go func() { _ = srv.Serve(ln) }()

	c := NewClient(sock)
	ended := make(chan error, 1)
	go func() { ended <- c.Wait(context.Background()) }()
	select {
	case err := <-ended:
		t.Fatalf("Wait returned %v while the process serves", err)
	case <-time.After(200 * time.Millisecond):
	}
	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- srv.Shutdown(context.Background()) }()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("Wait = %v, want nil once the process stopped", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait still holding 5s after the process stopped")
	}
	if err := <-shutdownDone; err != nil {
		t.Fatalf("Shutdown: %v (a held wait must not hold the shutdown)", err)
	}
	if err := c.Wait(context.Background()); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Wait with nothing on the socket = %v, want ErrUnreachable", err)
	}
}

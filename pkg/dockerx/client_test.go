package dockerx

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// errorsIs keeps the tests' assertions short.
func errorsIs(err, target error) bool { return errors.Is(err, target) }

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return addr
}

func TestNew_UnreachableEngineIsErrUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := New(ctx, Options{Host: "tcp://" + closedAddr(t)})
	if !errors.Is(err, controller.ErrUnavailable) {
		t.Fatalf("New against a closed port: err = %v, want ErrUnavailable", err)
	}
}

func TestCalls_EngineGoneIsErrUnavailable(t *testing.T) {
	f := newFakeEngine(t)
	c, _ := f.client(true)
	f.srv.Close()
	ctx := context.Background()

	checks := map[string]error{
		"Containers":  func() error { _, err := c.Containers(ctx, "web"); return err }(),
		"Inspect":     func() error { _, err := c.InspectContainer(ctx, "x"); return err }(),
		"Stop":        c.StopContainer(ctx, "x", time.Second),
		"Remove":      c.RemoveContainer(ctx, "x"),
		"EnsureImage": c.EnsureImage(ctx, "demoapp:v1", controller.PullMissing, nil),
		"Ping":        c.Ping(ctx),
	}
	for name, err := range checks {
		if !errors.Is(err, controller.ErrUnavailable) {
			t.Errorf("%s: err = %v, want ErrUnavailable", name, err)
		}
		if errors.Is(err, controller.ErrNotFound) {
			t.Errorf("%s: err = %v also wraps ErrNotFound", name, err)
		}
	}
}

package swarmx

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func TestTaskAddresses_ListsRunningTasksWithTheirOverlayIP(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs, errs := e.startSet(ctx, func(n int) controller.ContainerSpec { return e.spec(n, 2) }, 2)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	set := e.svc + "-blue-abc123"
	got, err := e.rt.TaskAddresses(ctx, set, e.net)
	if err != nil {
		t.Fatal(err)
	}
	var want, ips []string
	for _, c := range cs {
		host, _, err := net.SplitHostPort(c.Address)
		if err != nil {
			t.Fatalf("address %q: %v", c.Address, err)
		}
		want = append(want, host)
	}
	var names []string
	for _, ta := range got {
		ips, names = append(ips, ta.IP), append(names, ta.Name)
	}
	slices.Sort(want)
	slices.Sort(ips)
	if !slices.Equal(ips, want) {
		t.Fatalf("task IPs = %v, want %v", ips, want)
	}
	if wantNames := []string{set + ".1", set + ".2"}; !slices.Equal(names, wantNames) {
		t.Fatalf("task names = %v, want %v", names, wantNames)
	}

	if _, err := e.rt.TaskAddresses(ctx, e.svc+"-nothing", e.net); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("tasks of a missing service: %v, want ErrNotFound", err)
	}
}

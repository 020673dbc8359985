package dockerx

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// exitLog records the services FollowExits reports, with when.
type exitLog struct {
	mu  sync.Mutex
	got []time.Time
}

func (l *exitLog) count(after time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.got {
		if !at.Before(after) {
			n++
		}
	}
	return n
}

func TestFollowExits_ReportsKilledAndRemovedReplicasNotOneOffs(t *testing.T) {
	c, image, svc := realClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	log := &exitLog{}
	done := make(chan error, 1)
	go func() {
		done <- c.FollowExits(ctx, func(service string) {
			// Other tests' containers come and go on the same engine.
			if service != svc {
				return
			}
			log.mu.Lock()
			log.got = append(log.got, time.Now())
			log.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("FollowExits after cancel = %v, want context.Canceled", err)
		}
	})

	ctr, err := c.StartContainer(ctx, replicaSpec(svc, image, controller.Blue, 1))
	if err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if _, err := c.RunOneOff(ctx, controller.OneOffSpec{
		Name: svc + "-oneoff", Image: image, Service: svc, Deployment: "dep-1", Command: []string{"migrate"},
	}); err != nil {
		t.Fatalf("RunOneOff: %v", err)
	}
	killed := time.Now()
	if err := c.api.ContainerKill(ctx, ctr.ID, "SIGKILL"); err != nil {
		t.Fatalf("kill: %v", err)
	}
	waitExits(t, log, killed, 1, "the kill")
	if n := log.count(time.Time{}); n != 1 {
		t.Fatalf("exits reported = %d, want 1: the one-off's end is no replica's death", n)
	}

	removed := time.Now()
	if err := c.RemoveContainer(ctx, ctr.ID); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	waitExits(t, log, removed, 1, "the removal")
}

func waitExits(t *testing.T, log *exitLog, since time.Time, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for log.count(since) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no exit reported for %s within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFollowContainers_ReplaysSinceAndReportsStartsAndKills(t *testing.T) {
	c, image, svc := realClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	since := time.Now().Add(-time.Second)
	// Started before the follow: the engine replays it from since.
	ctr, err := c.StartContainer(ctx, replicaSpec(svc, image, controller.Blue, 1))
	if err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	log := &exitLog{}
	done := make(chan error, 1)
	go func() {
		done <- c.FollowContainers(ctx, since, func(service string) {
			if service != svc {
				return
			}
			log.mu.Lock()
			log.got = append(log.got, time.Now())
			log.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("FollowContainers after cancel = %v, want context.Canceled", err)
		}
	})
	// create and start, replayed.
	waitExits(t, log, time.Time{}, 2, "the replayed create and start")

	killed := time.Now()
	if err := c.api.ContainerKill(ctx, ctr.ID, "SIGKILL"); err != nil {
		t.Fatalf("kill: %v", err)
	}
	waitExits(t, log, killed, 1, "the kill")
}

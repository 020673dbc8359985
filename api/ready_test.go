package api

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"
)

// Concurrent callers share one run of the checks, and a result is reused
// for a second: a flood of probes costs at most one `nginx -t` a second.
func TestReadiness_FloodRunsTheChecksAtMostOncePerSecond(t *testing.T) {
	var runs atomic.Int32
	release := make(chan struct{})
	run := func(ctx context.Context) error {
		runs.Add(1)
		<-release
		return errors.New("nginx: test failed")
	}
	var mu sync.Mutex
	now := time.Unix(1_750_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	logger, hook := logtest.NewNullLogger()
	r := newReadiness(run, readyCacheFor, clock, logger)

	const callers = 200
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			errs <- r.check(ctx)
		}()
	}
	// Hold the run until it has surely been joined by most callers; the
	// result must be the same however many joined.
	deadline := time.Now().Add(5 * time.Second)
	for runs.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no run started")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil || err.Error() != "nginx: test failed" {
			t.Fatalf("caller got %v, want the run's error", err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d concurrent callers caused %d runs, want 1", callers, n)
	}

	steps := []struct {
		after    time.Duration
		wantRuns int32
	}{
		{500 * time.Millisecond, 1}, // cached
		{400 * time.Millisecond, 1}, // 0.9 s after the run: still cached
		{200 * time.Millisecond, 2}, // 1.1 s: stale, runs again
		{100 * time.Millisecond, 2},
	}
	for _, st := range steps {
		advance(st.after)
		for range 50 {
			if err := r.check(context.Background()); err == nil {
				t.Fatal("check = nil, want the cached error")
			}
		}
		if n := runs.Load(); n != st.wantRuns {
			t.Fatalf("after +%s: %d runs, want %d", st.after, n, st.wantRuns)
		}
	}
	// The same failure is logged once, not per run or per caller.
	warned := 0
	for _, e := range hook.AllEntries() {
		if e.Message == "not ready" {
			warned++
		}
	}
	if warned != 1 {
		t.Fatalf("%d not-ready lines, want 1", warned)
	}
}

// A caller that gives up does not cancel the run the others wait for.
func TestReadiness_CallerLeavingEarlyDoesNotCancelTheSharedRun(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	var runCtxErr atomic.Value
	run := func(ctx context.Context) error {
		close(started)
		<-release
		runCtxErr.Store(ctx.Err() == nil)
		return nil
	}
	logger, _ := logtest.NewNullLogger()
	r := newReadiness(run, time.Second, time.Now, logger)

	impatient, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- r.check(impatient) }()
	<-started
	second := make(chan error, 1)
	go func() { second <- r.check(context.Background()) }()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("impatient caller got %v, want context.Canceled", err)
	}
	close(release)
	if err := <-second; err != nil {
		t.Fatalf("patient caller got %v, want nil", err)
	}
	if alive, _ := runCtxErr.Load().(bool); !alive {
		t.Fatal("the run's context ended with the first caller's")
	}
}

package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// fakeRunner counts runs and tracks how many of one job overlap.
type fakeRunner struct {
	watch, reconcile, retain atomic.Int32
	// following counts FollowExits and FollowContainers calls that have
	// not returned.
	following atomic.Int32
	// watchBlocks makes Watch wait for its context to end.
	watchBlocks bool
	running     atomic.Int32
	maxRunning  atomic.Int32
	watchErr    error
	repairs     int
	mu          sync.Mutex
	ctxErrs     []error
}

func (f *fakeRunner) Watch(ctx context.Context) error {
	f.watch.Add(1)
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		m := f.maxRunning.Load()
		if n <= m || f.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	if f.watchBlocks {
		<-ctx.Done()
		f.mu.Lock()
		f.ctxErrs = append(f.ctxErrs, ctx.Err())
		f.mu.Unlock()
		return ctx.Err()
	}
	return f.watchErr
}

func (f *fakeRunner) Reconcile(ctx context.Context) (int, error) {
	f.reconcile.Add(1)
	return f.repairs, nil
}

func (f *fakeRunner) FollowExits(ctx context.Context) {
	f.following.Add(1)
	defer f.following.Add(-1)
	<-ctx.Done()
}

func (f *fakeRunner) FollowContainers(ctx context.Context) {
	f.following.Add(1)
	defer f.following.Add(-1)
	<-ctx.Done()
}

func (f *fakeRunner) Retain(ctx context.Context) (int, error) {
	f.retain.Add(1)
	return 0, nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startTestJobs(t *testing.T, r jobRunner, iv jobIntervals) (*Jobs, *logtest.Hook) {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	j, err := StartJobs(r, iv, nil, log)
	if err != nil {
		t.Fatalf("StartJobs: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = j.Close(ctx)
	})
	return j, hook
}

func closeJobs(t *testing.T, j *Jobs) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := j.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestJobs_EachJobRunsOnItsInterval(t *testing.T) {
	r := &fakeRunner{repairs: 2}
	j, hook := startTestJobs(t, r, jobIntervals{Watch: 10 * time.Millisecond, Reconcile: 15 * time.Millisecond, Retain: 20 * time.Millisecond})
	waitFor(t, "every job to run twice", func() bool {
		return r.watch.Load() >= 2 && r.reconcile.Load() >= 2 && r.retain.Load() >= 2
	})
	closeJobs(t, j)

	var repairsLogged bool
	for _, e := range hook.AllEntries() {
		if e.Data["job"] == "reconcile" && e.Data["repairs"] == 2 {
			repairsLogged = true
		}
	}
	if !repairsLogged {
		t.Error("reconciler repairs were not logged with their count")
	}
}

func TestJobs_SlowRunIsNeverOverlappedAndCloseCancelsIt(t *testing.T) {
	r := &fakeRunner{watchBlocks: true}
	j, _ := startTestJobs(t, r, jobIntervals{Watch: 5 * time.Millisecond, Reconcile: time.Hour, Retain: time.Hour})
	waitFor(t, "the watchdog to start", func() bool { return r.watch.Load() >= 1 })
	// Many intervals pass while the first run blocks.
	time.Sleep(50 * time.Millisecond)
	if got := r.maxRunning.Load(); got != 1 {
		t.Fatalf("concurrent watchdog runs = %d, want 1", got)
	}

	start := time.Now()
	closeJobs(t, j)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %s, want the blocked run cancelled promptly", took)
	}
	r.mu.Lock()
	errs := append([]error(nil), r.ctxErrs...)
	r.mu.Unlock()
	if len(errs) != 1 || !errors.Is(errs[0], context.Canceled) {
		t.Fatalf("run context errors = %v, want one context.Canceled", errs)
	}
	if got := r.running.Load(); got != 0 {
		t.Fatalf("runs still going after Close = %d, want 0", got)
	}
}

func TestJobs_NothingRunsAfterClose(t *testing.T) {
	r := &fakeRunner{}
	j, _ := startTestJobs(t, r, jobIntervals{Watch: 5 * time.Millisecond, Reconcile: 5 * time.Millisecond, Retain: 5 * time.Millisecond})
	waitFor(t, "a watchdog run", func() bool { return r.watch.Load() >= 1 })
	closeJobs(t, j)
	before := r.watch.Load() + r.reconcile.Load() + r.retain.Load()
	time.Sleep(50 * time.Millisecond)
	if after := r.watch.Load() + r.reconcile.Load() + r.retain.Load(); after != before {
		t.Fatalf("runs after Close = %d, want 0", after-before)
	}
}

func TestJobs_ExitAndContainerFollowersRunUntilClose(t *testing.T) {
	r := &fakeRunner{}
	j, _ := startTestJobs(t, r, jobIntervals{Watch: time.Hour, Reconcile: time.Hour, Retain: time.Hour})
	waitFor(t, "both followers to start", func() bool { return r.following.Load() == 2 })
	closeJobs(t, j)
	if got := r.following.Load(); got != 0 {
		t.Fatalf("followers still running after Close = %d, want 0", got)
	}
}

func TestJobs_ErrorsAreLoggedAsWarnings(t *testing.T) {
	r := &fakeRunner{watchErr: errors.New("docker: unavailable")}
	j, hook := startTestJobs(t, r, jobIntervals{Watch: 5 * time.Millisecond, Reconcile: time.Hour, Retain: time.Hour})
	waitFor(t, "a failed watchdog round to be logged", func() bool {
		for _, e := range hook.AllEntries() {
			if e.Level == logrus.WarnLevel && e.Data["job"] == "watchdog" && e.Message == "watchdog round failed" {
				return true
			}
		}
		return false
	})
	closeJobs(t, j)
}

func TestStartJobs_BadIntervalIsAnError(t *testing.T) {
	log, _ := logtest.NewNullLogger()
	_, err := StartJobs(&fakeRunner{}, jobIntervals{Watch: 0, Reconcile: time.Second, Retain: time.Second}, nil, log)
	if err == nil {
		t.Fatal("StartJobs with a zero interval succeeded, want an error")
	}
}

func TestJobs_EachRunsDurationIsReportedByJobName(t *testing.T) {
	r := &fakeRunner{}
	log, _ := logtest.NewNullLogger()
	var mu sync.Mutex
	runs := map[string]int{}
	j, err := StartJobs(r, jobIntervals{Watch: 5 * time.Millisecond, Reconcile: 5 * time.Millisecond, Retain: 5 * time.Millisecond},
		func(job string, took time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if took >= 0 {
				runs[job]++
			}
		}, log)
	if err != nil {
		t.Fatalf("StartJobs: %v", err)
	}
	waitFor(t, "a reported run of each job", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return runs["watchdog"] > 0 && runs["reconcile"] > 0 && runs["retention"] > 0
	})
	closeJobs(t, j)
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != 3 {
		t.Fatalf("jobs reported = %v, want watchdog, reconcile and retention only", runs)
	}
}

func TestJobs_RunLongerThanItsIntervalIsAWarning(t *testing.T) {
	r := &slowReconcile{fakeRunner: &fakeRunner{}, took: 30 * time.Millisecond}
	j, hook := startTestJobs(t, r, jobIntervals{Watch: time.Hour, Reconcile: 10 * time.Millisecond, Retain: time.Hour})
	waitFor(t, "the overrun to be logged", func() bool {
		for _, e := range hook.AllEntries() {
			if e.Level == logrus.WarnLevel && e.Data["job"] == "reconcile" && e.Data["interval"] == "10ms" &&
				strings.Contains(e.Message, "longer than its interval") {
				return true
			}
		}
		return false
	})
	closeJobs(t, j)
	for _, e := range hook.AllEntries() {
		if e.Data["job"] == "watchdog" && strings.Contains(e.Message, "longer than its interval") {
			t.Errorf("a watchdog that never ran long was reported: %s", e.Message)
		}
	}
}

// slowReconcile is a runner whose reconciler pass takes a while.
type slowReconcile struct {
	*fakeRunner
	took time.Duration
}

func (s *slowReconcile) Reconcile(ctx context.Context) (int, error) {
	select {
	case <-time.After(s.took):
	case <-ctx.Done():
	}
	return s.fakeRunner.Reconcile(ctx)
}

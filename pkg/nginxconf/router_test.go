package nginxconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/pkg/controller"
)

// fakeNginx is an in-memory Driver. By default it accepts every config and
// every reload starts a new generation of workers.
type fakeNginx struct {
	mu sync.Mutex
	// testErr, when set, is what Test returns.
	testErr error
	// rejectReload makes the master keep its workers, as a real master
	// does when it rejects a config.
	rejectReload bool
	// reloadErr, when set, is what Reload returns.
	reloadErr error
	// workersErr, when set, is what Workers returns.
	workersErr error
	// onTest runs inside Test, e.g. to see the file nginx would test.
	onTest func()

	tests, reloads int
	workers        []int
	nextPID        int
}

func newFakeNginx() *fakeNginx {
	return &fakeNginx{workers: []int{100, 101}, nextPID: 200}
}

func (f *fakeNginx) Test(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tests++
	if f.onTest != nil {
		f.onTest()
	}
	return f.testErr
}

func (f *fakeNginx) Reload(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	if f.reloadErr != nil {
		return f.reloadErr
	}
	if !f.rejectReload {
		f.workers = []int{f.nextPID, f.nextPID + 1}
		f.nextPID += 2
	}
	return nil
}

func (f *fakeNginx) Workers(ctx context.Context) ([]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.workersErr != nil {
		return nil, f.workersErr
	}
	return append([]int(nil), f.workers...), nil
}

func (f *fakeNginx) counts() (tests, reloads int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tests, f.reloads
}

func newTestRouter(t *testing.T, d Driver) (*Router, string, *test.Hook) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "upstreams")
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	r, err := New(Options{Dir: dir, Driver: d, Logger: log, ReloadConfirmTimeout: 300 * time.Millisecond, pollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r, dir, hook
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

// dirEntries lists dir so tests can prove no temp file is left behind.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// switchedRouter is a router whose web.conf already points at
// 127.0.0.1:8001, for tests of a second switch that fails.
type switchedRouter struct {
	*Router
	dir, path string
	// before is web.conf as the first switch wrote it.
	before []byte
	hook   *test.Hook
}

func newSwitchedRouter(t *testing.T, ng Driver) switchedRouter {
	t.Helper()
	r, dir, hook := newTestRouter(t, ng)
	if err := r.Switch(context.Background(), "web", controller.NoColor, []string{"127.0.0.1:8001"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "web.conf")
	return switchedRouter{Router: r, dir: dir, path: path, before: readFile(t, path), hook: hook}
}

// wantRestored fails the test unless web.conf is byte for byte what the
// first switch wrote.
func (s switchedRouter) wantRestored(t *testing.T) {
	t.Helper()
	if got := readFile(t, s.path); !bytes.Equal(got, s.before) {
		t.Fatalf("web.conf =\n%s\nwant restored\n%s", got, s.before)
	}
}

func TestSwitch_WritesUpstreamReloadsAndConfirms(t *testing.T) {
	ng := newFakeNginx()
	r, dir, _ := newTestRouter(t, ng)
	if err := r.Switch(context.Background(), "web", controller.NoColor, []string{"127.0.0.1:8002", "127.0.0.1:8001"}); err != nil {
		t.Fatalf("Switch: %v", err)
	}
	want, err := Render(DefaultTemplate(), "web", []string{"127.0.0.1:8001", "127.0.0.1:8002"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "web.conf")); !bytes.Equal(got, want) {
		t.Fatalf("web.conf =\n%s\nwant\n%s", got, want)
	}
	if tests, reloads := ng.counts(); tests != 1 || reloads != 1 {
		t.Fatalf("tests, reloads = %d, %d; want 1, 1", tests, reloads)
	}
	if got := dirEntries(t, dir); len(got) != 1 {
		t.Fatalf("dir holds %v, want only web.conf", got)
	}
}

func TestSwitch_IdenticalContentDoesNotReload(t *testing.T) {
	ng := newFakeNginx()
	r, _, _ := newTestRouter(t, ng)
	ctx := context.Background()
	if err := r.Switch(ctx, "web", controller.NoColor, []string{"127.0.0.1:8001", "127.0.0.1:8002"}); err != nil {
		t.Fatal(err)
	}
	// Same set in another order, with a duplicate: still the same upstream.
	if err := r.Switch(ctx, "web", controller.NoColor, []string{"127.0.0.1:8002", "127.0.0.1:8001", "127.0.0.1:8002"}); err != nil {
		t.Fatal(err)
	}
	if tests, reloads := ng.counts(); tests != 1 || reloads != 1 {
		t.Fatalf("tests, reloads = %d, %d; want 1, 1", tests, reloads)
	}
}

func TestSwitch_FailedConfigTestRestoresFileWithoutReload(t *testing.T) {
	ng := newFakeNginx()
	r := newSwitchedRouter(t, ng)

	var tested []byte
	ng.onTest = func() { tested, _ = os.ReadFile(r.path) }
	ng.testErr = errors.New(`nginx config test: exit status 1: nginx: [emerg] host not found in upstream "db:5432"`)
	err := r.Switch(context.Background(), "web", controller.NoColor, []string{"127.0.0.1:8002"})
	if err == nil || !strings.Contains(err.Error(), `host not found in upstream "db:5432"`) {
		t.Fatalf("Switch error = %v, want one carrying nginx's output", err)
	}
	if !bytes.Contains(tested, []byte("127.0.0.1:8002")) {
		t.Fatalf("nginx tested\n%s\nwant the new upstream", tested)
	}
	r.wantRestored(t)
	if _, reloads := ng.counts(); reloads != 1 {
		t.Fatalf("reloads = %d, want 1 (only the first switch)", reloads)
	}
	if got := dirEntries(t, r.dir); len(got) != 1 {
		t.Fatalf("dir holds %v, want only web.conf", got)
	}
}

func TestSwitch_FailedConfigTestRemovesFileThatDidNotExist(t *testing.T) {
	ng := newFakeNginx()
	ng.testErr = errors.New("nginx config test: exit status 1: bad")
	r, dir, _ := newTestRouter(t, ng)
	if err := r.Switch(context.Background(), "web", controller.NoColor, []string{"127.0.0.1:8001"}); err == nil {
		t.Fatal("Switch succeeded, want error")
	}
	if got := dirEntries(t, dir); len(got) != 0 {
		t.Fatalf("dir holds %v, want nothing", got)
	}
	if _, reloads := ng.counts(); reloads != 0 {
		t.Fatalf("reloads = %d, want 0", reloads)
	}
}

func TestSwitch_UnconfirmedReloadRestoresAndReloadsAgain(t *testing.T) {
	ng := newFakeNginx()
	r := newSwitchedRouter(t, ng)

	ng.rejectReload = true
	err := r.Switch(context.Background(), "web", controller.NoColor, []string{"127.0.0.1:8002"})
	if err == nil || !strings.Contains(err.Error(), "reload not confirmed") {
		t.Fatalf("Switch error = %v, want reload not confirmed", err)
	}
	r.wantRestored(t)
	// One reload for the first switch, one rejected, one for the restore.
	if _, reloads := ng.counts(); reloads != 3 {
		t.Fatalf("reloads = %d, want 3", reloads)
	}
	var logged bool
	for _, e := range r.hook.AllEntries() {
		logged = logged || strings.Contains(e.Message, "previous file restored")
	}
	if !logged {
		t.Fatal("no log entry about the restore")
	}
}

func TestSwitch_UnavailableNginxRestoresAndSaysUnavailable(t *testing.T) {
	tests := []struct {
		name string
		fail func(ng *fakeNginx)
		// reloads counts every reload, the first switch's included.
		reloads int
	}{
		{
			// switch, failed switch, restore attempt
			name: "failed reload restores and reloads again",
			fail: func(ng *fakeNginx) {
				ng.reloadErr = fmt.Errorf("nginx reload: master gone: %w", controller.ErrUnavailable)
			},
			reloads: 3,
		},
		{
			name:    "nginx down fails before reload and restores",
			fail:    func(ng *fakeNginx) { ng.workersErr = fmt.Errorf("pid file missing: %w", controller.ErrUnavailable) },
			reloads: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ng := newFakeNginx()
			r := newSwitchedRouter(t, ng)

			tt.fail(ng)
			err := r.Switch(context.Background(), "web", controller.NoColor, []string{"127.0.0.1:8002"})
			if !errors.Is(err, controller.ErrUnavailable) {
				t.Fatalf("Switch error = %v, want one wrapping ErrUnavailable", err)
			}
			r.wantRestored(t)
			if _, reloads := ng.counts(); reloads != tt.reloads {
				t.Fatalf("reloads = %d, want %d", reloads, tt.reloads)
			}
		})
	}
}

// cancelOnReload cancels the caller's context while nginx reloads and then
// rejects the config, so the restore must run on a context of its own.
type cancelOnReload struct {
	*fakeNginx
	cancel context.CancelFunc
	once   sync.Once
}

func (c *cancelOnReload) Reload(ctx context.Context) error {
	first := false
	c.once.Do(func() { first = true })
	if first {
		c.cancel()
		c.fakeNginx.mu.Lock()
		c.fakeNginx.reloads++
		c.fakeNginx.mu.Unlock()
		return nil // delivered, but the master keeps its workers
	}
	if ctx.Err() != nil {
		return fmt.Errorf("restore reload got a cancelled context: %w", ctx.Err())
	}
	return c.fakeNginx.Reload(ctx)
}

func TestSwitch_CancelledContextStillRestores(t *testing.T) {
	ng := newFakeNginx()
	r := newSwitchedRouter(t, ng)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.driver = &cancelOnReload{fakeNginx: ng, cancel: cancel}
	err := r.Switch(ctx, "web", controller.NoColor, []string{"127.0.0.1:8002"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Switch error = %v, want context.Canceled", err)
	}
	r.wantRestored(t)
	if _, reloads := ng.counts(); reloads != 3 {
		t.Fatalf("reloads = %d, want 3", reloads)
	}
	for _, e := range r.hook.AllEntries() {
		if e.Level <= logrus.ErrorLevel {
			t.Fatalf("logged %q at %s, want the restore reload to succeed", e.Message, e.Level)
		}
	}
}

func TestSwitch_NoAddressesWritesPlaceholder(t *testing.T) {
	ng := newFakeNginx()
	r, dir, _ := newTestRouter(t, ng)
	ctx := context.Background()
	if err := r.Switch(ctx, "web", controller.NoColor, []string{"127.0.0.1:8001"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Switch(ctx, "web", controller.NoColor, nil); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "web.conf")); !bytes.Contains(got, []byte("server 127.0.0.1:1 down;")) {
		t.Fatalf("web.conf =\n%s\nwant the placeholder", got)
	}
}

func TestSwitch_InvalidInputIsNeverWritten(t *testing.T) {
	tests := []struct {
		name    string
		service string
		addrs   []string
	}{
		{"directive injection in address", "web", []string{"127.0.0.1:80; include /etc/passwd"}},
		{"brace in address", "web", []string{"127.0.0.1:80}"}},
		{"newline in address", "web", []string{"127.0.0.1:80\nserver evil:80"}},
		{"one bad among good", "web", []string{"127.0.0.1:80", "$host:80"}},
		{"path in service", "web/../../etc", []string{"127.0.0.1:80"}},
		{"upper-case service", "Web", []string{"127.0.0.1:80"}},
		{"empty service", "", []string{"127.0.0.1:80"}},
		{"port zero", "web", []string{"127.0.0.1:0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ng := newFakeNginx()
			r, dir, _ := newTestRouter(t, ng)
			err := r.Switch(context.Background(), tt.service, controller.NoColor, tt.addrs)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Switch error = %v, want ErrInvalid", err)
			}
			if got := dirEntries(t, dir); len(got) != 0 {
				t.Fatalf("dir holds %v, want nothing", got)
			}
			if tests, reloads := ng.counts(); tests+reloads != 0 {
				t.Fatalf("tests, reloads = %d, %d; want nginx untouched", tests, reloads)
			}
		})
	}
}

func TestEnsurePlaceholder_WritesOnlyWhenMissing(t *testing.T) {
	ng := newFakeNginx()
	r, dir, _ := newTestRouter(t, ng)
	ctx := context.Background()
	if err := r.EnsurePlaceholder(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "web.conf")
	want, _ := Render(DefaultTemplate(), "web", nil)
	if got := readFile(t, path); !bytes.Equal(got, want) {
		t.Fatalf("web.conf =\n%s\nwant\n%s", got, want)
	}

	if err := r.Switch(ctx, "web", controller.NoColor, []string{"127.0.0.1:8001"}); err != nil {
		t.Fatal(err)
	}
	live := readFile(t, path)
	if err := r.EnsurePlaceholder(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); !bytes.Equal(got, live) {
		t.Fatalf("EnsurePlaceholder overwrote a live upstream:\n%s", got)
	}
	if tests, reloads := ng.counts(); tests != 1 || reloads != 1 {
		t.Fatalf("tests, reloads = %d, %d; want only the switch's 1, 1", tests, reloads)
	}
}

func TestEnsurePlaceholder_RejectsInvalidService(t *testing.T) {
	r, dir, _ := newTestRouter(t, newFakeNginx())
	if err := r.EnsurePlaceholder(context.Background(), "../x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("error = %v, want ErrInvalid", err)
	}
	if got := dirEntries(t, dir); len(got) != 0 {
		t.Fatalf("dir holds %v, want nothing", got)
	}
}

// serialCheck fails the test if two calls are inside the driver at once.
type serialCheck struct {
	*fakeNginx
	t      *testing.T
	mu     sync.Mutex
	inside bool
}

func (s *serialCheck) enter() func() {
	s.mu.Lock()
	if s.inside {
		s.t.Error("two switches inside nginx at once")
	}
	s.inside = true
	s.mu.Unlock()
	return func() { s.mu.Lock(); s.inside = false; s.mu.Unlock() }
}

func (s *serialCheck) Test(ctx context.Context) error {
	defer s.enter()()
	time.Sleep(time.Millisecond) // widen the window a race would need
	return s.fakeNginx.Test(ctx)
}

func TestSwitch_ConcurrentSwitchesAreSerialized(t *testing.T) {
	ng := newFakeNginx()
	r, dir, _ := newTestRouter(t, &serialCheck{fakeNginx: ng, t: t})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc := fmt.Sprintf("svc%d", i)
			if err := r.Switch(context.Background(), svc, controller.NoColor, []string{fmt.Sprintf("127.0.0.1:%d", 8000+i)}); err != nil {
				t.Errorf("Switch %s: %v", svc, err)
			}
		}()
	}
	wg.Wait()
	if got := dirEntries(t, dir); len(got) != 8 {
		t.Fatalf("dir holds %v, want 8 files", got)
	}
}

func TestNew_BadTemplateIsAStartupError(t *testing.T) {
	tmpl := filepath.Join(t.TempDir(), "bad.tmpl")
	if err := os.WriteFile(tmpl, []byte("upstream {{.Service"), 0o644); err != nil {
		t.Fatal(err)
	}
	log, _ := test.NewNullLogger()
	_, err := New(Options{Dir: t.TempDir(), TemplatePath: tmpl, Driver: newFakeNginx(), Logger: log})
	if err == nil || !strings.Contains(err.Error(), "bad.tmpl") {
		t.Fatalf("New error = %v, want a template parse error naming the file", err)
	}
}

func TestNew_CreatesUpstreamDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	log, _ := test.NewNullLogger()
	if _, err := New(Options{Dir: dir, Driver: newFakeNginx(), Logger: log}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("stat %s = %v, %v; want a directory", dir, fi, err)
	}
}

// retiringNginx keeps old workers accepting for a few polls after a
// reload, as nginx does before its old workers handle the quit signal.
type retiringNginx struct {
	*fakeNginx
	polls     int
	retiredAt int
}

func (r *retiringNginx) Retired(ctx context.Context, pids []int) (bool, error) {
	r.polls++
	return r.polls >= r.retiredAt, nil
}

func TestSwitch_WaitsForOldWorkersToRetire(t *testing.T) {
	ng := &retiringNginx{fakeNginx: newFakeNginx(), retiredAt: 3}
	r, _, hook := newTestRouter(t, ng)
	if err := r.Switch(context.Background(), "web", controller.NoColor, []string{"127.0.0.1:8001"}); err != nil {
		t.Fatal(err)
	}
	if ng.polls != 3 {
		t.Fatalf("Retired polled %d times, want 3 (until the old workers retired)", ng.polls)
	}
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			t.Fatalf("logged %q at %s, want no warning", e.Message, e.Level)
		}
	}
}

func TestSwitch_OldWorkersThatNeverRetireOnlyWarn(t *testing.T) {
	ng := &retiringNginx{fakeNginx: newFakeNginx(), retiredAt: 1 << 30}
	r, dir, hook := newTestRouter(t, ng)
	if err := r.Switch(context.Background(), "web", controller.NoColor, []string{"127.0.0.1:8001"}); err != nil {
		t.Fatalf("Switch = %v, want nil: new workers prove the reload", err)
	}
	if got := readFile(t, filepath.Join(dir, "web.conf")); !bytes.Contains(got, []byte("127.0.0.1:8001")) {
		t.Fatalf("web.conf =\n%s\nwant the new upstream kept", got)
	}
	var warned bool
	for _, e := range hook.AllEntries() {
		warned = warned || (e.Level == logrus.WarnLevel && strings.Contains(e.Message, "still accepting"))
	}
	if !warned {
		t.Fatal("no warning about old workers still accepting")
	}
}

func TestDrain_WaitsTheTimeoutOrUntilCancelled(t *testing.T) {
	r, _, _ := newTestRouter(t, newFakeNginx())
	start := time.Now()
	msg, err := r.Drain(context.Background(), "web", controller.Blue, 20*time.Millisecond)
	if err != nil || time.Since(start) < 20*time.Millisecond || !strings.Contains(msg, "blue") {
		t.Fatalf("Drain = %q, %v after %s; want the whole 20ms waited on blue", msg, err, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Drain(ctx, "web", controller.Blue, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain on a cancelled context = %v, want context.Canceled", err)
	}
}

func TestSwitchEach_OneTestAndOneReloadForEveryChangedUpstream(t *testing.T) {
	ng := newFakeNginx()
	r, dir, _ := newTestRouter(t, ng)
	ctx := context.Background()
	if err := r.Switch(ctx, "web", controller.NoColor, []string{"127.0.0.1:8001"}); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"web":    {"127.0.0.1:8001"}, // already so: left alone
		"api":    {"127.0.0.1:8002"},
		"worker": {"127.0.0.1:8003"},
	}
	changed, err := r.SwitchEach(ctx, want)
	if err != nil {
		t.Fatalf("SwitchEach: %v", err)
	}
	if !slices.Equal(changed, []string{"api", "worker"}) {
		t.Fatalf("changed = %v, want [api worker]", changed)
	}
	for service, addrs := range want {
		rendered, err := Render(DefaultTemplate(), service, addrs)
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(dir, service+".conf")); !bytes.Equal(got, rendered) {
			t.Errorf("%s.conf =\n%s\nwant\n%s", service, got, rendered)
		}
	}
	if tests, reloads := ng.counts(); tests != 2 || reloads != 2 {
		t.Fatalf("tests, reloads = %d, %d; want 2, 2 (web's switch, then one for both others)", tests, reloads)
	}

	// Nothing to change: nginx is neither tested nor reloaded.
	if changed, err := r.SwitchEach(ctx, want); err != nil || len(changed) != 0 {
		t.Fatalf("SwitchEach again = %v, %v; want nothing changed", changed, err)
	}
	if tests, reloads := ng.counts(); tests != 2 || reloads != 2 {
		t.Fatalf("tests, reloads = %d, %d after a no-op; want 2, 2", tests, reloads)
	}
}

func TestSwitchEach_RejectedConfigPutsEveryFileBack(t *testing.T) {
	ng := newFakeNginx()
	r := newSwitchedRouter(t, ng)
	ng.testErr = errors.New("nginx config test: exit status 1: nginx: [emerg] bad")
	_, err := r.SwitchEach(context.Background(), map[string][]string{
		"web": {"127.0.0.1:9001"},
		"api": {"127.0.0.1:9002"},
	})
	if err == nil || !strings.Contains(err.Error(), "switch api, web: new upstream rejected") {
		t.Fatalf("SwitchEach error = %v, want the rejection naming both services", err)
	}
	r.wantRestored(t)
	if got := dirEntries(t, r.dir); !slices.Equal(got, []string{"web.conf"}) {
		t.Fatalf("dir holds %v, want only web.conf (api's new file removed)", got)
	}
	if _, reloads := ng.counts(); reloads != 1 {
		t.Fatalf("reloads = %d, want 1 (only the first switch)", reloads)
	}
}

package nginxconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/internal/testenv"
	"github.com/deployd/deployd/pkg/controller"
)

// backend starts a loopback HTTP server that answers its own name.
func backend(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprint(w, name)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func realRouter(t *testing.T, ng *testenv.Nginx, templatePath string) (*Router, *ExecDriver) {
	t.Helper()
	d := &ExecDriver{TestCommand: ng.TestCommand, ReloadCommand: ng.ReloadCommand, PIDFile: ng.PIDFile}
	log, _ := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	r, err := New(Options{Dir: ng.UpstreamDir, TemplatePath: templatePath, Driver: d, Logger: log, ReloadConfirmTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r, d
}

// waitFor polls nginx until it answers wantStatus and wantBody. A reload
// is confirmed once new workers exist; old workers may still be finishing
// a connection accepted a moment before, hence a short deadline, not a
// single GET.
func waitFor(t *testing.T, url string, wantStatus int, wantBody string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	var status int
	var body string
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		status, body, err = testenv.Get(ctx, url)
		cancel()
		if err == nil && status == wantStatus && (wantBody == "" || strings.TrimSpace(body) == wantBody) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("GET %s = %d %q (err %v), want %d %q", url, status, body, err, wantStatus, wantBody)
}

func TestNginx_SwitchMovesTrafficAndConfirmsNewWorkers(t *testing.T) {
	ng := testenv.StartNginx(t, "web")
	a, b := backend(t, "A"), backend(t, "B")
	r, d := realRouter(t, ng, "")
	ctx := context.Background()

	waitFor(t, ng.URL, http.StatusBadGateway, "")
	if err := r.Switch(ctx, "web", controller.NoColor, []string{a}); err != nil {
		t.Fatalf("Switch to A: %v", err)
	}
	waitFor(t, ng.URL, http.StatusOK, "A")

	before, err := d.Workers(ctx)
	if err != nil || len(before) == 0 {
		t.Fatalf("Workers = %v, %v; want nginx's workers", before, err)
	}
	if err := r.Switch(ctx, "web", controller.NoColor, []string{b}); err != nil {
		t.Fatalf("Switch to B: %v", err)
	}
	after, err := d.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(after, func(pid int) bool { return !slices.Contains(before, pid) }) {
		t.Fatalf("workers after switch %v, before %v; want a new worker", after, before)
	}
	// Switch waits for the old workers to stop accepting, so the very next
	// request already goes to B.
	for i := range 5 {
		reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		status, body, err := testenv.Get(reqCtx, ng.URL)
		cancel()
		if err != nil || status != http.StatusOK || strings.TrimSpace(body) != "B" {
			t.Fatalf("GET %d after switch = %d %q (err %v), want 200 \"B\"", i, status, body, err)
		}
	}

	// No addresses: the placeholder must pass nginx -t and answer 502.
	if err := r.Switch(ctx, "web", controller.NoColor, nil); err != nil {
		t.Fatalf("Switch to placeholder: %v", err)
	}
	waitFor(t, ng.URL, http.StatusBadGateway, "")
}

func TestNginx_PlaceholderPassesConfigTest(t *testing.T) {
	ng := testenv.StartNginx(t, "web")
	r, d := realRouter(t, ng, "")
	ctx := context.Background()
	if err := r.EnsurePlaceholder(ctx, "api"); err != nil {
		t.Fatal(err)
	}
	if err := d.Test(ctx); err != nil {
		t.Fatalf("nginx -t with a placeholder: %v", err)
	}
}

func TestNginx_RejectedConfigLeavesFileAndTrafficUntouched(t *testing.T) {
	ng := testenv.StartNginx(t, "web")
	a, b := backend(t, "A"), backend(t, "B")
	good, d := realRouter(t, ng, "")
	ctx := context.Background()
	if err := good.Switch(ctx, "web", controller.NoColor, []string{a}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ng.URL, http.StatusOK, "A")
	path := filepath.Join(ng.UpstreamDir, "web.conf")
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	workers, err := d.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// A user template that renders a directive nginx does not know.
	tmpl := filepath.Join(t.TempDir(), "upstream.tmpl")
	text := "upstream {{.Service}} {\n    bogus_directive on;\n{{range .Servers}}    server {{.Address}};\n{{end}}}\n"
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	bad, _ := realRouter(t, ng, tmpl)
	err = bad.Switch(ctx, "web", controller.NoColor, []string{b})
	if err == nil || !strings.Contains(err.Error(), `unknown directive "bogus_directive"`) {
		t.Fatalf("Switch error = %v, want nginx's test output", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("web.conf after rejected switch =\n%s\nwant byte-identical\n%s", got, want)
	}
	now, err := d.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A reload starts workers with new pids. The good switch's own reload
	// may still be retiring its old worker, so pids may go, but none may
	// come.
	if len(now) == 0 || slices.ContainsFunc(now, func(pid int) bool { return !slices.Contains(workers, pid) }) {
		t.Fatalf("workers = %v, want some of %v and no new one (no reload)", now, workers)
	}
	waitFor(t, ng.URL, http.StatusOK, "A")
}

func TestNginx_StoppedNginxFailsSwitchAndRestoresFile(t *testing.T) {
	ng := testenv.StartNginx(t, "web")
	a, b := backend(t, "A"), backend(t, "B")
	r, d := realRouter(t, ng, "")
	ctx := context.Background()
	if err := r.Switch(ctx, "web", controller.NoColor, []string{a}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(ng.UpstreamDir, "web.conf")
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	stopNginx(t, ng, d)
	err = r.Switch(ctx, "web", controller.NoColor, []string{b})
	if !errors.Is(err, controller.ErrUnavailable) {
		t.Fatalf("Switch error = %v, want ErrUnavailable", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("web.conf after failed switch =\n%s\nwant byte-identical\n%s", got, want)
	}
}

// stopNginx makes the master exit quickly and waits until the driver sees
// it gone.
func stopNginx(t *testing.T, ng *testenv.Nginx, d *ExecDriver) {
	t.Helper()
	b, err := os.ReadFile(ng.PIDFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := d.Workers(context.Background()); errors.Is(err, controller.ErrUnavailable) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("nginx still running 5s after SIGTERM")
}

// Several upstreams pointed at once: a real nginx tests and reloads once,
// and serves every new upstream after it.
func TestNginx_SwitchEachReloadsOnceForAll(t *testing.T) {
	ng := testenv.StartNginx(t, "web", "api")
	a, b := backend(t, "A"), backend(t, "B")
	r, _ := realRouter(t, ng, "")
	// nginx logs each reload signal it gets.
	const reloadSignal = "signal 1 (SIGHUP) received"
	reloadsBefore := strings.Count(ng.ErrorLogTail(), reloadSignal)
	changed, err := r.SwitchEach(context.Background(), map[string][]string{"web": {a}, "api": {b}})
	if err != nil {
		t.Fatalf("SwitchEach: %v", err)
	}
	if !slices.Equal(changed, []string{"api", "web"}) {
		t.Fatalf("changed = %v, want [api web]", changed)
	}
	waitFor(t, ng.URL+"/web/", http.StatusOK, "A")
	waitFor(t, ng.URL+"/api/", http.StatusOK, "B")
	if got := strings.Count(ng.ErrorLogTail(), reloadSignal) - reloadsBefore; got != 1 {
		t.Fatalf("nginx reconfigured %d times, want once", got)
	}
}

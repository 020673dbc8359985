package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeModeEnv makes this test binary act as `deployd serve` (see
// fakeDeployd) instead of running the tests: the Daemon tests need a
// process to start and stop, not the real daemon, which e2e covers.
const fakeModeEnv = "LAB_FAKE_DEPLOYD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeModeEnv); mode != "" {
		os.Exit(fakeDeployd(mode))
	}
	os.Exit(m.Run())
}

// fakeDeployd serves /healthz (and echoes requests at /echo) on
// DEPLOYD_LISTEN. mode: "ok" exits 0 on SIGTERM; "exit3" exits 3 at once;
// "stubborn" ignores SIGTERM; "unhealthy" answers /healthz with 503.
func fakeDeployd(mode string) int {
	if mode == "exit3" {
		fmt.Fprintln(os.Stderr, "fake deployd: refusing to start")
		return 3
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if mode == "unhealthy" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		var body any
		_ = json.NewDecoder(r.Body).Decode(&body)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "auth": r.Header.Get("Authorization"),
			"type": r.Header.Get("Content-Type"), "body": body, "args": os.Args[1:],
		})
	})
	srv := &http.Server{Addr: os.Getenv("DEPLOYD_LISTEN"), Handler: mux, ReadHeaderTimeout: time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Fprintln(os.Stderr, "fake deployd: listening")
	for {
		select {
		case err := <-errc:
			fmt.Fprintln(os.Stderr, "fake deployd:", err)
			return 1
		case <-sigs:
			if mode != "stubborn" {
				return 0
			}
		}
	}
}

// output is a file collecting a fake daemon's stdout and stderr.
type output struct {
	t    *testing.T
	path string
}

func newOutput(t *testing.T) *output {
	return &output{t: t, path: filepath.Join(t.TempDir(), "deployd.log")}
}

func (o *output) String() string {
	b, err := os.ReadFile(o.path)
	if err != nil {
		o.t.Fatalf("read daemon output: %v", err)
	}
	return string(b)
}

func fakeOptions(t *testing.T, mode string, out *output) DaemonOptions {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatalf("test binary: %v", err)
	}
	f, err := os.Create(out.path)
	if err != nil {
		t.Fatalf("daemon output: %v", err)
	}
	// The child gets its own copy of the descriptor at start.
	t.Cleanup(func() { _ = f.Close() })
	return DaemonOptions{
		Bin: bin, Config: filepath.Join(t.TempDir(), "deployd.yaml"),
		// Under -race the fake would otherwise sleep a second at exit,
		// longer than the stop timeout.
		Env: []string{fakeModeEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}, Output: f, StopTimeout: 500 * time.Millisecond,
	}
}

// startFake starts a fake daemon and stops it at cleanup.
func startFake(t *testing.T, mode string) (*Daemon, *output) {
	t.Helper()
	out := newOutput(t)
	d, err := StartDaemon(context.Background(), fakeOptions(t, mode, out), 10*time.Second)
	if err != nil {
		t.Fatalf("StartDaemon: %v; output:\n%s", err, out)
	}
	t.Cleanup(func() { _ = d.Stop() })
	return d, out
}

func TestStartDaemon_ReturnsOnceHealthyAndStopEndsItCleanly(t *testing.T) {
	d, out := startFake(t, "ok")
	if !strings.HasPrefix(d.URL, "http://127.0.0.1:") {
		t.Errorf("URL = %q, want http://127.0.0.1:<port>", d.URL)
	}
	if !strings.Contains(out.String(), "listening") {
		t.Errorf("output = %q, want the daemon's own output", out)
	}
	if err := d.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	code, err := d.Wait(0)
	if err != nil || code != 0 {
		t.Fatalf("Wait = %d, %v; want 0, nil", code, err)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
}

func TestStartDaemon_DaemonExitingAtStartIsErrDaemonExited(t *testing.T) {
	out := newOutput(t)
	_, err := StartDaemon(context.Background(), fakeOptions(t, "exit3", out), 10*time.Second)
	if !errors.Is(err, ErrDaemonExited) {
		t.Fatalf("err = %v, want ErrDaemonExited", err)
	}
	if !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("err = %q, want the exit status in it", err)
	}
	if !strings.Contains(out.String(), "refusing to start") {
		t.Errorf("output = %q, want the daemon's complaint", out)
	}
}

func TestStartDaemon_UnhealthyDaemonTimesOut(t *testing.T) {
	out := newOutput(t)
	_, err := StartDaemon(context.Background(), fakeOptions(t, "unhealthy", out), 300*time.Millisecond)
	if err == nil || errors.Is(err, ErrDaemonExited) || !strings.Contains(err.Error(), "not answering /healthz") {
		t.Fatalf("err = %v, want not answering /healthz", err)
	}
}

func TestWaitHealthy_EndsWithItsContext(t *testing.T) {
	out := newOutput(t)
	d, err := LaunchDaemon(fakeOptions(t, "unhealthy", out))
	if err != nil {
		t.Fatalf("LaunchDaemon: %v", err)
	}
	t.Cleanup(func() { _ = d.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.WaitHealthy(ctx, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitHealthy with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestStop_KillsDaemonIgnoringSIGTERMAfterStopTimeout(t *testing.T) {
	d, _ := startFake(t, "stubborn")
	start := time.Now()
	err := d.Stop()
	if !errors.Is(err, ErrDaemonKilled) {
		t.Fatalf("Stop = %v, want ErrDaemonKilled", err)
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("Stop took %s, want at least the 500ms stop timeout", took)
	}
	ws, ok := d.ProcessState().Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("process state = %v, want killed by SIGKILL", d.ProcessState())
	}
}

func TestKill9_EndsDaemonWithSIGKILL(t *testing.T) {
	d, _ := startFake(t, "ok")
	if d.PID() <= 0 {
		t.Errorf("PID = %d, want a process id", d.PID())
	}
	if err := d.Kill9(); err != nil {
		t.Fatalf("Kill9: %v", err)
	}
	select {
	case <-d.Done():
	default:
		t.Fatal("Done not closed after Kill9")
	}
	code, err := d.Wait(time.Second)
	if err != nil || code != -1 {
		t.Errorf("Wait = %d, %v; want -1 (signalled), nil", code, err)
	}
	if d.ExitErr() == nil {
		t.Error("ExitErr = nil, want the kill")
	}
}

func TestWait_RunningDaemonIsErrDaemonStillRunning(t *testing.T) {
	d, _ := startFake(t, "ok")
	if _, err := d.Wait(50 * time.Millisecond); !errors.Is(err, ErrDaemonStillRunning) {
		t.Fatalf("Wait = %v, want ErrDaemonStillRunning", err)
	}
	if d.ProcessState() != nil || d.ExitErr() != nil {
		t.Errorf("ProcessState, ExitErr = %v, %v of a running daemon; want nil, nil", d.ProcessState(), d.ExitErr())
	}
}

func TestDo_SendsJSONBodyTokenAndReturnsStatusAndBody(t *testing.T) {
	d, _ := startFake(t, "ok")
	tests := []struct {
		name            string
		body            any
		token           string
		wantType, wantA string
	}{
		{"body and token", map[string]string{"image": "v1"}, "secret", "application/json", "Bearer secret"},
		{"neither", nil, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b, err := d.Do(context.Background(), http.MethodPost, "/echo", tt.body, tt.token)
			if err != nil || status != http.StatusOK {
				t.Fatalf("Do = %d, %v; want 200, nil", status, err)
			}
			var got struct {
				Method, Auth, Type string
				Body               map[string]string
				Args               []string
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("decode %q: %v", b, err)
			}
			if got.Method != http.MethodPost || got.Auth != tt.wantA || got.Type != tt.wantType {
				t.Errorf("method, auth, type = %q, %q, %q; want POST, %q, %q", got.Method, got.Auth, got.Type, tt.wantA, tt.wantType)
			}
			if tt.body != nil && got.Body["image"] != "v1" {
				t.Errorf("body = %v, want image v1", got.Body)
			}
			if len(got.Args) != 3 || got.Args[0] != "serve" || got.Args[1] != "--config" {
				t.Errorf("args = %q, want serve --config <path>", got.Args)
			}
		})
	}
}

func TestModuleRoot_IsTheDirectoryOfGoMod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root, err := ModuleRoot(ctx)
	if err != nil {
		t.Fatalf("ModuleRoot: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatalf("read go.mod: %v", err)
	}
	if !strings.Contains(string(b), "module github.com/deployd/deployd") {
		t.Errorf("go.mod at %s is not deployd's", root)
	}
}

func TestBuildDeployd_FailureCarriesTheCompilerOutput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module example.com/x\n\ngo 1.22\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := BuildDeployd(ctx, root, t.TempDir(), false)
	if err == nil || !strings.Contains(err.Error(), "build deployd") || !strings.Contains(err.Error(), "cmd/deployd") {
		t.Fatalf("err = %v, want build deployd with go's complaint about ./cmd/deployd", err)
	}
}

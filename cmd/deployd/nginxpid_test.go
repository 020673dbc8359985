package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/internal/testenv"
)

// pidConfig writes an nginx config whose pid directive is nginxPID into a
// private prefix (no master is started: nginx -T only reads files) and a
// deployd config in exec mode testing it, with pid_file set to pidFile
// ("" leaves it out; "PREFIX/" in it is the prefix). It returns the
// deployd config's path and the prefix.
func pidConfig(t *testing.T, nginxPID, pidFile string) (string, string) {
	t.Helper()
	bin, err := lab.FindNginx()
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("%v; CI=true, so this is a failure", err)
		}
		t.Skipf("%v", err)
	}
	dir := t.TempDir()
	prefix := filepath.Join(dir, "nginx") + "/"
	for _, d := range []string{"logs", "run", "upstreams"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(prefix, "nginx.conf")
	body := "error_log " + prefix + "logs/error.log;\npid " + nginxPID + ";\nevents {}\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	yml := "data_dir: " + filepath.Join(dir, "data") + "\ntraffic:\n  mode: reload\nnginx:\n  mode: exec\n  upstream_dir: " + prefix + "upstreams\n" +
		"  test_command: [" + bin + ", -p, " + prefix + ", -c, " + conf + ", -t]\n"
	if pidFile != "" {
		yml += "  pid_file: " + strings.ReplaceAll(pidFile, "PREFIX/", prefix) + "\n"
	}
	yml += "services:\n  web:\n    image: demoapp\n    port: 8000\n"
	path := filepath.Join(dir, "deployd.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, prefix
}

// A pid directive other than /run/nginx.pid used to pass check and
// startup, and the first deploy then failed at its switch after its
// containers had started.
func TestCheck_NginxPIDFile(t *testing.T) {
	tests := []struct {
		name       string
		nginxPID   string // relative to the prefix
		pidFile    string // "" leaves pid_file out; "PREFIX/" is the prefix
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"left out: read from nginx's config", "run/custom.pid", "", 0, "nginx pid file: PREFIX/run/custom.pid (matches nginx's config)", ""},
		{"set and matching", "run/custom.pid", "PREFIX/run/custom.pid", 0, "nginx pid file: PREFIX/run/custom.pid", ""},
		{"set to the old default while nginx uses another", "run/custom.pid", "/run/nginx.pid", 1, "",
			"nginx.pid_file: is /run/nginx.pid, but nginx's config writes its pid to PREFIX/run/custom.pid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, prefix := pidConfig(t, tt.nginxPID, tt.pidFile)
			var stdout, stderr bytes.Buffer
			code := run([]string{"check", "--config", path}, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit = %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, &stdout, &stderr)
			}
			if w := strings.ReplaceAll(tt.wantStdout, "PREFIX/", prefix); !strings.Contains(stdout.String(), w) {
				t.Errorf("stdout = %q, want it to contain %q", &stdout, w)
			}
			if w := strings.ReplaceAll(tt.wantStderr, "PREFIX/", prefix); !strings.Contains(stderr.String(), w) {
				t.Errorf("stderr = %q, want it to contain %q", &stderr, w)
			}
		})
	}
}

func TestRun_PIDFileNginxDoesNotUseStopsStartupBeforeAnythingOpens(t *testing.T) {
	path, prefix := pidConfig(t, "run/custom.pid", "/run/nginx.pid")
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, func(string) string { return "" }, io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = m.Run(ctx)
	defer func() { _ = m.Close(ctx) }()
	want := "nginx.pid_file: is /run/nginx.pid, but nginx's config writes its pid to " + prefix + "run/custom.pid"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run err = %v, want it to contain %q", err, want)
	}
	if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
		t.Errorf("data dir stat err = %v, want it never created: startup must stop before the store opens", err)
	}
}

func TestRun_PIDFileLeftOutIsReadFromNginx(t *testing.T) {
	path, prefix := pidConfig(t, "run/custom.pid", "")
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	p := askNginxPID(context.Background(), cfg.Nginx)
	got, warning, err := p.resolve(cfg)
	if want := prefix + "run/custom.pid"; err != nil || warning != "" || got != want {
		t.Fatalf("resolve = %q, %q, %v; want %q", got, warning, err, want)
	}
}

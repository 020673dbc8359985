package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/config"
)

// staticConfig writes a config with nginx.mode static for service web on
// a loopback switch.listen, nginx's commands naming a program that does
// not exist (static mode must never run them) and the Docker engine at
// engineURL; data_dir is short, for switchd's socket.
func staticConfig(t *testing.T, engineURL, listen string) (path string, cfg *config.Config) {
	t.Helper()
	dir, err := os.MkdirTemp("", "st")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	yml := "listen: 127.0.0.1:0\ndata_dir: " + filepath.Join(dir, "data") + "\n" +
		"docker: {host: \"tcp://" + strings.TrimPrefix(engineURL, "http://") + "\"}\n" +
		"nginx:\n  mode: static\n  upstream_dir: " + filepath.Join(dir, "upstreams") + "\n" +
		"  test_command: [/nonexistent/nginx, -t]\n  reload_command: [/nonexistent/nginx, -s, reload]\n" +
		"traffic:\n  mode: switch\n  switchd: {spawn: false}\n" +
		"services:\n  web:\n    image: demoapp\n    port: 8000\n    switch: {listen: \"" + listen + "\"}\n"
	path = filepath.Join(dir, "deployd.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return path, cfg
}

// emptyEngine is a stand-in Docker engine with no container.
func emptyEngine(t *testing.T) *httptest.Server {
	t.Helper()
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/_ping"):
			_, _ = io.WriteString(w, "OK")
		case strings.HasSuffix(r.URL.Path, "/containers/json"):
			_, _ = io.WriteString(w, "[]")
		case strings.HasSuffix(r.URL.Path, "/events"):
			// An event stream with no event, open until the daemon
			// goes.
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"message":"not in this stand-in"}`)
		}
	}))
	t.Cleanup(engine.Close)
	return engine
}

// With nginx.mode static the daemon starts, and is ready, on the switch
// alone: no nginx is run, asked or written to.
func TestRun_StaticNginxStartsAndIsReadyWithoutNginx(t *testing.T) {
	engine := emptyEngine(t)
	listen := freeAddr(t)
	_, cfg := staticConfig(t, engine.URL, listen)
	if _, err := runSwitchdInProcess(t, cfg); err != nil {
		t.Fatalf("switchd: %v", err)
	}
	m := NewMain(cfg, func(string) string { return "" }, io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		_ = m.Close(ctx)
		t.Fatalf("Run: %v", err)
	}
	defer func() {
		if err := m.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	if err := m.Controller().Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	resp, err := http.Get("http://" + m.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz = %d, want %d", resp.StatusCode, http.StatusOK)
	}
	if _, err := os.Stat(cfg.Nginx.UpstreamDir); !os.IsNotExist(err) {
		t.Errorf("upstream dir stat err = %v, want it never created", err)
	}
}

// The readiness check in static mode is the switch's: with no switch
// listening for the service, the daemon is unready and says so.
func TestRun_StaticNginxReadinessIsTheSwitchs(t *testing.T) {
	engine := emptyEngine(t)
	_, cfg := staticConfig(t, engine.URL, freeAddr(t))
	d, err := runSwitchdInProcess(t, cfg)
	if err != nil {
		t.Fatalf("switchd: %v", err)
	}
	m := NewMain(cfg, func(string) string { return "" }, io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		_ = m.Close(ctx)
		t.Fatalf("Run: %v", err)
	}
	defer func() { _ = m.Close(ctx) }()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("stop switchd: %v", err)
	}
	err = m.Controller().Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "traffic switch") {
		t.Fatalf("Ready with switchd gone = %v, want an error naming the traffic switch", err)
	}
}

func TestCheck_StaticNginxSaysWhereToProxy(t *testing.T) {
	listen := freeAddr(t)
	path, _ := staticConfig(t, "http://127.0.0.1:9", listen)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "--config", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit = %d, want 0\nstdout: %s\nstderr: %s", code, &stdout, &stderr)
	}
	if want := "nginx static: proxy web to the traffic switch at " + listen; !strings.Contains(stdout.String(), want) {
		t.Errorf("stdout = %q, want it to contain %q", &stdout, want)
	}
}

package main

import (
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

// A service on runtime swarm needs the engine to be a swarm manager:
// startup stops naming the field, rather than deploy nowhere. The engine is
// a stand-in that answers as Docker does on a node outside any swarm.
func TestRun_SwarmRuntimeNeedsASwarmManager(t *testing.T) {
	engineHost := engineOutsideASwarm(t)

	dir := t.TempDir()
	path := filepath.Join(dir, "deployd.yml")
	yml := "data_dir: data\ndocker: {host: \"tcp://" + engineHost + "\"}\n" +
		"traffic: {mode: reload}\nnginx: {mode: exec, upstream_dir: up}\n" +
		"services:\n  web:\n    image: demoapp\n    port: 8000\n    runtime: swarm\n    network: app\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, func(string) string { return "" }, io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = m.Run(ctx)
	defer func() { _ = m.Close(ctx) }()
	if want := "services.web.runtime: swarm: this Docker engine is not a swarm manager"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run err = %v, want it to contain %q", err, want)
	}
}

// engineOutsideASwarm is a stand-in Docker engine that answers as Docker
// does on a node outside any swarm, and returns its host:port.
func engineOutsideASwarm(t *testing.T) string {
	t.Helper()
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/_ping"):
			_, _ = io.WriteString(w, "OK")
		case strings.HasSuffix(r.URL.Path, "/swarm"):
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"message":"This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"message":"not in this stand-in"}`)
		}
	}))
	t.Cleanup(engine.Close)
	return strings.TrimPrefix(engine.URL, "http://")
}

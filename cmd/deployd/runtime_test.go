package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/config"
)

// Until the Swarm adapter is wired, a swarm service must stop startup with
// the field named, before the store or Docker is opened, rather than run
// on the local engine.
func TestRun_SwarmRuntimeIsRefusedBeforeAnythingOpens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "deployd.yml")
	yml := "data_dir: data\ntraffic: {mode: reload}\nnginx: {mode: exec, upstream_dir: up}\n" +
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
	if want := "services.web.runtime: swarm is not available in this version of deployd yet"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run err = %v, want it to contain %q", err, want)
	}
	if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
		t.Errorf("data dir stat err = %v, want it never created", err)
	}
}

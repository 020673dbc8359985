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

// Edge switches are found through a swarm manager's task list: on an
// engine outside any swarm startup stops naming the field, before any
// switch is asked. The engine is a stand-in that answers as Docker does
// there.
func TestRun_EdgesNeedASwarmManager(t *testing.T) {
	engineHost := engineOutsideASwarm(t)

	dir := t.TempDir()
	path := filepath.Join(dir, "deployd.yml")
	yml := "data_dir: data\ndocker: {host: \"tcp://" + engineHost + "\"}\n" +
		"traffic:\n  mode: switch\n  switchd:\n    spawn: false\n    control_token_env: SWITCHD_TOKEN\n" +
		"    edges: {service: edge-switch, network: edges, control_port: 7600}\n" +
		"nginx: {mode: exec, upstream_dir: up}\n" +
		"services:\n  web:\n    image: demoapp\n    port: 8000\n    switch: {listen: \"0.0.0.0:7501\", upstream: \"edge-switch:7501\"}\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == "SWITCHD_TOKEN" {
			return strings.Repeat("k", 32)
		}
		return ""
	}
	cfg, err := config.Load(path, getenv)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, getenv, io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = m.Run(ctx)
	defer func() { _ = m.Close(ctx) }()
	if want := "traffic.switchd.edges.service: the edge switches run on a swarm: this Docker engine is not a swarm manager"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run err = %v, want it to contain %q", err, want)
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/nginxconf"
	"github.com/deployd/deployd/pkg/store"
)

var recoverNow = time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)

func ctr(color controller.Color, i int, image, dep string, addr string) controller.Container {
	c := controller.Container{ID: fmt.Sprintf("%s%d", color, i), Name: fmt.Sprintf("web-%s-%d", color, i),
		Service: "web", Color: color, Image: image, Deployment: dep, State: "exited"}
	if addr != "" {
		c.State, c.Address = "running", addr
	}
	return c
}

func TestRebuildState(t *testing.T) {
	blue := []controller.Container{ctr(controller.Blue, 1, "demoapp:v1", "d1", "127.0.0.1:5001"), ctr(controller.Blue, 2, "demoapp:v1", "d1", "127.0.0.1:5002")}
	green := []controller.Container{ctr(controller.Green, 1, "demoapp:v2", "d2", "127.0.0.1:6001"), ctr(controller.Green, 2, "demoapp:v2", "d2", "127.0.0.1:6002")}
	stoppedBlue := []controller.Container{ctr(controller.Blue, 1, "demoapp:v1", "d1", ""), ctr(controller.Blue, 2, "demoapp:v1", "d1", "")}
	tests := []struct {
		name     string
		cs       []controller.Container
		upstream []string
		want     controller.ServiceState
	}{
		{
			name: "green serves, blue warm", cs: append(append([]controller.Container{}, blue...), green...),
			upstream: []string{"127.0.0.1:6001", "127.0.0.1:6002"},
			want: controller.ServiceState{ActiveColor: controller.Green, ActiveImage: "demoapp:v2", ActiveDeployment: "d2",
				StandbyColor: controller.Blue, StandbyImage: "demoapp:v1", StandbyDeployment: "d1"},
		},
		{
			name: "blue serves, green stopped is still the standby", cs: append(append([]controller.Container{}, green[0]), blue...),
			upstream: []string{"127.0.0.1:5001", "127.0.0.1:5002"},
			want: controller.ServiceState{ActiveColor: controller.Blue, ActiveImage: "demoapp:v1", ActiveDeployment: "d1",
				StandbyColor: controller.Green, StandbyImage: "demoapp:v2", StandbyDeployment: "d2"},
		},
		{
			name: "only an active color", cs: green, upstream: []string{"127.0.0.1:6001", "127.0.0.1:6002"},
			want: controller.ServiceState{ActiveColor: controller.Green, ActiveImage: "demoapp:v2", ActiveDeployment: "d2"},
		},
		{name: "placeholder: no active", cs: blue},
		{name: "upstream matches no color", cs: blue, upstream: []string{"127.0.0.1:5001"}},
		{name: "active color's containers stopped", cs: stoppedBlue, upstream: []string{"127.0.0.1:5001", "127.0.0.1:5002"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := rebuildState("web", tt.cs, tt.upstream, recoverNow)
			tt.want.Name, tt.want.UpdatedAt = "web", recoverNow
			if f.State != tt.want {
				t.Errorf("state = %+v, want %+v", f.State, tt.want)
			}
			if !tt.want.ActiveColor.Valid() && f.Note == "" {
				t.Errorf("no active color and no note saying why")
			}
		})
	}
}

type fakeRecoverRuntime struct {
	cs  map[string][]controller.Container
	err error
}

func (f fakeRecoverRuntime) Containers(ctx context.Context, service string) ([]controller.Container, error) {
	return f.cs[service], f.err
}

// recoverEnv is a config, data dir and upstream dir for one service web
// whose green color serves two replicas and whose blue one is the standby.
type recoverEnv struct {
	config, dbPath, upstreams string
	rt                        fakeRecoverRuntime
	stdout, stderr            bytes.Buffer
}

func newRecoverEnv(t *testing.T) *recoverEnv {
	t.Helper()
	dir := t.TempDir()
	e := &recoverEnv{
		config:    filepath.Join(dir, "deployd.yml"),
		dbPath:    filepath.Join(dir, "data", "deployd.db"),
		upstreams: filepath.Join(dir, "upstreams"),
	}
	yml := fmt.Sprintf("data_dir: %s\ntraffic:\n  mode: reload\nnginx:\n  upstream_dir: %s\n%s", filepath.Join(dir, "data"), e.upstreams, minimal)
	if err := os.WriteFile(e.config, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	up, err := nginxconf.Render(nginxconf.DefaultTemplate(), "web", []string{"127.0.0.1:6001", "127.0.0.1:6002"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(e.upstreams, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.upstreams, "web.conf"), up, 0o644); err != nil {
		t.Fatal(err)
	}
	e.rt = fakeRecoverRuntime{cs: map[string][]controller.Container{"web": {
		ctr(controller.Blue, 1, "demoapp:v1", "d1", "127.0.0.1:5001"),
		ctr(controller.Green, 1, "demoapp:v2", "d2", "127.0.0.1:6001"),
		ctr(controller.Green, 2, "demoapp:v2", "d2", "127.0.0.1:6002"),
	}}}
	return e
}

// writeStore writes a healthy store file holding a stale state.
func (e *recoverEnv) writeStore(t *testing.T) {
	t.Helper()
	s, err := store.Open(t.Context(), store.Options{Path: e.dbPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutService(t.Context(), controller.ServiceState{Name: "web", ActiveColor: controller.Blue}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func (e *recoverEnv) corruptStore(t *testing.T) {
	t.Helper()
	e.writeStore(t)
	if err := os.WriteFile(e.dbPath, bytes.Repeat([]byte{0xA5}, 3*4096), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *recoverEnv) run(t *testing.T, args ...string) error {
	t.Helper()
	cmd := recoverCmd{
		getenv: func(string) string { return "" },
		now:    func() time.Time { return recoverNow },
		connect: func(context.Context, *config.Config) (recoverRuntime, func() error, error) {
			return e.rt, func() error { return nil }, nil
		},
		stdout: &e.stdout,
		stderr: &e.stderr,
	}
	return cmd.run(t.Context(), append([]string{"--config", e.config}, args...))
}

func (e *recoverEnv) storedState(t *testing.T) controller.ServiceState {
	t.Helper()
	s, err := store.Open(t.Context(), store.Options{Path: e.dbPath})
	if err != nil {
		t.Fatalf("open rebuilt store: %v", err)
	}
	defer func() { _ = s.Close() }()
	st, err := s.GetService(t.Context(), "web")
	if err != nil {
		t.Fatalf("GetService: %v", err)
	}
	return st
}

func TestRecover_CorruptStoreIsMovedAsideAndRebuiltFromDockerAndNginx(t *testing.T) {
	e := newRecoverEnv(t)
	e.corruptStore(t)
	if _, err := store.Open(t.Context(), store.Options{Path: e.dbPath}); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("precondition: Open = %v, want ErrCorrupt", err)
	}

	if err := e.run(t); err != nil {
		t.Fatalf("recover: %v\nstdout:\n%s", err, e.stdout.String())
	}

	moved := e.dbPath + ".corrupt-20260203T040506Z"
	if b, err := os.ReadFile(moved); err != nil || !bytes.Equal(b, bytes.Repeat([]byte{0xA5}, 3*4096)) {
		t.Errorf("corrupt file not kept at %s: %v", moved, err)
	}
	want := controller.ServiceState{Name: "web", ActiveColor: controller.Green, ActiveImage: "demoapp:v2", ActiveDeployment: "d2",
		StandbyColor: controller.Blue, StandbyImage: "demoapp:v1", StandbyDeployment: "d1", UpdatedAt: recoverNow}
	if got := e.storedState(t); got != want {
		t.Errorf("rebuilt state = %+v, want %+v", got, want)
	}
	if strings.Contains(e.stdout.String(), "<nil>") {
		t.Errorf("output has a <nil> cause:\n%s", e.stdout.String())
	}
	for _, s := range []string{"is corrupted: ", moved, "web: active green (demoapp:v2, deployment d2), standby blue (demoapp:v1, deployment d1)"} {
		if !strings.Contains(e.stdout.String(), s) {
			t.Errorf("output does not mention %q:\n%s", s, e.stdout.String())
		}
	}
}

func TestRecover_RefusesWhileTheDaemonHoldsTheStore(t *testing.T) {
	e := newRecoverEnv(t)
	e.writeStore(t)
	s, err := store.Open(t.Context(), store.Options{Path: e.dbPath})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()

	err = e.run(t, "--force")
	if err == nil || !strings.Contains(err.Error(), "stop the running deployd") {
		t.Fatalf("recover while locked = %v, want a refusal naming the running deployd", err)
	}
	if matches, _ := filepath.Glob(e.dbPath + ".corrupt-*"); len(matches) != 0 {
		t.Errorf("store moved aside while in use: %v", matches)
	}
}

func TestRecover_HealthyStoreNeedsForce(t *testing.T) {
	e := newRecoverEnv(t)
	e.writeStore(t)
	if err := e.run(t); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("recover of a healthy store = %v, want a refusal mentioning --force", err)
	}
	if got := e.storedState(t); got.ActiveColor != controller.Blue {
		t.Fatalf("healthy store changed without --force: %+v", got)
	}
	if err := e.run(t, "--force"); err != nil {
		t.Fatalf("recover --force: %v", err)
	}
	if got := e.storedState(t); got.ActiveColor != controller.Green {
		t.Errorf("state after --force = %+v, want green active", got)
	}
}

func TestRecover_DockerUnreachableLeavesTheFileInPlace(t *testing.T) {
	e := newRecoverEnv(t)
	e.corruptStore(t)
	e.rt.err = fmt.Errorf("ping: %w", controller.ErrUnavailable)
	if err := e.run(t); !errors.Is(err, controller.ErrUnavailable) {
		t.Fatalf("recover = %v, want ErrUnavailable", err)
	}
	if _, err := os.Stat(e.dbPath); err != nil {
		t.Errorf("store file moved although nothing was rebuilt: %v", err)
	}
}

func TestRecover_MissingStoreIsCreated(t *testing.T) {
	e := newRecoverEnv(t)
	if err := e.run(t); err != nil {
		t.Fatalf("recover: %v", err)
	}
	if got := e.storedState(t); got.ActiveColor != controller.Green {
		t.Errorf("state = %+v, want green active", got)
	}
}

func TestWithRecoverCommand_NamesTheConfigOnlyForCorruptStores(t *testing.T) {
	corrupt := &store.CorruptError{Path: "/var/lib/deployd/deployd.db", Cause: errors.New("file is empty")}
	got := withRecoverCommand(fmt.Errorf("open store: %w", corrupt), "/etc/deployd/deployd.yml")
	if !errors.Is(got, store.ErrCorrupt) || !strings.HasSuffix(got.Error(), "deployd recover --config /etc/deployd/deployd.yml") {
		t.Errorf("error = %q, want ErrCorrupt ending in the recover command with the config", got)
	}
	other := errors.New("permission denied")
	if got := withRecoverCommand(other, "/etc/deployd/deployd.yml"); got != other {
		t.Errorf("other error = %v, want it unchanged", got)
	}
}

// A crash mid-deploy leaves the deploy's containers beside the standby's
// in one color; the active color's set is found by its deployment.
func TestRebuildState_ActiveSetBesideAnotherDeploymentsContainers(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cs := []controller.Container{
		{Name: "web-blue-aaaaaa-1", Color: controller.Blue, Deployment: "d-aaaaaa", Image: "app:v1", State: "running", Address: "127.0.0.1:9001"},
		{Name: "web-blue-cccccc-1", Color: controller.Blue, Deployment: "d-cccccc", Image: "app:v3", State: "running", Address: "127.0.0.1:9003"},
		{Name: "web-green-bbbbbb-1", Color: controller.Green, Deployment: "d-bbbbbb", Image: "app:v2", State: "running", Address: "127.0.0.1:9002"},
	}
	f := rebuildState("web", cs, []string{"127.0.0.1:9003"}, now)
	st := f.State
	if st.ActiveColor != controller.Blue || st.ActiveImage != "app:v3" || st.ActiveDeployment != "d-cccccc" {
		t.Errorf("active = %s %s %s, want blue app:v3 d-cccccc (%s)", st.ActiveColor, st.ActiveImage, st.ActiveDeployment, f.Note)
	}
	if st.StandbyColor != controller.Green || st.StandbyDeployment != "d-bbbbbb" {
		t.Errorf("standby = %s %s, want green d-bbbbbb", st.StandbyColor, st.StandbyDeployment)
	}
}

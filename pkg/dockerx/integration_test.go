package dockerx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/internal/testenv"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

// These tests run against the real Docker engine with a locally built demo
// app image; testenv skips them (or fails them under CI=true) without one.

// realClient returns a Client on the real engine in exec mode, an image of
// the demo app and a service name no other test uses; the service's
// containers are removed when the test ends, however it ends.
func realClient(t *testing.T) (*Client, string, string) {
	t.Helper()
	cli := testenv.Docker(t)
	image := testenv.DemoImage(t, cli, "deployd-dockerx-demo:v1", map[string]string{"APP_VERSION": "v1"})
	svc := testenv.UniqueService(t)
	t.Cleanup(func() { testenv.RemoveServiceContainers(t, cli, svc) })
	log, _ := logtest.NewNullLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, Options{PublishPorts: true, Logger: log, PullRetries: 2, PullBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, image, svc
}

// waitHealthy polls addr's /health until it answers 200 or the deadline.
func waitHealthy(t *testing.T, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var last string
	for {
		code, body, err := testenv.Get(ctx, "http://"+addr+"/health")
		if err == nil && code == http.StatusOK {
			return
		}
		last = fmt.Sprintf("status %d, body %q, err %v", code, body, err)
		select {
		case <-ctx.Done():
			t.Fatalf("GET %s/health never answered 200; last: %s", addr, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func replicaSpec(svc, image string, color controller.Color, i int) controller.ContainerSpec {
	return controller.ContainerSpec{
		Name: fmt.Sprintf("%s-%s-%d", svc, color, i), Image: image, Service: svc, Color: color,
		Deployment: "dep-1", Port: 8000, Env: []string{"APP_VERSION=v1"}, RestartPolicy: "unless-stopped",
	}
}

func TestRuntime_ReplicasServeThroughPublishedPortsAndSurviveStopStart(t *testing.T) {
	c, image, svc := realClient(t)
	ctx := context.Background()

	var started []controller.Container
	for i := 1; i <= 2; i++ {
		ctr, err := c.StartContainer(ctx, replicaSpec(svc, image, controller.Blue, i))
		if err != nil {
			t.Fatalf("StartContainer %d: %v", i, err)
		}
		if !strings.HasPrefix(ctr.Address, "127.0.0.1:") {
			t.Fatalf("Address = %q, want 127.0.0.1:<port>", ctr.Address)
		}
		waitHealthy(t, ctr.Address)
		started = append(started, ctr)
	}
	if started[0].Address == started[1].Address {
		t.Fatalf("both replicas got address %s", started[0].Address)
	}

	// A one-off of the same service must not be listed as a replica.
	if _, err := c.RunOneOff(ctx, controller.OneOffSpec{
		Name: svc + "-oneoff", Image: image, Service: svc, Deployment: "dep-1", Command: []string{"migrate"},
	}); err != nil {
		t.Fatalf("RunOneOff: %v", err)
	}

	list, err := c.Containers(ctx, svc)
	if err != nil {
		t.Fatalf("Containers: %v", err)
	}
	if len(list) != 2 {
		t.Fatalf("Containers = %d (%+v), want 2", len(list), list)
	}
	for _, got := range list {
		if got.Service != svc || got.Color != controller.Blue || got.Deployment != "dep-1" || !got.Running() ||
			got.Address == "" || got.Image != image || got.StartedAt.IsZero() || !strings.HasPrefix(got.Name, svc+"-blue-") {
			t.Errorf("listed container = %+v, want a running blue replica of %s with an address", got, svc)
		}
	}

	first := started[0]
	if err := c.StopContainer(ctx, first.ID, 5*time.Second); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	stopped, err := c.InspectContainer(ctx, first.ID)
	if err != nil {
		t.Fatalf("InspectContainer: %v", err)
	}
	if stopped.Running() || stopped.Address != "" {
		t.Fatalf("after stop: state %q address %q, want not running and no address", stopped.State, stopped.Address)
	}

	restarted, err := c.StartExisting(ctx, first.ID)
	if err != nil {
		t.Fatalf("StartExisting: %v", err)
	}
	if !restarted.Running() || restarted.Address == "" {
		t.Fatalf("after StartExisting: %+v, want running with an address", restarted)
	}
	waitHealthy(t, restarted.Address)

	if err := c.RemoveContainer(ctx, first.ID); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	if err := c.RemoveContainer(ctx, first.ID); err != nil {
		t.Fatalf("second RemoveContainer: %v, want nil for a missing container", err)
	}
	if _, err := c.InspectContainer(ctx, first.ID); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("InspectContainer of a removed container: err = %v, want ErrNotFound", err)
	}
	list, err = c.Containers(ctx, svc)
	if err != nil {
		t.Fatalf("Containers: %v", err)
	}
	if len(list) != 1 || list[0].ID != started[1].ID {
		t.Fatalf("Containers after remove = %+v, want only %s", list, started[1].Name)
	}
}

// A docker rm -f by hand kills the replica, which wakes the reconciler,
// whose own remove then finds the removal in progress: it must wait for
// it, and the replica's name must be free to create again at once.
func TestRemoveContainer_WhileRemovedByHandWaitsAndFreesTheName(t *testing.T) {
	c, image, svc := realClient(t)
	cli := testenv.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec := replicaSpec(svc, image, controller.Blue, 1)
	// The hand's removal has to be caught in progress; a trial where it
	// finished first proves nothing and is run again.
	const trials = 20
	for trial := 1; trial <= trials; trial++ {
		ctr, err := c.StartContainer(ctx, spec)
		if err != nil {
			t.Fatalf("trial %d: StartContainer: %v", trial, err)
		}
		byHand := make(chan error, 1)
		go func() { byHand <- cli.ContainerRemove(ctx, ctr.ID, container.RemoveOptions{Force: true}) }()
		caught := false
		for !caught {
			got, err := cli.ContainerInspect(ctx, ctr.ID)
			if err != nil {
				break
			}
			caught = got.State != nil && got.State.Status == "removing"
		}
		if err := c.RemoveContainer(ctx, ctr.ID); err != nil {
			t.Fatalf("trial %d: RemoveContainer during a removal by hand: %v, want nil once it is gone", trial, err)
		}
		if _, err := c.StartContainer(ctx, spec); err != nil {
			t.Fatalf("trial %d: StartContainer of %s right after: %v, want its name free", trial, spec.Name, err)
		}
		if err := <-byHand; err != nil {
			t.Fatalf("trial %d: the removal by hand: %v", trial, err)
		}
		if err := c.RemoveContainer(ctx, spec.Name); err != nil {
			t.Fatalf("trial %d: RemoveContainer: %v", trial, err)
		}
		if caught {
			t.Logf("removal by hand caught in progress at trial %d", trial)
			return
		}
	}
	t.Fatalf("the removal by hand was never caught in progress in %d trials", trials)
}

func TestRunOneOff_ExitCodesAndOutput(t *testing.T) {
	c, image, svc := realClient(t)
	tests := []struct {
		name     string
		env      []string
		wantExit int
		wantOut  []string
	}{
		{name: "success", wantExit: 0, wantOut: []string{"Applying app.0002_add_email... OK"}},
		{name: "failure", env: []string{"MIGRATE_EXIT=3"}, wantExit: 3, wantOut: []string{"Applying app.0002_add_email... FAILED", "simulated failure (exit 3)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := svc + "-migrate-" + tt.name
			res, err := c.RunOneOff(context.Background(), controller.OneOffSpec{
				Name: name, Image: image, Service: svc, Deployment: "dep-1", Command: []string{"migrate"}, Env: tt.env,
			})
			if err != nil {
				t.Fatalf("RunOneOff: %v", err)
			}
			if res.ExitCode != tt.wantExit {
				t.Errorf("exit = %d, want %d; output:\n%s", res.ExitCode, tt.wantExit, res.Output)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(res.Output, w) {
					t.Errorf("output lacks %q:\n%s", w, res.Output)
				}
			}
			if _, err := c.InspectContainer(context.Background(), name); !errors.Is(err, controller.ErrNotFound) {
				t.Errorf("one-off container after the run: err = %v, want ErrNotFound (removed)", err)
			}
		})
	}
}

func TestRunOneOff_TimeoutKillsAndRemoves(t *testing.T) {
	c, image, svc := realClient(t)
	name := svc + "-migrate-slow"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()

	start := time.Now()
	_, err := c.RunOneOff(ctx, controller.OneOffSpec{
		Name: name, Image: image, Service: svc, Deployment: "dep-1", Command: []string{"migrate"},
		Env: []string{"MIGRATE_DELAY=1h"},
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("RunOneOff returned after %v, want soon after the 2s deadline", took)
	}
	if _, err := c.InspectContainer(context.Background(), name); !errors.Is(err, controller.ErrNotFound) {
		t.Errorf("timed-out one-off: err = %v, want ErrNotFound (removed)", err)
	}
}

func TestEnsureImage_RealEngine(t *testing.T) {
	c, image, _ := realClient(t)
	const absent = "deployd-dockerx-absent:v9"
	tests := []struct {
		name    string
		ref     string
		policy  controller.PullPolicy
		wantErr error
	}{
		{name: "present, never", ref: image, policy: controller.PullNever},
		{name: "present, missing", ref: image, policy: controller.PullMissing},
		{name: "absent, never", ref: absent, policy: controller.PullNever, wantErr: controller.ErrNotFound},
		{name: "absent, missing", ref: absent, policy: controller.PullMissing, wantErr: controller.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := c.EnsureImage(ctx, tt.ref, tt.policy, nil)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("EnsureImage: %v, want nil", err)
			}
			if tt.wantErr != nil {
				t.Logf("error: %v", err)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("EnsureImage: err = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.ref) || !strings.Contains(err.Error(), "not found locally") {
					t.Errorf("err = %q, want it to name %s and say it is not found locally", err, tt.ref)
				}
			}
			if took := time.Since(start); took > 8*time.Second {
				t.Errorf("EnsureImage took %v, want well under 10s", took)
			}
		})
	}
}

func TestStartContainer_DockerModeJoinsNetworkWithNameAlias(t *testing.T) {
	cli := testenv.Docker(t)
	image := testenv.DemoImage(t, cli, "deployd-dockerx-demo:v1", map[string]string{"APP_VERSION": "v1"})
	svc := testenv.UniqueService(t)
	t.Cleanup(func() { testenv.RemoveServiceContainers(t, cli, svc) })
	ctx := context.Background()

	netName := svc + "-net"
	if _, err := cli.NetworkCreate(ctx, netName, network.CreateOptions{Labels: map[string]string{workload.LabelService: svc}}); err != nil {
		t.Fatalf("create network: %v", err)
	}
	// Registered after the containers' cleanup, so it runs before it:
	// remove the containers first, then the network they were on.
	t.Cleanup(func() {
		testenv.RemoveServiceContainers(t, cli, svc)
		if err := cli.NetworkRemove(context.Background(), netName); err != nil {
			t.Errorf("remove network %s: %v", netName, err)
		}
	})

	log, _ := logtest.NewNullLogger()
	c, err := New(ctx, Options{PublishPorts: false, Logger: log})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })

	spec := replicaSpec(svc, image, controller.Green, 1)
	spec.Network = netName
	ctr, err := c.StartContainer(ctx, spec)
	if err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if want := spec.Name + ":8000"; ctr.Address != want {
		t.Errorf("Address = %q, want %q", ctr.Address, want)
	}
	insp, err := cli.ContainerInspect(ctx, ctr.ID)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	ep := insp.NetworkSettings.Networks[netName]
	if ep == nil {
		t.Fatalf("container is not on %s: %v", netName, insp.NetworkSettings.Networks)
	}
	if !slices.Contains(ep.Aliases, spec.Name) && !slices.Contains(ep.DNSNames, spec.Name) {
		t.Errorf("aliases %v / DNS names %v lack %q", ep.Aliases, ep.DNSNames, spec.Name)
	}
	if len(insp.HostConfig.PortBindings) != 0 {
		t.Errorf("PortBindings = %v, want none in docker mode", insp.HostConfig.PortBindings)
	}
	// The host reaches the bridge network directly; nginx would use the name.
	waitHealthy(t, ep.IPAddress+":8000")
}

// The engine, not only the request, must hold every limit: docker inspect
// shows what the container really runs with. The demo app still serves
// under all of them at once, and so does its migration one-off.
func TestStartContainer_LimitsAreWhatTheEngineRuns(t *testing.T) {
	c, image, svc := realClient(t)
	ctx := context.Background()
	limits := controller.ContainerLimits{
		Memory: 64 << 20, NanoCPUs: 500_000_000, PidsLimit: 64,
		CapDrop: []string{"ALL"}, CapAdd: []string{"NET_BIND_SERVICE"},
		NoNewPrivileges: true, ReadOnly: true, User: "65534:65534",
	}
	spec := replicaSpec(svc, image, controller.Blue, 1)
	spec.Limits = limits
	ctr, err := c.StartContainer(ctx, spec)
	if err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	waitHealthy(t, ctr.Address)

	insp, err := c.api.ContainerInspect(ctx, ctr.ID)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	hc := insp.HostConfig
	if hc.Memory != limits.Memory || hc.NanoCPUs != limits.NanoCPUs || hc.PidsLimit == nil || *hc.PidsLimit != limits.PidsLimit {
		t.Errorf("memory/cpus/pids = %d/%d/%v, want %d/%d/%d", hc.Memory, hc.NanoCPUs, hc.PidsLimit, limits.Memory, limits.NanoCPUs, limits.PidsLimit)
	}
	// The engine spells capabilities with or without CAP_, by version.
	bare := func(caps []string) []string {
		out := make([]string, len(caps))
		for i, c := range caps {
			out[i] = strings.TrimPrefix(c, "CAP_")
		}
		return out
	}
	if !slices.Equal(bare(hc.CapDrop), limits.CapDrop) || !slices.Equal(bare(hc.CapAdd), limits.CapAdd) {
		t.Errorf("cap_drop/cap_add = %v/%v, want %v/%v", hc.CapDrop, hc.CapAdd, limits.CapDrop, limits.CapAdd)
	}
	if !slices.Contains(hc.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("SecurityOpt = %v, want no-new-privileges:true", hc.SecurityOpt)
	}
	if !hc.ReadonlyRootfs || hc.Tmpfs["/tmp"] == "" {
		t.Errorf("ReadonlyRootfs = %v, Tmpfs = %v, want read-only with a tmpfs on /tmp", hc.ReadonlyRootfs, hc.Tmpfs)
	}
	if insp.Config.User != limits.User {
		t.Errorf("User = %q, want %q", insp.Config.User, limits.User)
	}
	// The kernel's view, not only the engine's record: PID 1 runs as the
	// user, bounded to the one added capability, with no way to gain
	// privileges.
	if insp.State == nil || insp.State.Pid <= 0 {
		t.Fatalf("container state %+v has no pid", insp.State)
	}
	status := procStatus(t, insp.State.Pid)
	for _, want := range []string{"Uid:\t65534\t65534", "NoNewPrivs:\t1", "CapBnd:\t0000000000000400"} {
		if !strings.Contains(status, want) {
			t.Errorf("/proc/%d/status lacks %q:\n%s", insp.State.Pid, want, status)
		}
	}

	res, err := c.RunOneOff(ctx, controller.OneOffSpec{
		Name: svc + "-migrate-limited", Image: image, Service: svc, Deployment: "dep-1",
		Command: []string{"migrate"}, Limits: limits,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("RunOneOff under the limits: exit %d, err %v; output:\n%s", res.ExitCode, err, res.Output)
	}
}

// No nginx image can be built here, so the nginx control runs against a demo
// app container: this proves the exec, attach and top plumbing on a real
// engine; nginx's own behaviour is covered with the fake engine.
func TestNginxContainer_RealEngineExecAndTop(t *testing.T) {
	c, image, svc := realClient(t)
	ctx := context.Background()
	ctr, err := c.StartContainer(ctx, replicaSpec(svc, image, controller.Blue, 1))
	if err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	n := c.NginxContainer(ctr.Name)

	// The demo image has no nginx binary, so the exec fails with a non-zero exit.
	if err := n.Test(ctx); err == nil || !strings.Contains(err.Error(), "exit") {
		t.Errorf("Test in a container without nginx: err = %v, want a failed exit", err)
	}
	workers, err := n.Workers(ctx)
	if err != nil {
		t.Fatalf("Workers: %v", err)
	}
	if len(workers) != 0 {
		t.Errorf("workers = %v, want none (the demo app has no children)", workers)
	}
	if ok, err := n.Retired(ctx, []int{1 << 30}); err != nil || !ok {
		t.Errorf("Retired(nonexistent pid) = %v, %v; want true, nil", ok, err)
	}
}

func TestLastExitCode_RestartedContainerReportsItsDeathNotItsNewRun(t *testing.T) {
	c, image, svc := realClient(t)
	ctx := context.Background()
	// Each run pretends to migrate for 3s and exits 2; Docker restarts it
	// once. The test looks during the second run.
	created, err := c.api.ContainerCreate(ctx,
		&container.Config{
			Image: image, Cmd: []string{"migrate"}, Env: []string{"MIGRATE_EXIT=2", "MIGRATE_DELAY=3s"},
			Labels: map[string]string{workload.LabelManaged: "true", workload.LabelService: svc},
		},
		&container.HostConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 1}},
		nil, nil, svc+"-dies-2")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := c.api.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	if code, err := c.LastExitCode(ctx, created.ID); !errors.Is(err, controller.ErrNotFound) {
		t.Errorf("LastExitCode before any death = %d, %v, want ErrNotFound", code, err)
	}

	restarted := waitRestartedAndRunning(t, c, created.ID)
	t.Logf("inspect of the restarted container: state %s, exit code %d", restarted.State, restarted.ExitCode)

	got, err := c.LastExitCode(ctx, created.ID)
	if err != nil {
		t.Fatalf("LastExitCode: %v", err)
	}
	if got != 2 {
		t.Errorf("LastExitCode = %d, want 2, the death's", got)
	}
	// The answer must have come from the restarted container, not from
	// the second run's own death.
	if now, err := c.InspectContainer(ctx, created.ID); err != nil || !now.Running() || now.Restarts != 1 {
		t.Fatalf("after LastExitCode: %+v, %v; want still in its second run (too slow an engine?)", now, err)
	}
}

// waitRestartedAndRunning polls until the container runs again after one
// restart.
func waitRestartedAndRunning(t *testing.T, c *Client, id string) controller.Container {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ct, err := c.InspectContainer(context.Background(), id)
		if err != nil {
			t.Fatalf("inspect: %v", err)
		}
		if ct.Running() && ct.Restarts == 1 {
			return ct
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s never ran again after a restart; last %+v", id, ct)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procStatus reads /proc/<pid>/status of a container's process, as the
// host sees it; it skips the check (fails under CI) where the engine's
// processes are not visible, as with a remote engine.
func procStatus(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("read the container's /proc status: %v", err)
		}
		t.Skipf("the engine's processes are not visible here (%v); CI=true fails instead", err)
	}
	return string(b)
}

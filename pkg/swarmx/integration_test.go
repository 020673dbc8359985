package swarmx

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/internal/testenv"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

// These tests run against the local engine as a single-node swarm
// (testenv.Swarm) with locally built images: nothing is pulled.

type env struct {
	cli   *client.Client
	rt    *Runtime
	image string
	svc   string
	net   string
}

func newEnv(t *testing.T) env {
	t.Helper()
	return newEnvOn(t, testenv.Swarm(t))
}

// newEnvOn is newEnv on a swarm joined already (testenv.SwarmAlone).
func newEnvOn(t *testing.T, cli *client.Client) env {
	t.Helper()
	image := testenv.DemoImage(t, cli, "deployd-swarmx-demo:v1", map[string]string{"APP_VERSION": "v1"})
	net := testenv.OverlayNetwork(t, cli) // registered first: removed after the services
	svc := testenv.UniqueService(t)
	t.Cleanup(func() { testenv.RemoveSwarmServices(t, cli, svc) })
	log, _ := logtest.NewNullLogger()
	return env{cli: cli, rt: New(cli, nil, log), image: image, svc: svc, net: net}
}

func (e env) spec(n, replicas int) controller.ContainerSpec {
	return controller.ContainerSpec{
		Name:  fmt.Sprintf("%s-blue-abc123-%d", e.svc, n),
		Image: e.image, Service: e.svc, Color: controller.Blue, Deployment: "d-abc123",
		Port: 8000, Network: e.net, RestartPolicy: "unless-stopped", Replicas: replicas,
	}
}

// startSet starts replicas 1..n in parallel, as the controller does.
func (e env) startSet(ctx context.Context, spec func(n int) controller.ContainerSpec, n int) ([]controller.Container, []error) {
	cs := make([]controller.Container, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs[i], errs[i] = e.rt.StartContainer(ctx, spec(i+1))
		}()
	}
	wg.Wait()
	return cs, errs
}

func TestStartContainer_ReplicasRunOnTheOverlayAndAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	began := time.Now()
	cs, errs := e.startSet(ctx, func(n int) controller.ContainerSpec { return e.spec(n, 2) }, 2)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("StartContainer %d: %v", i+1, err)
		}
	}
	t.Logf("2 tasks running after %s", time.Since(began).Round(time.Millisecond))
	for i, c := range cs {
		if want := fmt.Sprintf("%s-blue-abc123-%d", e.svc, i+1); c.Name != want {
			t.Errorf("name = %q, want %q", c.Name, want)
		}
		if !c.Running() || c.Address == "" || c.Node == "" || c.Color != controller.Blue || c.Deployment != "d-abc123" {
			t.Errorf("container %d = %+v, want running with an address and a node", i+1, c)
		}
	}
	if cs[0].Address == cs[1].Address {
		t.Errorf("both replicas at %s", cs[0].Address)
	}
	listed, err := e.rt.Containers(ctx, e.svc)
	if err != nil || len(listed) != 2 {
		t.Fatalf("Containers = %d, %v; want 2", len(listed), err)
	}
	probe := probeImage(t, e.cli)
	for _, c := range cs {
		if code := runProbe(ctx, t, e.cli, probe, e.net, "http://"+c.Address+"/health"); code != 0 {
			t.Errorf("probe of %s exited %d, want 0", c.Address, code)
		}
	}
}

func TestStartContainer_UnplaceableConstraintFailsFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := e.spec(1, 1)
	spec.Placement.Constraints = []string{"node.labels.nope==yes"}
	assertFailsFast(t, e, spec, "no suitable node")
}

func TestStartContainer_MissingImageIsRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := e.spec(1, 1)
	spec.Image = "deployd-swarmx-missing:never-built"
	assertFailsFast(t, e, spec, "No such image")
}

func TestStartContainer_ReservationLargerThanTheNodeFailsFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := e.spec(1, 1)
	spec.Placement.Reservations.NanoCPUs = 10000 * 1e9
	assertFailsFast(t, e, spec, "insufficient resources")
}

func assertFailsFast(t *testing.T, e env, spec controller.ContainerSpec, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	began := time.Now()
	_, err := e.rt.StartContainer(ctx, spec)
	took := time.Since(began)
	t.Logf("failed after %s: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, errTask) || !strings.Contains(err.Error(), want) {
		t.Fatalf("StartContainer = %v, want a task error quoting %q", err, want)
	}
	if took > 20*time.Second {
		t.Errorf("failing took %s, want a fast failure", took)
	}
}

// A cold standby: the controller stops each replica of the set, then
// later finds the stopped set by listing, starts it again or removes it,
// as it does with stopped containers on a single host, and this runtime
// forgets nothing in between (a restarted deployd finds it all the same).
func TestStopContainer_ScalesToZeroListsStoppedSlotsAndStartsThemAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var started []controller.Container
	for n := 1; n <= 2; n++ {
		c, err := e.rt.StartContainer(ctx, e.spec(n, 2))
		if err != nil {
			t.Fatalf("StartContainer %d: %v", n, err)
		}
		started = append(started, c)
	}
	for _, c := range started {
		if err := e.rt.StopContainer(ctx, c.ID, 2*time.Second); err != nil {
			t.Fatalf("StopContainer %s: %v", c.Name, err)
		}
	}
	fresh := New(e.cli, nil, nil) // as after a restart of deployd
	listed, err := fresh.Containers(ctx, e.svc)
	if err != nil || len(listed) != 2 {
		t.Fatalf("Containers after stop = %+v, %v; want the 2 slots, stopped", listed, err)
	}
	for i, c := range listed {
		if c.Running() || c.Name != started[i].Name || c.Deployment != started[i].Deployment || c.Color != started[i].Color || c.Image != started[i].Image {
			t.Fatalf("stopped slot %+v, want a stopped %s of the same set (was %+v)", c, started[i].Name, started[i])
		}
	}
	again, err := fresh.StartExisting(ctx, listed[1].ID)
	if err != nil {
		t.Fatalf("StartExisting: %v", err)
	}
	if !again.Running() || again.Name != started[1].Name || again.Address == "" {
		t.Fatalf("StartExisting = %+v, want a new running task named %s", again, started[1].Name)
	}
	if running, err := fresh.Containers(ctx, e.svc); err != nil || len(running) != 2 {
		t.Fatalf("Containers after the start = %+v, %v; want both slots running again", running, err)
	}
	if err := fresh.StopContainer(ctx, again.ID, 2*time.Second); err != nil {
		t.Fatalf("StopContainer again: %v", err)
	}
	stopped, err := fresh.Containers(ctx, e.svc)
	if err != nil || len(stopped) != 2 {
		t.Fatalf("Containers after the second stop = %+v, %v", stopped, err)
	}
	if err := fresh.RemoveContainer(ctx, stopped[0].ID); err != nil {
		t.Fatalf("RemoveContainer of a stopped slot: %v", err)
	}
	if err := fresh.RemoveContainer(ctx, stopped[1].ID); err != nil {
		t.Fatalf("RemoveContainer of the set's other slot, gone with it: %v", err)
	}
	svcs, err := e.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: workload.Filter(e.svc)})
	if err != nil || len(svcs) != 0 {
		t.Fatalf("services after remove = %d, %v; want none", len(svcs), err)
	}
}

func TestRunOneOff_ReturnsExitCodeAndOutputAndRemovesTheJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for _, tc := range []struct {
		image string
		exit  int
	}{
		{e.image, 0},
		{testenv.DemoImage(t, e.cli, "deployd-swarmx-demo:v1-migrate3", map[string]string{"APP_VERSION": "v1", "MIGRATE_EXIT": "3"}), 3},
	} {
		res, err := e.rt.RunOneOff(ctx, controller.OneOffSpec{
			Name: e.svc + "-predeploy-" + fmt.Sprint(tc.exit), Image: tc.image, Service: e.svc, Deployment: "d-abc123",
			Command: []string{"migrate"}, Network: e.net,
		})
		if err != nil {
			t.Fatalf("RunOneOff(%s): %v", tc.image, err)
		}
		if res.ExitCode != tc.exit || res.Output == "" {
			t.Errorf("RunOneOff(%s) = exit %d, output %q; want exit %d with output", tc.image, res.ExitCode, res.Output, tc.exit)
		}
	}
	if left, err := e.rt.OneOffs(ctx, e.svc); err != nil || len(left) != 0 {
		t.Fatalf("OneOffs = %+v, %v; want none", left, err)
	}
}

func TestStartContainer_DrainedNodeFailsCleanly(t *testing.T) {
	// Alone on the swarm, and not parallel: draining the only node stops
	// every task, other test processes' too.
	e := newEnvOn(t, testenv.SwarmAlone(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes, err := e.cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil || len(nodes) != 1 {
		t.Fatalf("NodeList = %d nodes, %v; want the one", len(nodes), err)
	}
	setAvailability(t, e.cli, nodes[0].ID, swarm.NodeAvailabilityDrain)
	t.Cleanup(func() { setAvailability(t, e.cli, nodes[0].ID, swarm.NodeAvailabilityActive) })
	assertFailsFast(t, e, e.spec(1, 1), "no suitable node")
}

func setAvailability(t *testing.T, cli *client.Client, id string, a swarm.NodeAvailability) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		n, _, err := cli.NodeInspectWithRaw(ctx, id)
		if err != nil {
			t.Fatalf("inspect node: %v", err)
		}
		n.Spec.Availability = a
		err = cli.NodeUpdate(ctx, id, n.Version, n.Spec)
		if err == nil {
			return
		}
		// A concurrent update of the node: read its new version again.
		select {
		case <-ctx.Done():
			t.Errorf("set node %s %s: %v", id, a, err)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probeSource GETs its argument and exits 0 on a 200.
const probeSource = `package main

import (
	"net/http"
	"os"
	"time"
)

func main() {
	c := &http.Client{Timeout: 3 * time.Second}
	for i := 0; i < 20; i++ {
		resp, err := c.Get(os.Args[1])
		if err == nil && resp.StatusCode == 200 {
			os.Exit(0)
		}
		time.Sleep(250 * time.Millisecond)
	}
	os.Exit(1)
}
`

// probeImage builds a FROM scratch image holding a static HTTP probe: the
// host cannot route to overlay addresses, a container on the network can.
func probeImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(probeSource), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", "probe", "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for name, body := range map[string][]byte{"Dockerfile": []byte("FROM scratch\nCOPY probe /probe\nENTRYPOINT [\"/probe\"]\n"), "probe": bin} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	const ref = "deployd-swarmx-probe:test"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := cli.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{Tags: []string{ref}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatalf("build probe image: %v", err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	if _, err := out.ReadFrom(resp.Body); err != nil || strings.Contains(out.String(), `"error"`) {
		t.Fatalf("build probe image: %v %s", err, out.String())
	}
	return ref
}

// runProbe runs the probe on the attachable overlay and returns its exit
// code.
func runProbe(ctx context.Context, t *testing.T, cli *client.Client, image, network, url string) int {
	t.Helper()
	resp, err := cli.ContainerCreate(ctx, &container.Config{Image: image, Cmd: []string{url}, Labels: map[string]string{testenv.SwarmTestLabel: "true"}},
		&container.HostConfig{NetworkMode: container.NetworkMode(network)}, nil, nil, "")
	if err != nil {
		t.Fatalf("create probe: %v", err)
	}
	defer func() {
		_ = cli.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true})
	}()
	resC, errC := cli.ContainerWait(ctx, resp.ID, container.WaitConditionNextExit)
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start probe: %v", err)
	}
	select {
	case r := <-resC:
		return int(r.StatusCode)
	case err := <-errC:
		t.Fatalf("wait probe: %v", err)
	}
	return -1
}

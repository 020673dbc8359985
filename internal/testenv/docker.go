package testenv

import (
	"context"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/deployd/deployd/internal/lab"
)

const (
	// serviceLabel is the label deployd puts on every container it starts.
	serviceLabel   = "deployd.service"
	pingTimeout    = 5 * time.Second
	buildTimeout   = 3 * time.Minute
	cleanupTimeout = time.Minute
)

// The caches below are the package's only state. They exist because the
// contract is "once per test process": building the binary and the images
// for every test would dominate the run time.
var (
	demoAppOnce  sync.Once
	demoAppBuilt lab.DemoApp
	demoAppErr   error

	imagesMu sync.Mutex
	images   = map[string]*imageBuild{}
)

type imageBuild struct {
	once sync.Once
	args map[string]string
	err  error
}

// Docker returns a Docker client (client.FromEnv +
// WithAPIVersionNegotiation) after a Ping with a timeout; it skips (or, in
// CI, fails) the test when the engine does not answer. The client is closed
// at t.Cleanup.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		unavailable(t, "docker client: %v", err)
	}
	t.Cleanup(func() {
		if err := cli.Close(); err != nil {
			t.Errorf("close docker client: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		unavailable(t, "docker engine at %s does not answer: %v", cli.DaemonHost(), err)
	}
	return cli
}

// DemoBinary builds examples/demoapp (static, CGO_ENABLED=0, for the host's
// architecture) once per test process and returns the binary's path. The
// binary lives in a directory under os.TempDir() named after a hash of the
// sources and the Go version, so repeated runs reuse it instead of leaving
// a copy behind each time; concurrent test processes each write their own
// temp file and rename it into place.
func DemoBinary(t testing.TB) string {
	t.Helper()
	return demoApp(t).Binary
}

func demoApp(t testing.TB) lab.DemoApp {
	t.Helper()
	demoAppOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		// The test's working directory is its package directory, inside
		// this module, so `go list` finds the demo app wherever the
		// checkout is.
		demoAppBuilt, demoAppErr = lab.BuildDemoApp(ctx)
	})
	if demoAppErr != nil {
		t.Fatalf("build demo app: %v", demoAppErr)
	}
	return demoAppBuilt
}

// DemoImage builds an image named ref (e.g. "deployd-test-demo:v1-fail")
// from examples/demoapp/Dockerfile with the given build args (e.g.
// {"APP_VERSION":"v1","HEALTH_MODE":"failing"}) through the Engine API, and
// returns ref. It builds once per process per ref; asking for the same ref
// with different args fails the test, since one of the two callers would
// silently get the wrong image. Images are left in place: they are a few
// megabytes and the next run reuses their layers.
func DemoImage(t testing.TB, cli *client.Client, ref string, buildArgs map[string]string) string {
	t.Helper()
	app := demoApp(t)

	imagesMu.Lock()
	b, ok := images[ref]
	if !ok {
		b = &imageBuild{args: maps.Clone(buildArgs)}
		images[ref] = b
	}
	imagesMu.Unlock()
	if ok && !maps.Equal(b.args, buildArgs) {
		t.Fatalf("DemoImage(%q): build args %v differ from an earlier call's %v; use another ref", ref, buildArgs, b.args)
	}

	b.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		b.err = app.BuildImage(ctx, cli, ref, buildArgs)
	})
	if b.err != nil {
		t.Fatalf("build image %s: %v", ref, b.err)
	}
	return ref
}

// RemoveServiceContainers force-removes every container labelled
// deployd.service=<service>, running or not. Meant for t.Cleanup, so it
// uses its own context (the test's is already cancelled by then) and
// reports problems with t.Errorf rather than stopping other cleanups.
func RemoveServiceContainers(t testing.TB, cli *client.Client, service string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", serviceLabel+"="+service)),
	})
	if err != nil {
		t.Errorf("list containers of service %s: %v", service, err)
		return
	}
	for _, c := range list {
		err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		// A container that is already gone, or being removed by the code
		// under test, is what we want anyway.
		if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			t.Errorf("remove container %s (%s) of service %s: %v", shortID(c.ID), strings.Join(c.Names, ","), service, err)
		}
	}
}

func shortID(id string) string { return id[:min(12, len(id))] }

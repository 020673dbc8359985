package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

const (
	demoPackage = "github.com/deployd/deployd/examples/demoapp"
	// serviceLabel is the label deployd puts on every container it starts.
	serviceLabel = "deployd.service"
	// imageLabel marks images built here, so they can be found and pruned
	// by hand (`docker image prune -a --filter label=deployd.test`).
	imageLabel = "deployd.test"

	pingTimeout    = 5 * time.Second
	buildTimeout   = 3 * time.Minute
	cleanupTimeout = time.Minute
)

// The caches below are the package's only state. They exist because the
// contract is "once per test process": building the binary and the images
// for every test would dominate the run time.
var (
	demoBinaryOnce sync.Once
	demoBinaryPath string
	demoSrcDir     string
	demoBinaryErr  error

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
	demoBinaryOnce.Do(func() {
		demoSrcDir, demoBinaryPath, demoBinaryErr = buildDemoBinary()
	})
	if demoBinaryErr != nil {
		t.Fatalf("build demo app: %v", demoBinaryErr)
	}
	return demoBinaryPath
}

func buildDemoBinary() (srcDir, binPath string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()

	// The test's working directory is its package directory, inside this
	// module, so `go list` finds the demo app wherever the checkout is.
	out, err := exec.CommandContext(ctx, "go", "list", "-f", "{{.Dir}}", demoPackage).Output()
	if err != nil {
		return "", "", fmt.Errorf("locate %s: %w%s", demoPackage, err, stderrOf(err))
	}
	srcDir = strings.TrimSpace(string(out))

	key, err := sourceHash(srcDir)
	if err != nil {
		return "", "", err
	}
	dir := filepath.Join(os.TempDir(), "deployd-demoapp-"+key[:16])
	binPath = filepath.Join(dir, "demoapp")
	if fi, err := os.Stat(binPath); err == nil && fi.Mode().IsRegular() {
		return srcDir, binPath, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "demoapp-*.tmp")
	if err != nil {
		return "", "", fmt.Errorf("create temp binary: %w", err)
	}
	tmpPath := tmp.Name()
	if err := tmp.Close(); err != nil {
		return "", "", fmt.Errorf("close %s: %w", tmpPath, err)
	}
	defer os.Remove(tmpPath) // a no-op once renamed

	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmpPath, ".")
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build in %s: %w\n%s", srcDir, err, out)
	}
	if err := os.Rename(tmpPath, binPath); err != nil {
		return "", "", fmt.Errorf("install %s: %w", binPath, err)
	}
	return srcDir, binPath, nil
}

// sourceHash identifies a demo app build: every file of its directory that
// is not a test or a local build output, plus the toolchain.
func sourceHash(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", dir, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", runtime.Version(), runtime.GOARCH)
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("hash demo app sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return "\n" + string(ee.Stderr)
	}
	return ""
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
	bin := DemoBinary(t)

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
		b.err = buildImage(ctx, cli, ref, bin, filepath.Join(demoSrcDir, "Dockerfile"), buildArgs)
	})
	if b.err != nil {
		t.Fatalf("build image %s: %v", ref, b.err)
	}
	return ref
}

func buildImage(ctx context.Context, cli *client.Client, ref, binPath, dockerfilePath string, buildArgs map[string]string) error {
	tarball, err := buildContext(binPath, dockerfilePath)
	if err != nil {
		return err
	}
	args := make(map[string]*string, len(buildArgs))
	for k, v := range buildArgs {
		args[k] = &v
	}
	resp, err := cli.ImageBuild(ctx, bytes.NewReader(tarball), build.ImageBuildOptions{
		Tags:        []string{ref},
		Dockerfile:  "Dockerfile",
		BuildArgs:   args,
		Labels:      map[string]string{imageLabel: "demoapp"},
		Remove:      true,
		ForceRemove: true,
		// The engine here is 20.10 with the classic builder; BuildKit
		// would need a session the plain API call does not provide.
		Version: build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("image build request: %w", err)
	}
	defer resp.Body.Close()
	return readBuildStream(resp.Body)
}

// readBuildStream consumes the engine's JSON progress messages. A failed
// build still answers 200; the failure is an "error" message in the stream.
func readBuildStream(r io.Reader) error {
	var log []string
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read build output: %w", err)
		}
		if s := strings.TrimSpace(msg.Stream); s != "" {
			log = append(log, s)
		}
		if msg.Error != "" || msg.ErrorDetail.Message != "" {
			tail := log[max(0, len(log)-10):]
			return fmt.Errorf("%s%s\nbuild output (tail):\n%s", msg.Error, detail(msg.ErrorDetail.Message, msg.Error), strings.Join(tail, "\n"))
		}
	}
}

func detail(d, e string) string {
	if d == "" || d == e {
		return ""
	}
	return ": " + d
}

// buildContext is a tar holding the Dockerfile and the binary as "demoapp",
// which is all the Dockerfile copies.
func buildContext(binPath, dockerfilePath string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name, path string
		mode       int64
	}{
		{"Dockerfile", dockerfilePath, 0o644},
		{"demoapp", binPath, 0o755},
	} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("build context: %w", err)
		}
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(b)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("build context: %s: %w", f.name, err)
		}
		if _, err := tw.Write(b); err != nil {
			return nil, fmt.Errorf("build context: %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	return buf.Bytes(), nil
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

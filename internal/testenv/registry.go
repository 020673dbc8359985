package testenv

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// registryBinary is Debian's CNCF distribution registry (package
// docker-registry), which scripts/ensure-deps.sh installs.
const registryBinary = "/usr/bin/docker-registry"

const (
	registryStartTimeout = 20 * time.Second
	registryStartTries   = 3
	registryStopTimeout  = 10 * time.Second
	pushTimeout          = 2 * time.Minute
)

// emptyRegistryAuth is base64url("{}"): no credentials. The engine wants
// the header even for a registry without auth.
var emptyRegistryAuth = base64.URLEncoding.EncodeToString([]byte("{}"))

// Registry is a private distribution registry started by the test: a child
// process serving plain HTTP on a free loopback port (the engine treats
// 127.0.0.0/8 registries as insecure, so it pushes and pulls over HTTP),
// its storage in a temporary directory.
type Registry struct {
	addr string
	cmd  *exec.Cmd
	// done is closed when the process has exited (waitErr is then set).
	done    chan struct{}
	waitErr error
	out     *syncWriter
	stop    sync.Once
}

// syncWriter collects the registry's output for the failure log.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// StartRegistry starts a registry for the test on 127.0.0.1:<free port>
// and returns once GET /v2/ answers 200. It is stopped (killed and waited
// for) at t.Cleanup; its log is copied into the test log when the test
// fails. A missing /usr/bin/docker-registry skips the test (fails it with
// CI=true). A port another process takes between FreePort and the bind is
// retried on a new port.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	if _, err := os.Stat(registryBinary); err != nil {
		unavailable(t, "registry %s: %v (Debian package docker-registry)", registryBinary, err)
	}
	dir := t.TempDir()
	var lastErr error
	for try := 1; try <= registryStartTries; try++ {
		r, err := startRegistry(dir, try)
		if err == nil {
			t.Cleanup(func() {
				if err := r.kill(); err != nil {
					t.Errorf("stop registry %s: %v", r.addr, err)
				}
				if t.Failed() {
					t.Logf("registry %s log:\n%s", r.addr, r.out.String())
				}
			})
			return r
		}
		lastErr = err
	}
	t.Fatalf("start registry: %v", lastErr)
	return nil
}

// startRegistry writes a config for a free port and starts the registry
// with it; on any failure the process is gone when it returns.
func startRegistry(dir string, try int) (*Registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	config := filepath.Join(dir, fmt.Sprintf("config-%d.yml", try))
	body := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, strconv.Quote(filepath.Join(dir, "data")), addr)
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		return nil, fmt.Errorf("write registry config: %w", err)
	}
	r := &Registry{addr: addr, done: make(chan struct{}), out: &syncWriter{}}
	r.cmd = exec.Command(registryBinary, "serve", config)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", registryBinary, err)
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		close(r.done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), registryStartTimeout)
	defer cancel()
	if err := r.waitReady(ctx); err != nil {
		_ = r.kill()
		return nil, fmt.Errorf("registry on %s: %w; its log:\n%s", addr, err, r.out.String())
	}
	return r, nil
}

// freePort is FreePort without a testing.TB, for the retry loop.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("release port %d: %w", port, err)
	}
	return port, nil
}

// waitReady polls GET /v2/ until it answers 200, the process exits or ctx
// ends.
func (r *Registry) waitReady(ctx context.Context) error {
	var last string
	for {
		code, _, err := Get(ctx, "http://"+r.addr+"/v2/")
		if err == nil && code == http.StatusOK {
			return nil
		}
		last = fmt.Sprintf("status %d, err %v", code, err)
		select {
		case <-r.done:
			return fmt.Errorf("exited before it answered: %w", r.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("GET /v2/ never answered 200 (last: %s): %w", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// kill stops the process and waits for it; calling it again is a no-op.
func (r *Registry) kill() error {
	var err error
	r.stop.Do(func() {
		select {
		case <-r.done:
			return
		default:
		}
		if kerr := r.cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
			err = fmt.Errorf("kill: %w", kerr)
			return
		}
		select {
		case <-r.done:
		case <-time.After(registryStopTimeout):
			err = fmt.Errorf("not gone %s after kill", registryStopTimeout)
		}
	})
	return err
}

// Addr is the registry's "127.0.0.1:port", the first part of its
// repositories' names.
func (r *Registry) Addr() string { return r.addr }

// Stop stops the registry before the test ends, so that the test can see
// how code behaves with a registry that does not answer.
func (r *Registry) Stop(t testing.TB) {
	t.Helper()
	if err := r.kill(); err != nil {
		t.Fatalf("stop registry %s: %v", r.addr, err)
	}
}

// Push tags the local image localRef as <Addr>/<repoTag> (repoTag is
// "team/demoapp:stable") and pushes it through the Engine API. It returns
// the pushed reference and the manifest's digest ("sha256:...") as the
// registry stores it. The local references the push made (the tag and
// <Addr>/<repo>@<digest>) are removed at t.Cleanup (see RemoveImageRef); a
// test that pulls the same refs again leaves nothing behind either.
func (r *Registry) Push(t testing.TB, cli *client.Client, localRef, repoTag string) (ref, digest string) {
	t.Helper()
	ref = r.addr + "/" + repoTag
	ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
	defer cancel()
	if err := cli.ImageTag(ctx, localRef, ref); err != nil {
		t.Fatalf("tag %s as %s: %v", localRef, ref, err)
	}
	t.Cleanup(func() { RemoveImageRef(t, cli, ref) })
	rc, err := cli.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: emptyRegistryAuth})
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	defer func() { _ = rc.Close() }()
	digest, err = readPushStream(rc)
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	// The push also gave the local image the digest reference
	// <Addr>/<repo>@<digest>, which outlives the tag.
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	byDigest := named.Name() + "@" + digest
	t.Cleanup(func() { RemoveImageRef(t, cli, byDigest) })
	return ref, digest
}

// pushMessage is the part of the engine's push stream Push reads.
type pushMessage struct {
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	Aux *struct {
		Tag    string `json:"Tag"`
		Digest string `json:"Digest"`
	} `json:"aux"`
}

// readPushStream reads the push's JSON stream to the end: the engine
// reports a failed push inside the stream, after a 200. The digest comes
// from the aux message the engine sends once the manifest is stored.
func readPushStream(r io.Reader) (string, error) {
	dec := json.NewDecoder(r)
	var digest string
	for {
		var msg pushMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", fmt.Errorf("read push stream: %w", err)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return "", errors.New(msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return "", errors.New(msg.Error)
		}
		if msg.Aux != nil && msg.Aux.Digest != "" {
			digest = msg.Aux.Digest
		}
	}
	if digest == "" {
		return "", errors.New("the push stream ended without the manifest's digest")
	}
	return digest, nil
}

// RemoveImageRef removes the local reference ref (a tag, or a digest
// reference); the image itself goes only when that was its last reference
// and no container uses it. A reference that is already gone is no error.
// Meant for t.Cleanup: it uses its own context and reports with t.Errorf.
func RemoveImageRef(t testing.TB, cli *client.Client, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{})
	if err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("remove image %s: %v", ref, err)
	}
}

package lab

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
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// RegistryBinary is Debian's CNCF distribution registry (package
// docker-registry), which scripts/ensure-deps.sh installs.
const RegistryBinary = "/usr/bin/docker-registry"

// ErrRegistryNotFound means RegistryBinary is not installed; callers
// decide whether that is a skip or a failure.
var ErrRegistryNotFound = errors.New("registry " + RegistryBinary + " not installed (Debian package docker-registry)")

const (
	registryStartTimeout = 20 * time.Second
	registryStartTries   = 3
	registryStopTimeout  = 10 * time.Second
	registryProbeTimeout = 5 * time.Second
)

// emptyRegistryAuth is base64url("{}"): no credentials. The engine wants
// the header even for a registry without auth.
var emptyRegistryAuth = base64.URLEncoding.EncodeToString([]byte("{}"))

// Registry is a private distribution registry: a child process serving
// plain HTTP on a free loopback port (the engine treats 127.0.0.0/8
// registries as insecure, so it pushes and pulls over HTTP), its storage
// in a directory of the caller's. Its owner must call Stop.
type Registry struct {
	addr string
	cmd  *exec.Cmd
	// done is closed when the process has exited (waitErr is then set).
	done    chan struct{}
	waitErr error
	out     *syncWriter
	stop    sync.Once
	stopErr error
}

// syncWriter collects the registry's output for a failure's log.
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

// StartRegistry starts a registry on 127.0.0.1:<free port>, storing under
// dir (an existing directory the caller owns), and returns once GET /v2/
// answers 200. A port another process takes between FreePort and the bind
// is retried on a new port. It returns ErrRegistryNotFound without the
// binary.
func StartRegistry(ctx context.Context, dir string) (*Registry, error) {
	if _, err := os.Stat(RegistryBinary); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRegistryNotFound, err)
	}
	var lastErr error
	for try := 1; try <= registryStartTries; try++ {
		r, err := startRegistry(ctx, dir, try)
		if err == nil {
			return r, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("start registry: %w", lastErr)
}

// startRegistry writes a config for a free port and starts the registry
// with it; on any failure the process is gone when it returns.
func startRegistry(ctx context.Context, dir string, try int) (*Registry, error) {
	port, err := FreePort()
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
	// Not CommandContext: the registry outlives ctx, which only bounds
	// the start; Stop ends it.
	r.cmd = exec.Command(RegistryBinary, "serve", config)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", RegistryBinary, err)
	}
	// The reaper ends when the process does; Stop makes sure it does.
	go func() {
		r.waitErr = r.cmd.Wait()
		close(r.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, registryStartTimeout)
	defer cancel()
	if err := r.waitReady(ctx); err != nil {
		_ = r.Stop()
		return nil, fmt.Errorf("registry on %s: %w; its log:\n%s", addr, err, r.out.String())
	}
	return r, nil
}

// waitReady polls GET /v2/ until it answers 200, the process exits or ctx
// ends.
func (r *Registry) waitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: registryProbeTimeout, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.addr+"/v2/", nil)
		if err != nil {
			return fmt.Errorf("probe request: %w", err)
		}
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("status %d", resp.StatusCode)
		} else {
			last = err.Error()
		}
		select {
		case <-r.done:
			return fmt.Errorf("exited before it answered: %w", r.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("GET /v2/ never answered 200 (last: %s): %w", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop kills the registry and waits for it; calling it again returns the
// first call's result.
func (r *Registry) Stop() error {
	r.stop.Do(func() {
		select {
		case <-r.done:
			return
		default:
		}
		if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			r.stopErr = fmt.Errorf("kill registry: %w", err)
			return
		}
		select {
		case <-r.done:
		case <-time.After(registryStopTimeout):
			r.stopErr = fmt.Errorf("registry not gone %s after kill", registryStopTimeout)
		}
	})
	return r.stopErr
}

// Addr is the registry's "127.0.0.1:port", the first part of its
// repositories' names.
func (r *Registry) Addr() string { return r.addr }

// Log is what the registry wrote so far.
func (r *Registry) Log() string { return r.out.String() }

// Push tags the local image localRef as <Addr>/<repoTag> (repoTag is
// "team/demoapp:stable") and pushes it through the Engine API. It returns
// the pushed reference, the manifest's digest ("sha256:...") as the
// registry stores it and the local references the push made (the tag and
// <Addr>/<repo>@<digest>), which the caller removes with RemoveImageRef
// when done. On an error, refs holds what must be removed so far.
func (r *Registry) Push(ctx context.Context, cli *client.Client, localRef, repoTag string) (ref, digest string, refs []string, err error) {
	ref = r.addr + "/" + repoTag
	if err := cli.ImageTag(ctx, localRef, ref); err != nil {
		return "", "", nil, fmt.Errorf("tag %s as %s: %w", localRef, ref, err)
	}
	refs = []string{ref}
	rc, err := cli.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: emptyRegistryAuth})
	if err != nil {
		return "", "", refs, fmt.Errorf("push %s: %w", ref, err)
	}
	defer func() { _ = rc.Close() }()
	digest, err = readPushStream(rc)
	if err != nil {
		return "", "", refs, fmt.Errorf("push %s: %w", ref, err)
	}
	// The push also gave the local image the digest reference
	// <Addr>/<repo>@<digest>, which outlives the tag.
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", "", refs, fmt.Errorf("push %s: %w", ref, err)
	}
	return ref, digest, append(refs, named.Name()+"@"+digest), nil
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
func RemoveImageRef(ctx context.Context, cli *client.Client, ref string) error {
	_, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

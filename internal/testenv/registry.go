package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/deployd/deployd/internal/lab"
)

const pushTimeout = 2 * time.Minute

// Registry is a private distribution registry started by the test (see
// lab.Registry): plain HTTP on a free loopback port, its storage in a
// temporary directory.
type Registry struct{ r *lab.Registry }

// StartRegistry starts a registry for the test on 127.0.0.1:<free port>
// and returns once GET /v2/ answers 200. It is stopped (killed and waited
// for) at t.Cleanup; its log is copied into the test log when the test
// fails. A missing /usr/bin/docker-registry skips the test (fails it with
// CI=true).
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := lab.StartRegistry(ctx, dir)
	if errors.Is(err, lab.ErrRegistryNotFound) {
		unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("stop registry %s: %v", r.Addr(), err)
		}
		if t.Failed() {
			t.Logf("registry %s log:\n%s", r.Addr(), r.Log())
		}
	})
	return &Registry{r: r}
}

// Addr is the registry's "127.0.0.1:port", the first part of its
// repositories' names.
func (r *Registry) Addr() string { return r.r.Addr() }

// Stop stops the registry before the test ends, so that the test can see
// how code behaves with a registry that does not answer.
func (r *Registry) Stop(t testing.TB) {
	t.Helper()
	if err := r.r.Stop(); err != nil {
		t.Fatalf("stop registry %s: %v", r.Addr(), err)
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
	ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
	defer cancel()
	ref, digest, refs, err := r.r.Push(ctx, cli, localRef, repoTag)
	for _, made := range refs {
		t.Cleanup(func() { RemoveImageRef(t, cli, made) })
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return ref, digest
}

// RemoveImageRef removes the local reference ref (a tag, or a digest
// reference); the image itself goes only when that was its last reference
// and no container uses it. A reference that is already gone is no error.
// Meant for t.Cleanup: it uses its own context and reports with t.Errorf.
func RemoveImageRef(t testing.TB, cli *client.Client, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := lab.RemoveImageRef(ctx, cli, ref); err != nil {
		t.Errorf("%v", err)
	}
}

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/testenv"
	"github.com/deployd/deployd/pkg/controller"
)

// These tests deploy from a private registry (testenv.StartRegistry) rather
// than from images built into the local store: the pull step really pulls.

// registryEnv is an env whose service deploys from <registry>/<service>/demoapp
// with the given pull policy, and the registry it pulls from.
type registryEnv struct {
	*env
	reg  *testenv.Registry
	repo string // "<service>/demoapp", the repository inside the registry
	cfg  svcConfig
}

func newRegistryEnv(t *testing.T, pull string) *registryEnv {
	t.Helper()
	e := newEnv(t, "v1", "v2")
	reg := testenv.StartRegistry(t)
	r := &registryEnv{env: e, reg: reg, repo: e.svc + "/demoapp", cfg: defaultSvc()}
	r.cfg.Image, r.cfg.Pull = reg.Addr()+"/"+r.repo, pull
	return r
}

// push pushes the local demo image of tag ("v1") to the registry as
// registryTag and returns the full reference there.
func (r *registryEnv) push(tag, registryTag string) string {
	r.t.Helper()
	ref, _ := r.reg.Push(r.t, r.cli, repository+":"+tag, r.repo+":"+registryTag)
	return ref
}

// activeStable pushes v1 as "stable", starts the daemon and deploys it.
func (r *registryEnv) activeStable() (*daemon, api.Deployment, []byte) {
	r.t.Helper()
	r.push("v1", "stable")
	d := r.startDaemon("main", r.writeConfig("deployd.yml", r.cfg))
	v1 := d.mustSucceed("stable")
	r.assertServes("v1", "blue")
	return d, v1, r.upstream()
}

// localPresent reports whether ref is in the engine's local store.
func (r *registryEnv) localPresent(ref string) bool {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := r.cli.ImageInspect(ctx, ref)
	if err != nil && !cerrdefs.IsNotFound(err) {
		r.t.Fatalf("inspect image %s: %v", ref, err)
	}
	return err == nil
}

func TestRegistry_PullAlwaysDeploysTheTagsNewImage(t *testing.T) {
	t.Parallel()
	r := newRegistryEnv(t, string(controller.PullAlways))
	d, _, _ := r.activeStable()

	ref := r.push("v2", "stable")
	// Point the local tag back at v1: only a pull can bring v2 now.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.cli.ImageTag(ctx, repository+":v1", ref); err != nil {
		t.Fatalf("tag %s:v1 as %s: %v", repository, ref, err)
	}

	dep := d.mustSucceed("stable")
	if s := findStep(dep, controller.StepPull); s == nil || s.Status != controller.StepSucceeded {
		t.Fatalf("steps = %s, want pull succeeded", stepSummary(dep))
	}
	r.assertServes("v2", "green")
}

func TestRegistry_PullMissingFetchesAnImageAbsentLocally(t *testing.T) {
	t.Parallel()
	r := newRegistryEnv(t, string(controller.PullMissing))
	ref := r.push("v1", "stable")
	testenv.RemoveImageRef(t, r.cli, ref)
	if r.localPresent(ref) {
		t.Fatalf("%s still present locally after its removal", ref)
	}

	d := r.startDaemon("main", r.writeConfig("deployd.yml", r.cfg))
	d.mustSucceed("stable")
	r.assertServes("v1", "blue")
	if !r.localPresent(ref) {
		t.Fatalf("%s not present locally after the deploy, want it pulled", ref)
	}
}

func TestRegistry_TagAbsentFromRegistryFailsAtPullLeavingActiveColor(t *testing.T) {
	t.Parallel()
	r := newRegistryEnv(t, string(controller.PullAlways))
	d, v1, upstream := r.activeStable()

	dep := d.waitDeployment(d.deploy("nope").ID)
	if dep.Status != controller.StatusFailed {
		t.Fatalf("status = %s, want failed", dep.Status)
	}
	if len(dep.Steps) != 1 || dep.Steps[0].Name != controller.StepPull || dep.Steps[0].Status != controller.StepFailed {
		t.Fatalf("steps = %s, want only pull, failed", stepSummary(dep))
	}
	if want := r.reg.Addr() + "/" + r.repo + ":nope"; !strings.Contains(dep.Error, want) {
		t.Fatalf("error = %q, want it to name %s", dep.Error, want)
	}
	t.Logf("absent tag error: %s", dep.Error)
	assertUntouched(r.env, v1, upstream, dep.ID)
}

func TestRegistry_StoppedRegistryFailsAtPullLeavingActiveColor(t *testing.T) {
	t.Parallel()
	r := newRegistryEnv(t, string(controller.PullAlways))
	d, v1, upstream := r.activeStable()
	r.reg.Stop(t)

	start := time.Now()
	dep := d.waitDeployment(d.deploy("stable").ID)
	took := time.Since(start)
	if dep.Status != controller.StatusFailed {
		t.Fatalf("status = %s, want failed", dep.Status)
	}
	if len(dep.Steps) != 1 || dep.Steps[0].Name != controller.StepPull || dep.Steps[0].Status != controller.StepFailed {
		t.Fatalf("steps = %s, want only pull, failed", stepSummary(dep))
	}
	if want := r.reg.Addr() + "/" + r.repo + ":stable"; !strings.Contains(dep.Error, want) {
		t.Fatalf("error = %q, want it to name %s", dep.Error, want)
	}
	t.Logf("stopped registry: failed after %s: %s", took.Round(time.Millisecond), dep.Error)
	// The daemon's pull retries (4 tries, waits of 0.5s, 1s and 2s) are
	// not configurable: a failure sooner than their 3.5s was not retried.
	if minimum := 3500 * time.Millisecond; took < minimum {
		t.Fatalf("the failed pull took %s, want at least the retries' %s", took.Round(time.Millisecond), minimum)
	}
	elapsedUnder(t, "the failed pull", took, 30*time.Second)
	assertUntouched(r.env, v1, upstream, dep.ID)
}

package swarm

import (
	"archive/tar"
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/pkg/controller"
)

// An image's own HEALTHCHECK counts on Swarm: Swarm reports a task running
// only once its container is healthy, so deployd's start step waits for
// it, and a task whose container turns unhealthy fails, which fails the
// deploy at once, quoting Swarm, with the active color untouched.
func TestSwarm_ImageHealthcheckGatesTheStartAndAnUnhealthyOneFailsTheDeploy(t *testing.T) {
	s := newStack(t, "")
	s.pushWithHealthcheck("v2", "v2-checked")
	s.pushWithHealthcheck("v3-broken", "v3-checked")

	if v1 := s.deploy("v1"); v1.Status != controller.StatusSucceeded {
		t.Fatalf("deploy v1: %s (%s)", v1.Status, v1.Error)
	}
	checked := s.deploy("v2-checked")
	if checked.Status != controller.StatusSucceeded {
		t.Fatalf("deploy of v2 with a passing HEALTHCHECK: %s (%s)", checked.Status, checked.Error)
	}
	s.assertServes("v2", "green")
	for _, h := range s.containerHealth(checked.ID) {
		if h != "healthy" {
			t.Errorf("a task of the HEALTHCHECKed v2 has Docker health %q, want healthy", h)
		}
	}

	broken := s.deploy("v3-checked")
	if broken.Status != controller.StatusFailed {
		t.Fatalf("deploy of v3 whose HEALTHCHECK fails: %s, want failed", broken.Status)
	}
	var failedAt string
	for _, st := range broken.Steps {
		if st.Status == controller.StepFailed {
			failedAt = st.Name
		}
	}
	if failedAt != controller.StepStart || !strings.Contains(broken.Error, "unhealthy") {
		t.Fatalf("deploy of v3 whose HEALTHCHECK fails ended at step %q with %q, want the start step quoting Swarm's unhealthy task", failedAt, broken.Error)
	}
	t.Logf("HEALTHCHECK failing: deploy failed at %s in %s: %s", failedAt, broken.FinishedAt.Sub(broken.CreatedAt).Round(time.Millisecond), broken.Error)
	s.assertServes("v2", "green")
}

// pushWithHealthcheck builds tag from the demo image of from with a
// HEALTHCHECK that runs the app's healthcheck command every 250 ms, and
// pushes it to the stack's registry.
func (s *stack) pushWithHealthcheck(from, tag string) {
	t := s.t
	t.Helper()
	ref := "deployd-swarm-demo:" + tag
	dockerfile := "FROM deployd-swarm-demo:" + from + "\n" +
		`HEALTHCHECK --interval=250ms --timeout=2s --retries=2 CMD ["/demoapp", "healthcheck"]` + "\n"
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(dockerfile)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := s.cli.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{Tags: []string{ref}, Remove: true, PullParent: false})
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	defer res.Body.Close()
	if err := lab.ReadBuildStream(res.Body); err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	_, s.digests[tag] = s.reg.Push(t, s.cli, ref, s.svc+"/demoapp:"+tag)
}

// containerHealth is Docker's health status of each running task of the
// deployment's set.
func (s *stack) containerHealth(deployment string) []string {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	tasks, err := s.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "deployd.deployment="+deployment), filters.Arg("desired-state", "running"))})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		if task.Status.ContainerStatus == nil || task.Status.ContainerStatus.ContainerID == "" {
			continue
		}
		c, err := s.cli.ContainerInspect(ctx, task.Status.ContainerStatus.ContainerID)
		if err != nil {
			t.Fatalf("inspect task %s's container: %v", task.ID, err)
		}
		h := "none"
		if c.State != nil && c.State.Health != nil {
			h = c.State.Health.Status
		}
		out = append(out, h)
	}
	if len(out) == 0 {
		t.Fatalf("no running task of deployment %s", deployment)
	}
	return out
}

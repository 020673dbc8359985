package swarm

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

// kill -9 of deployd while a deploy starts its set: Docker starts deployd
// again (restart: unless-stopped), which marks the deploy interrupted,
// removes the set it had created, and leaves v1 serving; the next deploy
// goes through.
func TestSwarm_KillNineOfDeploydMidDeployLeavesTheActiveColor(t *testing.T) {
	s := newStack(t, "")
	if v1 := s.deploy("v1"); v1.Status != controller.StatusSucceeded {
		t.Fatalf("deploy v1: %s (%s)", v1.Status, v1.Error)
	}

	status, b := s.request(http.MethodPost, "/api/v1/services/"+s.svc+"/deployments", map[string]string{"image": "v2"})
	if status != http.StatusAccepted {
		t.Fatalf("deploy v2 = %d %s", status, b)
	}
	var d api.Deployment
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	s.waitStep(d.ID, "health")
	// SIGKILL to the process, as a crash or the OOM killer would: Docker
	// takes "docker kill" for a manual stop and does not restart after it.
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	info, err := s.cli.ContainerInspect(ctx, s.deployd)
	if err != nil || info.State == nil || info.State.Pid == 0 {
		t.Fatalf("deployd's pid: %v", err)
	}
	if err := syscall.Kill(info.State.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 deployd (pid %d): %v", info.State.Pid, err)
	}
	killed := time.Now()
	s.waitRestarted(s.deployd, killed)
	// Published on a fresh ephemeral port by the restart.
	s.apiURL = "http://" + s.published(s.deployd, "7400/tcp")
	s.waitAPI()
	got := s.wait(d.ID)
	t.Logf("deployd back %s after the kill; the deploy ended %s: %s", time.Since(killed).Round(time.Millisecond), got.Status, got.Error)
	if got.Status != controller.StatusInterrupted {
		t.Fatalf("deployment killed mid-deploy = %s (%s), want interrupted", got.Status, got.Error)
	}
	s.assertServes("v1", "blue")
	s.eventuallyNoSetOf(d.ID)

	if v2 := s.deploy("v2"); v2.Status != controller.StatusSucceeded {
		t.Fatalf("deploy v2 after the restart: %s (%s)", v2.Status, v2.Error)
	}
	s.assertServes("v2", "green")
}

// waitStep waits until the deployment runs step (or has passed it).
func (s *stack) waitStep(id, step string) {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(deploymentTimeout)
	for {
		status, b := s.request(http.MethodGet, "/api/v1/deployments/"+id, nil)
		var d api.Deployment
		if status == http.StatusOK && json.Unmarshal(b, &d) == nil {
			for _, st := range d.Steps {
				if st.Name == step {
					return
				}
			}
			if d.FinishedAt != nil {
				t.Fatalf("deployment %s ended %s before step %s", id, d.Status, step)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment %s never reached step %s", id, step)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventuallyNoSetOf waits until no swarm service of the deployment is left.
func (s *stack) eventuallyNoSetOf(deployment string) {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		list, err := s.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(
			filters.Arg("label", "deployd.service="+s.svc), filters.Arg("label", "deployd.deployment="+deployment))})
		cancel()
		if err == nil && len(list) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var names []string
			for _, l := range list {
				names = append(names, l.Spec.Name)
			}
			t.Fatalf("sets of the interrupted deployment %s still there: %s (%v)", deployment, strings.Join(names, ", "), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitRestarted waits until Docker started the container again after at.
func (s *stack) waitRestarted(name string, at time.Time) {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		info, err := s.cli.ContainerInspect(ctx, name)
		cancel()
		if err == nil && info.State != nil && info.State.Running {
			if started, perr := time.Parse(time.RFC3339Nano, info.State.StartedAt); perr == nil && started.After(at) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not running again a minute after the kill (%v)", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

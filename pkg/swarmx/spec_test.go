package swarmx

import (
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

func TestSetName_CarriesColorAndDeploymentTail(t *testing.T) {
	if got, want := setName("web", controller.Blue, "d-20260101-abc123"), "web-blue-abc123"; got != want {
		t.Fatalf("setName = %q, want %q", got, want)
	}
	if got, want := setName("web", controller.Green, ""), "web-green"; got != want {
		t.Fatalf("setName = %q, want %q", got, want)
	}
}

func TestRestartPolicy_MapsOntoSwarmConditions(t *testing.T) {
	for in, want := range map[string]swarm.RestartPolicyCondition{
		"": swarm.RestartPolicyConditionNone, "no": swarm.RestartPolicyConditionNone,
		"always": swarm.RestartPolicyConditionAny, "unless-stopped": swarm.RestartPolicyConditionAny,
		"on-failure": swarm.RestartPolicyConditionOnFailure, "on-failure:3": swarm.RestartPolicyConditionOnFailure,
	} {
		p, err := restartPolicy(in)
		if err != nil {
			t.Fatalf("restartPolicy(%q): %v", in, err)
		}
		if p.Condition != want {
			t.Errorf("restartPolicy(%q) = %s, want %s", in, p.Condition, want)
		}
	}
	p, _ := restartPolicy("on-failure:3")
	if p.MaxAttempts == nil || *p.MaxAttempts != 3 {
		t.Errorf("on-failure:3 MaxAttempts = %v, want 3", p.MaxAttempts)
	}
	if _, err := restartPolicy("sometimes"); err == nil {
		t.Fatal("restartPolicy(sometimes) = nil error, want one")
	}
}

func TestSetSpec_LabelsPlacementAndResources(t *testing.T) {
	ss, err := setSpec(controller.ContainerSpec{
		Name: "web-blue-abc123-1", Image: "demo:v1", Service: "web", Color: controller.Blue, Deployment: "d-abc123",
		Port: 8000, Network: "net", Replicas: 3,
		Limits:    controller.ContainerLimits{Memory: 64 << 20, NanoCPUs: 5e8, PidsLimit: 100},
		Placement: controller.Placement{Constraints: []string{"node.role==worker"}, Spread: []string{"node.labels.zone"}, Reservations: controller.Resources{NanoCPUs: 1e8}},
	})
	if err != nil {
		t.Fatalf("setSpec: %v", err)
	}
	if got := *ss.Mode.Replicated.Replicas; got != 3 {
		t.Errorf("replicas = %d, want 3", got)
	}
	for _, l := range []map[string]string{ss.Labels, ss.TaskTemplate.ContainerSpec.Labels} {
		if l[LabelReplicas] != "3" || l[LabelName] != "web-blue-abc123" || l[workload.LabelColor] != "blue" || l[workload.LabelPort] != "8000" {
			t.Errorf("labels = %v", l)
		}
	}
	if got := ss.TaskTemplate.Placement.Preferences[0].Spread.SpreadDescriptor; got != "node.labels.zone" {
		t.Errorf("spread = %q", got)
	}
	if r := ss.TaskTemplate.Resources; r.Limits.Pids != 100 || r.Reservations.NanoCPUs != 1e8 {
		t.Errorf("resources = %+v %+v", r.Limits, r.Reservations)
	}
	if ss.EndpointSpec.Mode != swarm.ResolutionModeDNSRR {
		t.Errorf("endpoint mode = %s, want dnsrr", ss.EndpointSpec.Mode)
	}
}

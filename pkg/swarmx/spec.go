package swarmx

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/deployd/deployd/internal/engine"
	"github.com/deployd/deployd/pkg/controller"
)

// stopGrace is a set's default stop grace period; StopContainer sets the
// controller's timeout when it scales a set down.
const stopGrace = 10 * time.Second

// setSpec is the Swarm service of spec's set, at spec.Replicas replicas.
func setSpec(spec controller.ContainerSpec) (swarm.ServiceSpec, error) {
	restart, err := restartPolicy(spec.RestartPolicy)
	if err != nil {
		return swarm.ServiceSpec{}, err
	}
	if spec.Port <= 0 || spec.Port > 65535 {
		return swarm.ServiceSpec{}, fmt.Errorf("invalid port %d", spec.Port)
	}
	if spec.Replicas < 1 {
		return swarm.ServiceSpec{}, fmt.Errorf("invalid replica count %d", spec.Replicas)
	}
	labels := setLabels(spec)
	cs := containerSpec(spec.Image, nil, spec.Limits, labels,
		append(append([]string(nil), spec.Env...), controller.ReplicaEnv(spec.Service, spec.Color, spec.Deployment)...))
	replicas := uint64(spec.Replicas)
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: setName(spec.Service, spec.Color, spec.Deployment), Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			Resources:     resources(spec.Limits, spec.Placement.Reservations),
			RestartPolicy: restart,
			Placement:     placement(spec.Placement),
			Networks:      networks(spec.Network),
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		// deployd addresses each task on the overlay itself (nginx or
		// the switch balance), so no virtual IP is needed.
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}, nil
}

func containerSpec(image string, cmd []string, l controller.ContainerLimits, labels map[string]string, env []string) *swarm.ContainerSpec {
	grace := stopGrace
	cs := &swarm.ContainerSpec{
		Image:           image,
		Args:            cmd,
		Labels:          labels,
		Env:             env,
		User:            l.User,
		ReadOnly:        l.ReadOnly,
		CapabilityAdd:   append([]string(nil), l.CapAdd...),
		CapabilityDrop:  append([]string(nil), l.CapDrop...),
		StopGracePeriod: &grace,
	}
	if l.NoNewPrivileges {
		// Engines before API 1.46 ignore the field.
		cs.Privileges = &swarm.Privileges{NoNewPrivileges: true}
	}
	if l.ReadOnly {
		// dockerx gives a read-only container a private /tmp; so does a
		// task.
		cs.Mounts = append(cs.Mounts, mount.Mount{
			Type: mount.TypeTmpfs, Target: "/tmp",
			TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 64 << 20, Options: [][]string{{"noexec"}, {"nosuid"}, {"nodev"}}},
		})
	}
	return cs
}

func resources(l controller.ContainerLimits, res controller.Resources) *swarm.ResourceRequirements {
	return &swarm.ResourceRequirements{
		Limits:       &swarm.Limit{NanoCPUs: l.NanoCPUs, MemoryBytes: l.Memory, Pids: l.PidsLimit},
		Reservations: &swarm.Resources{NanoCPUs: res.NanoCPUs, MemoryBytes: res.Memory},
	}
}

func placement(p controller.Placement) *swarm.Placement {
	sp := &swarm.Placement{Constraints: append([]string(nil), p.Constraints...)}
	for _, label := range p.Spread {
		sp.Preferences = append(sp.Preferences, swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: label}})
	}
	return sp
}

func networks(name string) []swarm.NetworkAttachmentConfig {
	if name == "" {
		return nil
	}
	return []swarm.NetworkAttachmentConfig{{Target: name}}
}

// restartPolicy maps a controller restart policy onto Swarm's: "" and no
// are none, on-failure[:N] is on-failure with N attempts, always and
// unless-stopped are any (a task Swarm stops is not restarted either way).
func restartPolicy(s string) (*swarm.RestartPolicy, error) {
	if s == "" {
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone}, nil
	}
	p, err := controller.ParseRestartPolicy(s)
	if err != nil {
		return nil, err
	}
	switch p.Name {
	case "no":
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone}, nil
	case "on-failure":
		rp := &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure}
		if p.MaxRetries > 0 {
			n := uint64(p.MaxRetries)
			rp.MaxAttempts = &n
		}
		return rp, nil
	default:
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}, nil
	}
}

// checkNetwork makes sure name is a swarm-scoped (overlay) network.
func (r *Runtime) checkNetwork(ctx context.Context, name string) error {
	if name == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	n, err := r.api.NetworkInspect(ctx, name, network.InspectOptions{})
	if err != nil {
		return engine.WrapErr("network "+name, err)
	}
	if n.Scope != "swarm" {
		return fmt.Errorf("network %s is %s-scoped (driver %s): swarm tasks need an overlay network", name, n.Scope, n.Driver)
	}
	return nil
}

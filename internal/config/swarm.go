package config

import (
	"fmt"
	"math"
	"regexp"

	"github.com/deployd/deployd/pkg/controller"
)

// Placement is where Swarm may run a service's replicas (runtime: swarm).
type Placement struct {
	// Constraints are Swarm's placement constraints, such as
	// node.role==worker or node.labels.zone!=c; all must hold.
	Constraints []string `yaml:"constraints,omitempty"`
	// Spread lists node labels to spread the replicas over, such as
	// node.labels.zone, in order of preference.
	Spread []string `yaml:"spread,omitempty"`
}

// Reservations is what a node must have free for each replica.
type Reservations struct {
	Memory ByteSize `yaml:"memory,omitempty"`
	CPUs   float64  `yaml:"cpus,omitempty"`
}

var (
	// constraintRE is Swarm's constraint grammar: an attribute, == or !=,
	// and a value.
	constraintRE = regexp.MustCompile(`^\s*(node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[^=!\s]+)|engine\.labels\.[^=!\s]+)\s*(==|!=)\s*[^=!\s]+\s*$`)
	spreadRE     = regexp.MustCompile(`^(node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[^=!\s]+)|engine\.labels\.[^=!\s]+)$`)
)

// validateRuntime checks runtime and the keys that apply to one runtime
// only: a placement on a single host would be silently ignored, so it is
// refused instead.
func (s Service) validateRuntime(v *validator, p string) {
	v.oneOf(p+".runtime", s.Runtime, string(controller.RuntimeDocker), string(controller.RuntimeSwarm))
	if controller.RuntimeKind(s.Runtime) != controller.RuntimeSwarm {
		if len(s.Placement.Constraints)+len(s.Placement.Spread) > 0 {
			v.addf(p+".placement", "applies to runtime: swarm only (runtime is %q)", s.Runtime)
		}
		if s.Reservations != (Reservations{}) {
			v.addf(p+".reservations", "applies to runtime: swarm only (runtime is %q)", s.Runtime)
		}
		return
	}
	if s.Network == "" {
		v.addf(p+".network", "is required with runtime: swarm: an overlay network that deployd and the switch are attached to")
	}
	if s.Backup != nil {
		v.addf(p+".backup", "is not supported with runtime: swarm yet; take the backup in pre_deploy or outside deployd")
	}
	for i, c := range s.Placement.Constraints {
		if !constraintRE.MatchString(c) {
			v.addf(fmt.Sprintf("%s.placement.constraints[%d]", p, i),
				"must be <attribute>==<value> or <attribute>!=<value> with a node attribute such as node.role or node.labels.zone, got %q", c)
		}
	}
	for i, l := range s.Placement.Spread {
		if !spreadRE.MatchString(l) {
			v.addf(fmt.Sprintf("%s.placement.spread[%d]", p, i), "must be a node attribute such as node.labels.zone, got %q", l)
		}
	}
	if r := s.Reservations.Memory; r != 0 && r < minMemory {
		v.addf(p+".reservations.memory", "must be at least 6m (or 0 for none), got %d bytes", r)
	}
	if r := s.Reservations.CPUs; r != 0 && (r < minCPUs || math.IsNaN(r) || math.IsInf(r, 0)) {
		v.addf(p+".reservations.cpus", "must be at least 0.01 (or 0 for none), got %v", r)
	}
}

// placement is the service's placement for the controller.
func (s Service) placement() controller.Placement {
	return controller.Placement{
		Constraints: append([]string(nil), s.Placement.Constraints...),
		Spread:      append([]string(nil), s.Placement.Spread...),
		Reservations: controller.Resources{
			Memory:   int64(s.Reservations.Memory),
			NanoCPUs: int64(math.Round(s.Reservations.CPUs * 1e9)),
		},
	}
}

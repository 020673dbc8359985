package dockerx

import (
	"strconv"

	"github.com/docker/docker/api/types/filters"

	"github.com/deployd/deployd/pkg/controller"
)

// Labels deployd puts on every container it creates. They are the only
// record of which service, color and deployment a container belongs to, so
// a restarted deployd finds its containers by them.
const (
	LabelManaged    = "deployd.managed"
	LabelService    = "deployd.service"
	LabelColor      = "deployd.color"
	LabelDeployment = "deployd.deployment"
	LabelOneOff     = "deployd.oneoff"
	// LabelPort keeps the replica's port so a listed container's address
	// can be rebuilt without the service's spec.
	LabelPort = "deployd.port"
)

func replicaLabels(spec controller.ContainerSpec) map[string]string {
	return map[string]string{
		LabelManaged:    "true",
		LabelService:    spec.Service,
		LabelColor:      string(spec.Color),
		LabelDeployment: spec.Deployment,
		LabelPort:       strconv.Itoa(spec.Port),
	}
}

func oneOffLabels(spec controller.OneOffSpec) map[string]string {
	return map[string]string{
		LabelManaged:    "true",
		LabelService:    spec.Service,
		LabelDeployment: spec.Deployment,
		LabelOneOff:     "true",
	}
}

// serviceFilter selects a service's managed containers. One-offs match it
// too; the engine cannot filter on a label's absence, so callers drop them.
func serviceFilter(service string) filters.Args {
	return filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelService+"="+service),
	)
}

func isOneOff(labels map[string]string) bool { return labels[LabelOneOff] == "true" }

package swarmx

import (
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/filters"

	"github.com/deployd/deployd/pkg/controller"
)

// Labels deployd puts on every set service and on its tasks' containers.
// The first five are dockerx's, so tools that read one read the other.
const (
	LabelManaged    = "deployd.managed"
	LabelService    = "deployd.service"
	LabelColor      = "deployd.color"
	LabelDeployment = "deployd.deployment"
	LabelOneOff     = "deployd.oneoff"
	LabelPort       = "deployd.port"
	// LabelReplicas is the set's full size: StartExisting scales a set
	// stopped to zero back to it.
	LabelReplicas = "deployd.replicas"
	// LabelName is the replicas' name without the "-<n>": a task of slot
	// n is the Container named <LabelName>-<n>, as the controller named it.
	LabelName = "deployd.name"
	// LabelNetwork is the network the set's addresses are on.
	LabelNetwork = "deployd.network"
)

// setName is the Swarm service of a set: <service>-<color>-<last 6
// characters of deployment>, or <service>-<color> without a deployment.
func setName(service string, color controller.Color, deployment string) string {
	name := service + "-" + string(color)
	if deployment == "" {
		return name
	}
	d := strings.ToLower(deployment)
	d = d[max(0, len(d)-6):]
	return name + "-" + strings.Trim(d, "-_.")
}

// namePrefix is spec.Name without its "-<n>".
func namePrefix(name string) string {
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			return name[:i]
		}
	}
	return name
}

// slotOf returns n of a replica name ending in "-<n>".
func slotOf(name string) (int, bool) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(name[i+1:])
	return n, err == nil && n > 0
}

func setLabels(spec controller.ContainerSpec) map[string]string {
	return map[string]string{
		LabelManaged:    "true",
		LabelService:    spec.Service,
		LabelColor:      string(spec.Color),
		LabelDeployment: spec.Deployment,
		LabelPort:       strconv.Itoa(spec.Port),
		LabelReplicas:   strconv.Itoa(spec.Replicas),
		LabelName:       namePrefix(spec.Name),
		LabelNetwork:    spec.Network,
	}
}

func oneOffLabels(spec controller.OneOffSpec) map[string]string {
	return map[string]string{
		LabelManaged:    "true",
		LabelService:    spec.Service,
		LabelDeployment: spec.Deployment,
		LabelOneOff:     "true",
		LabelName:       spec.Name,
		LabelNetwork:    spec.Network,
	}
}

// serviceFilter selects a service's managed Swarm services, one-off jobs
// included; the engine cannot filter on a label's absence.
func serviceFilter(service string) filters.Args {
	return filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelService+"="+service),
	)
}

func isOneOff(labels map[string]string) bool { return labels[LabelOneOff] == "true" }

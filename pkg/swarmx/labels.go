package swarmx

import (
	"strconv"
	"strings"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

// Labels swarmx puts on set services and their tasks' containers beside
// the workload labels every runtime puts.
const (
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
	l := workload.ReplicaLabels(spec.Service, string(spec.Color), spec.Deployment, spec.Port)
	l[LabelReplicas] = strconv.Itoa(spec.Replicas)
	l[LabelName] = namePrefix(spec.Name)
	l[LabelNetwork] = spec.Network
	return l
}

func oneOffLabels(spec controller.OneOffSpec) map[string]string {
	l := workload.OneOffLabels(spec.Service, spec.Deployment)
	l[LabelName] = spec.Name
	l[LabelNetwork] = spec.Network
	return l
}

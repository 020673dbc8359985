// Package workload names the labels deployd marks what it runs with:
// containers on one host (dockerx), Swarm services and their tasks
// (swarmx). The labels are the only record of which service, color and
// deployment a workload belongs to, so a restarted deployd finds its own
// by them, whichever runtime made them, and any tool reads them the same
// way on both.
package workload

import (
	"strconv"

	"github.com/docker/docker/api/types/filters"
)

// Labels on every workload deployd creates.
const (
	LabelManaged    = "deployd.managed"
	LabelService    = "deployd.service"
	LabelColor      = "deployd.color"
	LabelDeployment = "deployd.deployment"
	LabelOneOff     = "deployd.oneoff"
	// LabelPort keeps the replicas' port so a listed workload's address
	// can be rebuilt without the service's spec.
	LabelPort = "deployd.port"
)

// ReplicaLabels are the labels of a service's replicas of one color and
// deployment; a runtime may add its own.
func ReplicaLabels(service, color, deployment string, port int) map[string]string {
	return map[string]string{
		LabelManaged:    "true",
		LabelService:    service,
		LabelColor:      color,
		LabelDeployment: deployment,
		LabelPort:       strconv.Itoa(port),
	}
}

// OneOffLabels are the labels of a deployment's one-off run (pre_deploy,
// a backup, a schema read); a runtime may add its own.
func OneOffLabels(service, deployment string) map[string]string {
	return map[string]string{
		LabelManaged:    "true",
		LabelService:    service,
		LabelDeployment: deployment,
		LabelOneOff:     "true",
	}
}

// Filter selects a service's managed workloads. One-offs match it too:
// the engine cannot filter on a label's absence, so callers drop them
// with IsOneOff.
func Filter(service string) filters.Args {
	return filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelService+"="+service),
	)
}

// IsOneOff reports whether labels are a one-off run's.
func IsOneOff(labels map[string]string) bool { return labels[LabelOneOff] == "true" }

package dockerx

import (
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

func replicaLabels(spec controller.ContainerSpec) map[string]string {
	return workload.ReplicaLabels(spec.Service, string(spec.Color), spec.Deployment, spec.Port)
}

func oneOffLabels(spec controller.OneOffSpec) map[string]string {
	return workload.OneOffLabels(spec.Service, spec.Deployment)
}

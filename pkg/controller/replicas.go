package controller

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// A color's containers are not all one set. A deploy starts its containers
// in the standby's color beside the standby's own (DeployStandbyKeep), so
// for a while a color holds the standby and the new containers, or, after a
// crash, what a deployment left. Each replica carries the deployment that
// created it (Container.Deployment), and the store records the deployment
// of the active and of the standby color: members picks a color's set by
// that, strays are the rest.

// replicaName is the container name of replica n (from 1) of a color,
// created by deployment: <service>-<color>-<deployment's short id>-<n>, so
// that two deployments' replicas of one color can run side by side. An
// empty deployment gives the older <service>-<color>-<n>.
func replicaName(service string, color Color, deployment string, n int) string {
	if deployment == "" {
		return fmt.Sprintf("%s-%s-%d", service, color, n)
	}
	return fmt.Sprintf("%s-%s-%s-%d", service, color, shortID(deployment), n)
}

// replicaNumber returns n of a name made by replicaName, in either form.
func replicaNumber(name string) (int, bool) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(name[i+1:])
	return n, err == nil && n > 0
}

// legacyName reports whether name is a replica name from before replicas
// were named by deployment: exactly <service>-<color>-<n>.
func legacyName(service string, color Color, name string) bool {
	rest, ok := strings.CutPrefix(name, service+"-"+string(color)+"-")
	if !ok {
		return false
	}
	_, err := strconv.Atoi(rest)
	return err == nil
}

// deploymentOf returns the deployment st records for color: the active's,
// the standby's, or "" for a color that is neither.
func (st ServiceState) deploymentOf(color Color) string {
	switch {
	case !color.Valid():
		return ""
	case color == st.ActiveColor:
		return st.ActiveDeployment
	case color == st.StandbyColor:
		return st.StandbyDeployment
	}
	return ""
}

// members returns the containers of color among all that deployment
// created, sorted by name. With no deployment to go by, every container of
// the color counts. Replicas created before they were named by deployment
// may carry another deployment's label (a cold rollback labelled them with
// its own): when none carries deployment, those legacy-named ones count.
func members(all []Container, service string, color Color, deployment string) []Container {
	cs := ofColor(all, color)
	if deployment == "" {
		return cs
	}
	own := slices.DeleteFunc(slices.Clone(cs), func(ct Container) bool { return ct.Deployment != deployment })
	if len(own) > 0 {
		return own
	}
	return slices.DeleteFunc(cs, func(ct Container) bool { return !legacyName(service, color, ct.Name) })
}

// strays returns the containers of color among all that are not members
// of deployment's set: a running or failed deployment's, or an old standby
// a deploy replaced.
func strays(all []Container, service string, color Color, deployment string) []Container {
	own := members(all, service, color, deployment)
	return slices.DeleteFunc(ofColor(all, color), func(ct Container) bool {
		return slices.ContainsFunc(own, func(o Container) bool { return o.ID == ct.ID })
	})
}

// stateContainers lists the containers that make up color in the
// service's state st: the active's or the standby's set, sorted by name.
func (c *Controller) stateContainers(ctx context.Context, service string, st ServiceState, color Color) ([]Container, error) {
	all, err := c.runtime(service).Containers(ctx, service)
	if err != nil {
		return nil, err
	}
	return members(all, service, color, st.deploymentOf(color)), nil
}

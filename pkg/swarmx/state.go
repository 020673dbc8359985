package swarmx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"

	"github.com/deployd/deployd/internal/engine"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

// The state mirror's labels on set services (see MirrorState).
const (
	// LabelRole is "active" or "standby" on the set that is, and absent
	// on every other set of the service.
	LabelRole = "deployd.role"
	// LabelStateUpdated is when the state a role belongs to was recorded
	// (RFC 3339, nanoseconds), on the sets with a role.
	LabelStateUpdated = "deployd.state.updated"

	RoleActive  = "active"
	RoleStandby = "standby"
)

var _ controller.StateMirror = (*Runtime)(nil)

// MirrorState labels st's active set deployd.role=active and its standby
// set deployd.role=standby, both with deployd.state.updated, and takes
// the role off every other set of the service. Only the services'
// own labels change, never their task template: no task restarts. Sets
// already labelled so are not written. A set st names that does not
// exist wraps controller.ErrNotFound, after the others were labelled.
func (r *Runtime) MirrorState(ctx context.Context, st controller.ServiceState) error {
	sets, err := r.setServices(ctx, st.Name)
	if err != nil {
		return fmt.Errorf("mirror state of %s: %w", st.Name, err)
	}
	stamp := st.UpdatedAt.UTC().Format(time.RFC3339Nano)
	found := map[string]bool{}
	var errs []error
	for _, svc := range sets {
		role := roleIn(st, svc.Spec.Labels)
		if role != "" {
			found[role] = true
		}
		if !relabelNeeded(svc.Spec.Labels, role, stamp) {
			continue
		}
		if err := r.relabel(ctx, svc.ID, role, stamp); err != nil {
			errs = append(errs, fmt.Errorf("mirror state of %s: %w", st.Name, err))
		}
	}
	if st.ActiveColor.Valid() && !found[RoleActive] {
		errs = append(errs, fmt.Errorf("mirror state of %s: no set of the active %s (deployment %s): %w",
			st.Name, st.ActiveColor, st.ActiveDeployment, controller.ErrNotFound))
	}
	if st.StandbyColor.Valid() && !found[RoleStandby] {
		errs = append(errs, fmt.Errorf("mirror state of %s: no set of the standby %s (deployment %s): %w",
			st.Name, st.StandbyColor, st.StandbyDeployment, controller.ErrNotFound))
	}
	return errors.Join(errs...)
}

// MirroredState reads back what MirrorState recorded: the active set and,
// when it carries the same deployd.state.updated (the same write), the
// standby set. Color and deployment come from the sets' labels, the image
// from their task template. false when no set of service is active.
func (r *Runtime) MirroredState(ctx context.Context, service string) (controller.ServiceState, bool, error) {
	sets, err := r.setServices(ctx, service)
	if err != nil {
		return controller.ServiceState{}, false, fmt.Errorf("mirrored state of %s: %w", service, err)
	}
	var active *swarm.Service
	for i, svc := range sets {
		// Two active sets mean a write was cut short: the newer one holds.
		if svc.Spec.Labels[LabelRole] == RoleActive && (active == nil || stampOf(svc).After(stampOf(*active))) {
			active = &sets[i]
		}
	}
	if active == nil {
		return controller.ServiceState{}, false, nil
	}
	stamp := active.Spec.Labels[LabelStateUpdated]
	st := controller.ServiceState{
		Name:             service,
		ActiveColor:      controller.Color(active.Spec.Labels[workload.LabelColor]),
		ActiveImage:      imageOf(*active),
		ActiveDeployment: active.Spec.Labels[workload.LabelDeployment],
		UpdatedAt:        stampOf(*active),
	}
	for _, svc := range sets {
		l := svc.Spec.Labels
		if l[LabelRole] == RoleStandby && l[LabelStateUpdated] == stamp {
			st.StandbyColor = controller.Color(l[workload.LabelColor])
			st.StandbyImage = imageOf(svc)
			st.StandbyDeployment = l[workload.LabelDeployment]
		}
	}
	return st, true, nil
}

// setServices lists service's set services, one-off jobs left out.
func (r *Runtime) setServices(ctx context.Context, service string) ([]swarm.Service, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	list, err := r.api.ServiceList(ctx, swarm.ServiceListOptions{Filters: workload.Filter(service)})
	if err != nil {
		return nil, engine.WrapErr("list services of "+service, err)
	}
	out := list[:0]
	for _, svc := range list {
		if !workload.IsOneOff(svc.Spec.Labels) {
			out = append(out, svc)
		}
	}
	return out, nil
}

// roleIn is the role of the set labelled l in st, or "".
func roleIn(st controller.ServiceState, l map[string]string) string {
	color, dep := controller.Color(l[workload.LabelColor]), l[workload.LabelDeployment]
	switch {
	case st.ActiveColor.Valid() && color == st.ActiveColor && dep == st.ActiveDeployment:
		return RoleActive
	case st.StandbyColor.Valid() && color == st.StandbyColor && dep == st.StandbyDeployment:
		return RoleStandby
	}
	return ""
}

func relabelNeeded(l map[string]string, role, stamp string) bool {
	if role == "" {
		_, hasRole := l[LabelRole]
		_, hasStamp := l[LabelStateUpdated]
		return hasRole || hasStamp
	}
	return l[LabelRole] != role || l[LabelStateUpdated] != stamp
}

// relabel sets (or, for role "", removes) the set service's role labels.
// Only Spec.Annotations.Labels changes, so Swarm keeps its tasks; an
// update that lost a race with another (a scale) is read and tried again.
func (r *Runtime) relabel(ctx context.Context, id, role, stamp string) error {
	for {
		svc, err := r.inspectService(ctx, id)
		if err != nil {
			return err
		}
		spec := svc.Spec
		labels := make(map[string]string, len(spec.Labels)+2)
		for k, v := range spec.Labels {
			labels[k] = v
		}
		delete(labels, LabelRole)
		delete(labels, LabelStateUpdated)
		if role != "" {
			labels[LabelRole], labels[LabelStateUpdated] = role, stamp
		}
		spec.Labels = labels
		uctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err = r.api.ServiceUpdate(uctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{})
		cancel()
		// As in scale: a stale version is not a conflict on every engine.
		if err != nil && (cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "out of sequence")) {
			if err := sleepPoll(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return engine.WrapErr("label service "+svc.Spec.Name, err)
		}
		r.log.WithField("container", svc.Spec.Name).WithField("role", role).Debug("set relabelled")
		return nil
	}
}

// imageOf is the image a set's tasks run.
func imageOf(svc swarm.Service) string {
	if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
		return cs.Image
	}
	return ""
}

// stampOf is a set's deployd.state.updated; zero when absent or unreadable.
func stampOf(svc swarm.Service) time.Time {
	t, err := time.Parse(time.RFC3339Nano, svc.Spec.Labels[LabelStateUpdated])
	if err != nil {
		return time.Time{}
	}
	return t
}

package swarmx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

// setOf is e.spec for replica n of another color and deployment.
func (e env) setOf(color controller.Color, deployment string, replicas int) func(n int) controller.ContainerSpec {
	return func(n int) controller.ContainerSpec {
		s := e.spec(n, replicas)
		s.Color, s.Deployment = color, deployment
		s.Name = fmt.Sprintf("%s-%s-%s-%d", e.svc, color, deployment[len(deployment)-6:], n)
		return s
	}
}

// taskIDs lists every task of the service's sets, whatever its state:
// a restart would add tasks.
func (e env) taskIDs(ctx context.Context, t *testing.T) []string {
	t.Helper()
	tasks, err := e.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("label", workload.LabelService+"="+e.svc))})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, task := range tasks {
		ids = append(ids, task.ID)
	}
	slices.Sort(ids)
	return ids
}

// roles maps each set service's name to its deployd.role ("" for none).
func (e env) roles(ctx context.Context, t *testing.T) map[string]string {
	t.Helper()
	list, err := e.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: workload.Filter(e.svc)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, svc := range list {
		out[svc.Spec.Name] = svc.Spec.Labels[LabelRole]
	}
	return out
}

func TestMirrorState_LabelsTheSetsWithoutRestartingTasksAndReadsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const blueDep, greenDep, oldDep = "d-abc123", "d-def456", "d-old999"
	for _, set := range []struct {
		color controller.Color
		dep   string
		n     int
	}{{controller.Blue, blueDep, 2}, {controller.Green, greenDep, 1}, {controller.Green, oldDep, 1}} {
		if _, errs := e.startSet(ctx, e.setOf(set.color, set.dep, set.n), set.n); errors.Join(errs...) != nil {
			t.Fatalf("start %s %s: %v", set.color, set.dep, errors.Join(errs...))
		}
	}
	if _, found, err := e.rt.MirroredState(ctx, e.svc); err != nil || found {
		t.Fatalf("MirroredState before any mirror = %v, %v; want none", found, err)
	}
	before := e.taskIDs(ctx, t)
	if len(before) != 4 {
		t.Fatalf("tasks = %d, want 4", len(before))
	}

	// The old green set was the standby once; its role goes.
	first := controller.ServiceState{Name: e.svc,
		ActiveColor: controller.Blue, ActiveImage: e.image, ActiveDeployment: blueDep,
		StandbyColor: controller.Green, StandbyImage: e.image, StandbyDeployment: oldDep,
		UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	if err := e.rt.MirrorState(ctx, first); err != nil {
		t.Fatal(err)
	}
	want := controller.ServiceState{Name: e.svc,
		ActiveColor: controller.Green, ActiveImage: e.image, ActiveDeployment: greenDep,
		StandbyColor: controller.Blue, StandbyImage: e.image, StandbyDeployment: blueDep,
		UpdatedAt: time.Date(2026, 1, 2, 3, 5, 0, 123456789, time.UTC)}
	began := time.Now()
	if err := e.rt.MirrorState(ctx, want); err != nil {
		t.Fatal(err)
	}
	t.Logf("MirrorState of a switch took %s", time.Since(began).Round(time.Millisecond))
	got, found, err := e.rt.MirroredState(ctx, e.svc)
	if err != nil || !found {
		t.Fatalf("MirroredState = %v, %v; want the state", found, err)
	}
	if !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("updated = %s, want %s", got.UpdatedAt, want.UpdatedAt)
	}
	got.UpdatedAt = want.UpdatedAt
	if got != want {
		t.Errorf("MirroredState =\n %+v\nwant\n %+v", got, want)
	}
	wantRoles := map[string]string{
		setName(e.svc, controller.Green, greenDep): RoleActive,
		setName(e.svc, controller.Blue, blueDep):   RoleStandby,
		setName(e.svc, controller.Green, oldDep):   "",
	}
	if roles := e.roles(ctx, t); fmt.Sprint(roles) != fmt.Sprint(wantRoles) {
		t.Errorf("roles = %v, want %v", roles, wantRoles)
	}
	if after := e.taskIDs(ctx, t); !slices.Equal(after, before) {
		t.Fatalf("tasks after mirroring = %v, want the same %v: relabelling restarted tasks", after, before)
	}
	cs, err := e.rt.Containers(ctx, e.svc)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if !c.Running() {
			t.Errorf("%s is %s after mirroring, want running", c.Name, c.State)
		}
	}
}

func TestMirrorState_MissingSetIsNotFoundAndTheRestIsMirrored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, errs := e.startSet(ctx, e.setOf(controller.Blue, "d-abc123", 1), 1); errors.Join(errs...) != nil {
		t.Fatal(errors.Join(errs...))
	}
	st := controller.ServiceState{Name: e.svc,
		ActiveColor: controller.Blue, ActiveImage: e.image, ActiveDeployment: "d-abc123",
		StandbyColor: controller.Green, StandbyImage: e.image, StandbyDeployment: "d-gone00",
		UpdatedAt: time.Now().UTC()}
	err := e.rt.MirrorState(ctx, st)
	if !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("MirrorState naming a missing standby = %v, want ErrNotFound", err)
	}
	got, found, err := e.rt.MirroredState(ctx, e.svc)
	if err != nil || !found || got.ActiveDeployment != "d-abc123" || got.StandbyColor != controller.NoColor {
		t.Fatalf("MirroredState = %+v, %v, %v; want blue active without standby", got, found, err)
	}
}

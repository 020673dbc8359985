package swarmx

import (
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

func TestSetFailure_EndedRejectedFailedAndUnplaceableTasksFailTheSet(t *testing.T) {
	updated := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	svc := swarm.Service{Meta: swarm.Meta{UpdatedAt: updated}}
	task := func(state swarm.TaskState, err string, created time.Time) swarm.Task {
		return swarm.Task{
			ID: "task" + string(state), Meta: swarm.Meta{CreatedAt: created},
			DesiredState: swarm.TaskStateRunning, Status: swarm.TaskStatus{State: state, Err: err},
		}
	}
	after, before := updated.Add(time.Second), updated.Add(-time.Second)
	tests := []struct {
		name string
		task swarm.Task
		want bool
	}{
		{"running", task(swarm.TaskStateRunning, "", after), false},
		{"starting (HEALTHCHECK not passed yet)", task(swarm.TaskStateStarting, "", after), false},
		{"pending, no error yet", task(swarm.TaskStatePending, "", after), false},
		{"pending, no suitable node", task(swarm.TaskStatePending, "no suitable node", after), true},
		{"rejected", task(swarm.TaskStateRejected, "No such image", after), true},
		{"failed", task(swarm.TaskStateFailed, "task: non-zero exit (1)", after), true},
		// Swarm stops a task whose HEALTHCHECK failed; an app that
		// exits 0 on SIGTERM leaves it complete.
		{"complete (ended with exit code 0)", task(swarm.TaskStateComplete, "", after), true},
		{"shut down (node drained)", task(swarm.TaskStateShutdown, "", after), true},
		{"failed before the last update", task(swarm.TaskStateFailed, "old", before), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := setFailure(svc, []swarm.Task{tt.task})
			if ok != tt.want || (ok && got.ID != tt.task.ID) {
				t.Errorf("setFailure = %v, %v; want %v", got.ID, ok, tt.want)
			}
		})
	}
}

package swarmx

import (
	"context"

	"github.com/deployd/deployd/pkg/controller"
)

// EnsureImage does nothing: on a swarm each node pulls the image its
// tasks run, so there is nothing to make present on the manager. A
// missing image shows as a rejected task when the set starts, and
// StartContainer fails fast with it. Pinning refs to digests is a later
// step of the controller; policy is not looked at yet.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, policy controller.PullPolicy, progress func(string)) error {
	return nil
}

// Images returns none: images live on every node of the swarm and
// swarmx does not prune them yet, so retention leaves them alone.
func (r *Runtime) Images(ctx context.Context, repository string) ([]controller.Image, error) {
	return nil, nil
}

// RemoveImage does nothing (see Images).
func (r *Runtime) RemoveImage(ctx context.Context, id string) error {
	return nil
}

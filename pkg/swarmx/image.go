package swarmx

import (
	"context"

	"github.com/deployd/deployd/pkg/controller"
)

// EnsureImage does nothing: on a swarm each node pulls the image its
// tasks run, so there is nothing to make present on the manager. What the
// pull step does instead is PinImage; a node that cannot pull the pinned
// image shows as a rejected task when the set starts, and StartContainer
// fails fast with it.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, policy controller.PullPolicy, progress func(string)) error {
	return nil
}

// PinImage asks the registry for ref's digest (see Pinner), so that every
// node runs the same bytes.
func (r *Runtime) PinImage(ctx context.Context, ref string) (string, error) {
	if r.pin == nil {
		return "", controller.Errorf(controller.EINTERNAL, "pin image %s: the swarm runtime has no registry resolver", ref)
	}
	return r.pin.PinnedRef(ctx, ref)
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

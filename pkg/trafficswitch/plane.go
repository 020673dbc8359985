package trafficswitch

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Plane is the traffic switch as the daemon drives it: the Switch in this
// process (Local) or in the switch process, over its control socket
// (Client). The adapters (Router, Control, TrafficReader) take a Plane, so
// the daemon drives both the same way.
//
// Errors wrap the package's sentinels as the Switch's methods document
// them (ErrInvalid, ErrNotFound, ErrConflict, ErrClosed); a Client adds
// ErrUnreachable when the switch process does not answer, and ctx's error
// when ctx ends first.
type Plane interface {
	// SetTargets is Switch.SetTargets.
	SetTargets(ctx context.Context, service, color string, addrs []string) error
	// Status is Switch.Status.
	Status(ctx context.Context, service string) (Status, error)
	// Window is Switch.Window: 0, 0 for an unknown service or color. A
	// Local plane fails only once the Switch is closed.
	Window(ctx context.Context, service, color string) (requests, errors5xx int, err error)
	// Drain is Switch.Drain; it blocks as long.
	Drain(ctx context.Context, service, color string, timeout time.Duration) (DrainResult, error)
	// Pause is Switch.Pause, but it creates the service first, so that a
	// recorded pause applies before the service listens.
	Pause(ctx context.Context, service string, maxHold time.Duration, maxHeld int) error
	// Resume is Switch.Resume.
	Resume(ctx context.Context, service string) error
	// Maintenance is Switch.Maintenance, and like Pause it creates the
	// service first.
	Maintenance(ctx context.Context, service string, on bool, message string) error
}

// Local returns the Plane of sw, a Switch in this process. Its calls do
// not block on ctx, except Drain's wait.
func Local(sw *Switch) Plane { return localPlane{sw: sw} }

type localPlane struct{ sw *Switch }

var _ Plane = localPlane{}

func (p localPlane) SetTargets(_ context.Context, service, color string, addrs []string) error {
	return p.sw.SetTargets(service, color, addrs)
}

func (p localPlane) Status(_ context.Context, service string) (Status, error) {
	return p.sw.Status(service)
}

func (p localPlane) Window(_ context.Context, service, color string) (int, int, error) {
	// Switch.Window reads 0, 0 for a closed Switch as for an unknown
	// service; a plane says it is closed, so that a reader never takes
	// a switch that stopped counting for a quiet one.
	if _, err := p.sw.serviceFor(service, false); err != nil && !errors.Is(err, ErrNotFound) {
		return 0, 0, err
	}
	requests, errors5xx := p.sw.Window(service, color)
	return requests, errors5xx, nil
}

func (p localPlane) Drain(ctx context.Context, service, color string, timeout time.Duration) (DrainResult, error) {
	return p.sw.Drain(ctx, service, color, timeout)
}

func (p localPlane) Pause(_ context.Context, service string, maxHold time.Duration, maxHeld int) error {
	if _, err := p.sw.serviceFor(service, true); err != nil {
		return fmt.Errorf("pause %s: %w", service, err)
	}
	return p.sw.Pause(service, maxHold, maxHeld)
}

func (p localPlane) Resume(_ context.Context, service string) error {
	return p.sw.Resume(service)
}

func (p localPlane) Maintenance(_ context.Context, service string, on bool, message string) error {
	if _, err := p.sw.serviceFor(service, true); err != nil {
		return fmt.Errorf("maintenance of %s: %w", service, err)
	}
	return p.sw.Maintenance(service, on, message)
}

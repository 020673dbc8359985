package trafficswitch

import (
	"context"
	"errors"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// Control adapts a Plane to the controller's TrafficControl port: the same
// calls, with the switch's errors turned into *controller.Error values the
// API can answer.
type Control struct{ p Plane }

var _ controller.TrafficControl = Control{}

// NewControl returns the TrafficControl of p.
func NewControl(p Plane) Control { return Control{p: p} }

// Pause is Plane.Pause, which creates the service in the switch first, so
// that a restart can apply a recorded pause before the service listens.
func (c Control) Pause(ctx context.Context, service string, maxHold time.Duration, maxHeld int) error {
	return controlError(c.p.Pause(ctx, service, maxHold, maxHeld))
}

// Resume is Plane.Resume.
func (c Control) Resume(ctx context.Context, service string) error {
	return controlError(c.p.Resume(ctx, service))
}

// Maintenance is Plane.Maintenance, and like Pause it creates the service
// first.
func (c Control) Maintenance(ctx context.Context, service string, on bool, message string) error {
	return controlError(c.p.Maintenance(ctx, service, on, message))
}

// Status is Plane.Status, its in-flight requests summed over the colors.
func (c Control) Status(ctx context.Context, service string) (controller.TrafficStatus, error) {
	st, err := c.p.Status(ctx, service)
	if err != nil {
		return controller.TrafficStatus{}, controlError(err)
	}
	out := controller.TrafficStatus{
		Paused: st.Paused, PausedSince: st.PausedSince, Held: st.Held, MaxHeld: st.MaxHeld, MaxHold: st.MaxHold,
		Maintenance: st.Maintenance, MaintenanceSince: st.MaintenanceSince, Message: st.Message,
	}
	for _, cs := range st.Colors {
		out.InFlight += cs.InFlight
	}
	return out, nil
}

// errorCodes maps the switch's sentinels to the controller's codes; any
// other error stays internal.
var errorCodes = []struct {
	sentinel error
	code     string
}{
	{ErrInvalid, controller.EINVALID},
	{ErrConflict, controller.ECONFLICT},
	{ErrNotFound, controller.ENOTFOUND},
	{ErrClosed, controller.EUNAVAILABLE},
	{ErrUnreachable, controller.EUNAVAILABLE},
}

// controlError turns err into a *controller.Error whose message is the
// switch's ("pause web: conflict: already paused"), keeping err in the
// chain for errors.Is.
func controlError(err error) error {
	if err == nil {
		return nil
	}
	for _, m := range errorCodes {
		if errors.Is(err, m.sentinel) {
			return &codedError{coded: controller.Errorf(m.code, "%s", err.Error()), cause: err}
		}
	}
	return err
}

// codedError reads as its *controller.Error and unwraps to it and to the
// switch's error.
type codedError struct {
	coded *controller.Error
	cause error
}

func (e *codedError) Error() string   { return e.coded.Message }
func (e *codedError) Unwrap() []error { return []error{e.coded, e.cause} }

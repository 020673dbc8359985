package trafficswitch

import (
	"errors"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// Control adapts a Switch to the controller's TrafficControl port: the same
// calls, with the Switch's errors turned into *controller.Error values the
// API can answer.
type Control struct{ sw *Switch }

var _ controller.TrafficControl = Control{}

// NewControl returns the TrafficControl of sw.
func NewControl(sw *Switch) Control { return Control{sw: sw} }

// Pause is Switch.Pause. It creates the service in the Switch first, so
// that a restart can apply a recorded pause before the service listens.
func (c Control) Pause(service string, maxHold time.Duration, maxHeld int) error {
	if _, err := c.sw.Handler(service); err != nil {
		return controlError(err)
	}
	return controlError(c.sw.Pause(service, maxHold, maxHeld))
}

// Resume is Switch.Resume.
func (c Control) Resume(service string) error {
	return controlError(c.sw.Resume(service))
}

// Maintenance is Switch.Maintenance, and like Pause it creates the service
// first.
func (c Control) Maintenance(service string, on bool, message string) error {
	if _, err := c.sw.Handler(service); err != nil {
		return controlError(err)
	}
	return controlError(c.sw.Maintenance(service, on, message))
}

// Status is Switch.Status, its in-flight requests summed over the colors.
func (c Control) Status(service string) (controller.TrafficStatus, error) {
	st, err := c.sw.Status(service)
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

// errorCodes maps the Switch's sentinels to the controller's codes; any
// other error stays internal.
var errorCodes = []struct {
	sentinel error
	code     string
}{
	{ErrInvalid, controller.EINVALID},
	{ErrConflict, controller.ECONFLICT},
	{ErrNotFound, controller.ENOTFOUND},
	{ErrClosed, controller.EUNAVAILABLE},
}

// controlError turns err into a *controller.Error whose message is the
// Switch's ("pause web: conflict: already paused"), keeping err in the
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
// Switch's error.
type codedError struct {
	coded *controller.Error
	cause error
}

func (e *codedError) Error() string   { return e.coded.Message }
func (e *codedError) Unwrap() []error { return []error{e.coded, e.cause} }

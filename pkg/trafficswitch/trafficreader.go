package trafficswitch

import (
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

var _ controller.TrafficReader = TrafficReader{}

// TrafficReader is a Switch as the controller's TrafficReader: the error
// windows its bake and watchdog judge a color's real traffic by (see
// controller.TrafficRule). The Switch itself keeps colors as plain
// strings; this is the one place that speaks the controller's types.
type TrafficReader struct {
	Switch *Switch
}

// Window is Switch.Window for a controller color.
func (r TrafficReader) Window(service string, color controller.Color) (requests, errors int) {
	return r.Switch.Window(service, string(color))
}

// Span is Options.ErrorWindow, how far back Window counts.
func (r TrafficReader) Span() time.Duration { return r.Switch.opts.ErrorWindow }

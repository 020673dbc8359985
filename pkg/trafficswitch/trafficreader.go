package trafficswitch

import (
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// TrafficReader adapts a Switch to the controller's TrafficReader port:
// the error windows (Window) by which bake and the watchdog judge a
// color's real traffic (see controller.TrafficRule).
type TrafficReader struct{ sw *Switch }

var _ controller.TrafficReader = TrafficReader{}

// NewTrafficReader returns the TrafficReader of sw.
func NewTrafficReader(sw *Switch) TrafficReader { return TrafficReader{sw: sw} }

// Window is Switch.Window for a controller color.
func (r TrafficReader) Window(service string, color controller.Color) (requests, errors int) {
	return r.sw.Window(service, string(color))
}

// Span is Options.ErrorWindow, how far back Window counts.
func (r TrafficReader) Span() time.Duration { return r.sw.opts.ErrorWindow }

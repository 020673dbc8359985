package trafficswitch

import (
	"context"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// TrafficReader adapts a Plane to the controller's TrafficReader port:
// the error windows (Window) by which bake and the watchdog judge a
// color's real traffic (see controller.TrafficRule).
type TrafficReader struct {
	p    Plane
	span time.Duration
}

var _ controller.TrafficReader = TrafficReader{}

// NewTrafficReader returns the TrafficReader of p. span is the switch's
// Options.ErrorWindow (DefaultErrorWindow when it was left zero): the
// plane cannot tell it, and Span reports it.
func NewTrafficReader(p Plane, span time.Duration) TrafficReader {
	return TrafficReader{p: p, span: span}
}

// Window is Plane.Window for a controller color.
func (r TrafficReader) Window(ctx context.Context, service string, color controller.Color) (requests, errors int, err error) {
	return r.p.Window(ctx, service, string(color))
}

// Span is how far back Window counts.
func (r TrafficReader) Span() time.Duration { return r.span }

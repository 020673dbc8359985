package auth

import (
	"time"

	"github.com/deployd/deployd/internal/xtest"
)

// newFakeClock returns a clock tests move by hand, at a fixed start.
func newFakeClock() *xtest.Clock {
	return xtest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

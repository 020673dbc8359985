// Package xtest holds test doubles shared by the tests of several
// packages. Only _test.go files import it, so none of it is in the binary.
package xtest

import (
	"sync"
	"time"
)

// Clock is a clock tests move by hand. Its Now method fits any Now or
// clock option (func() time.Time). It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock that reads start until it is moved.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (back, for a negative d).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

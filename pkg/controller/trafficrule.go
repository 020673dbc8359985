package controller

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// trafficReading is one read of a color's request window, with the rule
// it is judged by.
type trafficReading struct {
	rule             TrafficRule
	requests, errors int
	// span is how far back the window reached.
	span time.Duration
}

// readTraffic reads the color's window for rule. ok is false when the rule
// is off, nothing counts requests (no TrafficReader) or the read failed:
// a window that could not be read is no reading, neither good nor bad, so
// the rule skips it and never rolls back on it. The first failure of a
// service is a warning, the next ones until a read succeeds are debug
// lines. age, when positive, is how long the color has had its current
// addresses: the window restarted then, so it reaches back no further.
// Bake and the watchdog both judge traffic through here.
func (c *Controller) readTraffic(ctx context.Context, service string, color Color, rule TrafficRule, age time.Duration) (r trafficReading, ok bool) {
	if !rule.On() || c.windows == nil {
		return trafficReading{}, false
	}
	r = trafficReading{rule: rule, span: c.windows.Span()}
	var err error
	r.requests, r.errors, err = c.windows.Window(ctx, service, color)
	log := c.log.WithFields(logrus.Fields{"service": service, "color": string(color)})
	if err != nil {
		if c.readFailures.failed(service) {
			log.WithError(err).Warn("cannot read the traffic window; the traffic rule skips this reading")
		} else {
			log.WithError(err).Debug("cannot read the traffic window; the traffic rule skips this reading")
		}
		return trafficReading{}, false
	}
	if c.readFailures.succeeded(service) {
		log.Info("traffic window readable again")
	}
	if age > 0 && age < r.span {
		r.span = age
	}
	return r, true
}

// readFailures remembers which services' last window read failed, so
// that a switch process that does not answer is one warning per episode,
// not one per watchdog round.
type readFailures struct {
	mu      sync.Mutex
	failing map[string]bool
}

// failed records a failed read and reports whether it starts an episode.
func (f *readFailures) failed(service string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing[service] {
		return false
	}
	if f.failing == nil {
		f.failing = make(map[string]bool)
	}
	f.failing[service] = true
	return true
}

// succeeded records a good read and reports whether it ends an episode.
func (f *readFailures) succeeded(service string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.failing[service] {
		return false
	}
	delete(f.failing, service)
	return true
}

// problem is nil unless the window holds at least MinRequests requests and
// its share of 5xx answers is above MaxErrorRate; then it says so with the
// numbers.
func (r trafficReading) problem() error {
	if r.requests < max(r.rule.MinRequests, 1) {
		return nil
	}
	// Both sides are correctly rounded quotients, so a share exactly at
	// the limit (4 of 200 against 2%) compares equal and passes.
	if float64(r.errors)/float64(r.requests) <= r.rule.MaxErrorRate {
		return nil
	}
	return fmt.Errorf("%s above max %s", r, percent(r.rule.MaxErrorRate))
}

// String is the measurement: "5xx rate 7.5% (15 of 200 requests in the
// last 60s)".
func (r trafficReading) String() string {
	rate := 0.0
	if r.requests > 0 {
		rate = float64(r.errors) / float64(r.requests)
	}
	return fmt.Sprintf("5xx rate %s (%d of %d requests in the last %s)",
		percent(rate), r.errors, r.requests, seconds(r.span))
}

// verdict says what the rule made of a reading that passed, for a step's
// message: the rate, or that there was too little traffic to judge.
func (r trafficReading) verdict() string {
	if least := max(r.rule.MinRequests, 1); r.requests < least {
		return fmt.Sprintf("traffic rule not applied: %d requests in the last %s, fewer than %d",
			r.requests, seconds(r.span), least)
	}
	return fmt.Sprintf("%s, max %s", r, percent(r.rule.MaxErrorRate))
}

// percent formats a share as a percentage with up to three significant
// digits: 0.075 is "7.5%", 1/3 is "33.3%".
func percent(share float64) string {
	return strconv.FormatFloat(share*100, 'g', 3, 64) + "%"
}

// seconds formats a window's span as operators read it: "60s", "300s";
// under a second (a bake just begun) in milliseconds.
func seconds(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return strconv.FormatInt(int64(d.Round(time.Second)/time.Second), 10) + "s"
}

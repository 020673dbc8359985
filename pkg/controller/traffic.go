package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
)

// Defaults of PauseLimits' zero fields.
const (
	DefaultPauseMaxHold = 30 * time.Second
	DefaultPauseMaxHeld = 1000
)

// TrafficModeSwitch is TrafficView.Mode when deployd's own switch carries
// the requests (the only mode with a TrafficView).
const TrafficModeSwitch = "switch"

// PauseLimits bound every pause: how long one request may be held and how
// many may be held at once. A pause request may ask for less, never more.
type PauseLimits struct {
	MaxHold time.Duration
	MaxHeld int
}

// PauseRequest asks for a pause; a zero field means the configured limit.
type PauseRequest struct {
	MaxHold time.Duration
	MaxHeld int
}

// TrafficStatus is what a TrafficControl reports of one service.
type TrafficStatus struct {
	Paused      bool
	PausedSince time.Time
	// Held counts the requests waiting for Resume now.
	Held    int
	MaxHeld int
	MaxHold time.Duration

	Maintenance      bool
	MaintenanceSince time.Time
	Message          string

	// InFlight counts the requests forwarded and not yet answered, over
	// every color.
	InFlight int
}

// TrafficView is a service's traffic as the API and the status page show
// it (ServiceView.Traffic); there is none in reload mode.
type TrafficView struct {
	Mode string
	TrafficStatus
}

// TrafficState is what the store keeps of a service's pause and
// maintenance, so that a restart applies them again.
type TrafficState struct {
	Service     string
	Paused      bool
	PausedSince time.Time
	MaxHold     time.Duration
	MaxHeld     int

	Maintenance      bool
	MaintenanceSince time.Time
	Message          string

	UpdatedAt time.Time
}

// lockTraffic takes the lock every pause and maintenance change holds and
// reads the service's record; unlock releases the lock. In reload mode it
// answers errNoTrafficControl and takes nothing.
func (c *Controller) lockTraffic(ctx context.Context, service string) (rec TrafficState, unlock func(), err error) {
	if c.traffic == nil {
		return TrafficState{}, nil, errNoTrafficControl
	}
	c.trafficMu.Lock()
	rec, err = c.trafficRecord(ctx, service)
	if err != nil {
		c.trafficMu.Unlock()
		return TrafficState{}, nil, err
	}
	return rec, c.trafficMu.Unlock, nil
}

// errNoTrafficControl refuses pause and maintenance in reload mode.
var errNoTrafficControl = Errorf(ECONFLICT,
	"traffic control needs traffic.mode: switch; in reload mode nginx sends requests straight to the containers")

// Pause holds the service's new requests until Resume, within the
// configured PauseLimits (a request may ask for less). It returns the
// service's traffic as it is afterwards.
//
// Errors: ENOTFOUND for an unknown service; EINVALID for a limit that is
// negative or above the configured one; ECONFLICT in reload mode or when
// the service is already paused. Nothing changes on any error.
func (c *Controller) Pause(ctx context.Context, service string, req PauseRequest) (TrafficView, error) {
	if _, err := c.spec(service); err != nil {
		return TrafficView{}, err
	}
	limits, err := c.pauseLimits(req)
	if err != nil {
		return TrafficView{}, err
	}
	rec, unlock, err := c.lockTraffic(ctx, service)
	if err != nil {
		return TrafficView{}, err
	}
	defer unlock()
	if err := c.traffic.Pause(ctx, service, limits.MaxHold, limits.MaxHeld); err != nil {
		return TrafficView{}, fmt.Errorf("pause %s: %w", service, err)
	}
	rec.Paused, rec.PausedSince, rec.MaxHold, rec.MaxHeld = true, c.now().UTC(), limits.MaxHold, limits.MaxHeld
	if err := c.saveTraffic(ctx, rec); err != nil {
		// A pause that a restart would not restore is not kept: the
		// caller learns it failed and the switch is as it was.
		uctx, cancel := undoContext(ctx)
		defer cancel()
		if uerr := c.traffic.Resume(uctx, service); uerr != nil {
			c.log.WithField("service", service).WithError(uerr).Error("undo a pause that could not be recorded")
		}
		return TrafficView{}, err
	}
	c.log.WithFields(logrus.Fields{"service": service, "max_hold": limits.MaxHold, "max_held": limits.MaxHeld}).
		Info("requests paused")
	c.publishService(service, fmt.Sprintf("requests paused (hold up to %s, %d requests)", limits.MaxHold, limits.MaxHeld))
	return *c.trafficView(ctx, service, rec), nil
}

// Resume releases the service's held requests to its active color.
// Errors: ENOTFOUND for an unknown service; ECONFLICT in reload mode or
// when the service is not paused.
func (c *Controller) Resume(ctx context.Context, service string) (TrafficView, error) {
	if _, err := c.spec(service); err != nil {
		return TrafficView{}, err
	}
	rec, unlock, err := c.lockTraffic(ctx, service)
	if err != nil {
		return TrafficView{}, err
	}
	defer unlock()
	// The held requests go as soon as the switch resumes. Were the record
	// written first and the switch then refused, the record would say
	// "not paused" of a paused service.
	if err := c.traffic.Resume(ctx, service); err != nil {
		return TrafficView{}, fmt.Errorf("resume %s: %w", service, err)
	}
	rec.Paused, rec.PausedSince, rec.MaxHold, rec.MaxHeld = false, time.Time{}, 0, 0
	if err := c.saveTraffic(ctx, rec); err != nil {
		// Requests are flowing again and held ones are gone: there is
		// nothing to undo, but a restart would pause the service again.
		return TrafficView{}, fmt.Errorf("resumed, but the record still says paused: %w", err)
	}
	c.log.WithField("service", service).Info("requests resumed")
	c.publishService(service, "requests resumed")
	return *c.trafficView(ctx, service, rec), nil
}

// Maintenance turns the service's maintenance page on, with message ("":
// a default text), or off. Turning it on again replaces the message;
// turning it off when it is off does nothing.
//
// Errors: ENOTFOUND for an unknown service; EINVALID for a message that is
// too long, not UTF-8 or holds control characters; ECONFLICT in reload
// mode. Nothing changes on any error.
func (c *Controller) Maintenance(ctx context.Context, service string, on bool, message string) (TrafficView, error) {
	if _, err := c.spec(service); err != nil {
		return TrafficView{}, err
	}
	rec, unlock, err := c.lockTraffic(ctx, service)
	if err != nil {
		return TrafficView{}, err
	}
	defer unlock()
	prev, err := c.traffic.Status(ctx, service)
	if err != nil && ErrorCode(err) != ENOTFOUND {
		return TrafficView{}, fmt.Errorf("maintenance of %s: %w", service, err)
	}
	if err := c.traffic.Maintenance(ctx, service, on, message); err != nil {
		return TrafficView{}, fmt.Errorf("maintenance of %s: %w", service, err)
	}
	if on {
		if !rec.Maintenance {
			rec.MaintenanceSince = c.now().UTC()
		}
		rec.Maintenance, rec.Message = true, message
	} else {
		rec.Maintenance, rec.MaintenanceSince, rec.Message = false, time.Time{}, ""
	}
	if err := c.saveTraffic(ctx, rec); err != nil {
		// Put the switch back as it was, so that what a restart restores
		// and what requests meet now agree.
		uctx, cancel := undoContext(ctx)
		defer cancel()
		if uerr := c.traffic.Maintenance(uctx, service, prev.Maintenance, prev.Message); uerr != nil {
			c.log.WithField("service", service).WithError(uerr).Error("undo a maintenance change that could not be recorded")
		}
		return TrafficView{}, err
	}
	c.log.WithFields(logrus.Fields{"service": service, "on": on}).Info("maintenance changed")
	switch {
	case on && message != "":
		c.publishService(service, "maintenance on: "+message)
	case on:
		c.publishService(service, "maintenance on")
	default:
		c.publishService(service, "maintenance off")
	}
	return *c.trafficView(ctx, service, rec), nil
}

// pauseLimits applies the configured limits to a request.
func (c *Controller) pauseLimits(req PauseRequest) (PauseLimits, error) {
	out := c.pause
	switch {
	case req.MaxHold < 0 || req.MaxHold > c.pause.MaxHold:
		return PauseLimits{}, Errorf(EINVALID, "max_hold must be positive and at most the configured %s, got %s", c.pause.MaxHold, req.MaxHold)
	case req.MaxHold > 0:
		out.MaxHold = req.MaxHold
	}
	switch {
	case req.MaxHeld < 0 || req.MaxHeld > c.pause.MaxHeld:
		return PauseLimits{}, Errorf(EINVALID, "max_held must be positive and at most the configured %d, got %d", c.pause.MaxHeld, req.MaxHeld)
	case req.MaxHeld > 0:
		out.MaxHeld = req.MaxHeld
	}
	return out, nil
}

// trafficRecord returns the service's stored traffic state, or its zero
// state when none was recorded.
func (c *Controller) trafficRecord(ctx context.Context, service string) (TrafficState, error) {
	rec, err := c.store.GetTraffic(ctx, service)
	if errors.Is(err, ErrNotFound) {
		return TrafficState{Service: service}, nil
	}
	if err != nil {
		return TrafficState{}, fmt.Errorf("load traffic state of %s: %w", service, err)
	}
	return rec, nil
}

// undoContext bounds the undo of a switch change whose record failed: it
// runs even when the caller's context is ending, or the switch and the
// record would disagree.
func undoContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
}

func (c *Controller) saveTraffic(ctx context.Context, rec TrafficState) error {
	rec.UpdatedAt = c.now().UTC()
	// Written even when the caller's context is ending: the switch has
	// changed already, and the record must follow it.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	if err := c.store.PutTraffic(sctx, rec); err != nil {
		return fmt.Errorf("record traffic state of %s: %w", rec.Service, err)
	}
	return nil
}

// trafficView joins what the switch reports with the record; nil in
// reload mode. When the switch cannot report (it does not serve the
// service yet) the view shows what was asked for.
func (c *Controller) trafficView(ctx context.Context, service string, rec TrafficState) *TrafficView {
	if c.traffic == nil {
		return nil
	}
	v := &TrafficView{Mode: TrafficModeSwitch}
	st, err := c.traffic.Status(ctx, service)
	if err != nil {
		c.log.WithField("service", service).WithError(err).Debug("traffic status")
		v.Paused, v.PausedSince, v.MaxHold, v.MaxHeld = rec.Paused, rec.PausedSince, rec.MaxHold, rec.MaxHeld
		v.Maintenance, v.MaintenanceSince, v.Message = rec.Maintenance, rec.MaintenanceSince, rec.Message
		return v
	}
	v.TrafficStatus = st
	// A restart applies the pause again, and the switch's clock starts
	// anew; the record remembers when the operator asked.
	if st.Paused && rec.Paused && !rec.PausedSince.IsZero() {
		v.PausedSince = rec.PausedSince
	}
	if st.Maintenance && rec.Maintenance && !rec.MaintenanceSince.IsZero() {
		v.MaintenanceSince = rec.MaintenanceSince
	}
	return v
}

// restoreTraffic makes the switch's pause and maintenance what the
// store records, after a start, within today's limits. The switch may
// outlive the daemon (it runs in its own process) and keep its own state,
// so it converges both ways: it pauses or turns maintenance on where the
// record says so and the switch is not, and resumes or turns maintenance
// off where the switch is and the record is not. What already agrees is
// left alone; calling it again changes nothing. In reload mode it only
// warns: nothing there can hold a request.
func (c *Controller) restoreTraffic(ctx context.Context, service string) error {
	rec, err := c.trafficRecord(ctx, service)
	if err != nil {
		return err
	}
	log := c.log.WithFields(logrus.Fields{"service": service, "paused": rec.Paused, "maintenance": rec.Maintenance})
	if c.traffic == nil {
		if rec.Paused || rec.Maintenance {
			log.Warn("the service was paused or in maintenance under traffic.mode: switch; in reload mode neither applies")
		}
		return nil
	}
	st, err := c.traffic.Status(ctx, service)
	if err != nil && ErrorCode(err) != ENOTFOUND {
		return fmt.Errorf("traffic status of %s: %w", service, err)
	}
	// A switch that does not know the service is neither paused nor in
	// maintenance: st stays zero.
	changed := false

	switch {
	case rec.Maintenance && !(st.Maintenance && rec.Message != "" && st.Message == rec.Message):
		// "" is the switch's default text, which only the switch knows:
		// setting it again is harmless, comparing it is not possible.
		if err := c.traffic.Maintenance(ctx, service, true, rec.Message); err != nil {
			return fmt.Errorf("restore maintenance of %s: %w", service, err)
		}
		changed = true
	case !rec.Maintenance && st.Maintenance:
		if err := c.traffic.Maintenance(ctx, service, false, ""); err != nil {
			return fmt.Errorf("end the unrecorded maintenance of %s: %w", service, err)
		}
		changed = true
	}

	switch {
	case rec.Paused && !st.Paused:
		maxHold, maxHeld := min(rec.MaxHold, c.pause.MaxHold), min(rec.MaxHeld, c.pause.MaxHeld)
		if maxHold <= 0 || maxHeld <= 0 {
			maxHold, maxHeld = c.pause.MaxHold, c.pause.MaxHeld
		}
		// ECONFLICT: paused meanwhile, which is what is wanted.
		if err := c.traffic.Pause(ctx, service, maxHold, maxHeld); err != nil && ErrorCode(err) != ECONFLICT {
			return fmt.Errorf("restore the pause of %s: %w", service, err)
		}
		changed = true
	case !rec.Paused && st.Paused:
		// ECONFLICT: resumed meanwhile, which is what is wanted.
		if err := c.traffic.Resume(ctx, service); err != nil && ErrorCode(err) != ECONFLICT {
			return fmt.Errorf("end the unrecorded pause of %s: %w", service, err)
		}
		changed = true
	}
	if changed {
		log.Info("traffic switch's pause and maintenance brought in line with the record")
	}
	return nil
}

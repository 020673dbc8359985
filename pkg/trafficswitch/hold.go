package trafficswitch

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxMessageLen bounds a maintenance message, in bytes.
const MaxMessageLen = 1024

// DefaultMaintenanceMessage is answered when Maintenance gets "".
const DefaultMaintenanceMessage = "This service is down for maintenance. Please try again later."

const noTargetsBody = "503 Service Unavailable: the service has no replica to send this request to.\n"

// hold is a pause: requests wait on released, each for at most maxHold,
// at most maxHeld at a time.
type hold struct {
	since      time.Time
	maxHold    time.Duration
	maxHeld    int64
	retryAfter string
	held       atomic.Int64

	once     sync.Once
	released chan struct{}
	shutdown bool // set before released is closed by Close
}

// release lets the held requests go: on to the replicas, or, when the
// Switch is closing, away with a 503.
func (h *hold) release(shutdown bool) {
	h.once.Do(func() {
		h.shutdown = shutdown
		close(h.released)
	})
}

// maintenance is the answer every request gets while it is on.
type maintenance struct {
	since   time.Time
	message string
	body    string
}

// Pause holds the service's new requests until Resume: each waits at most
// maxHold, and at most maxHeld wait at once; past either limit a request
// gets a 503 with Retry-After (maxHold, rounded up to seconds). Requests
// already forwarded are not affected. The pause itself lasts until Resume.
//
// Errors: ErrInvalid when maxHold or maxHeld is not positive, ErrConflict
// when the service is already paused, ErrNotFound, ErrClosed.
func (sw *Switch) Pause(service string, maxHold time.Duration, maxHeld int) error {
	h, err := newHold(maxHold, maxHeld)
	if err != nil {
		return err
	}
	s, err := sw.serviceFor(service, false)
	if err != nil {
		return err
	}
	if !s.hold.CompareAndSwap(nil, h) {
		return fmt.Errorf("pause %s: %w: already paused", service, ErrConflict)
	}
	return nil
}

func newHold(maxHold time.Duration, maxHeld int) (*hold, error) {
	if maxHold <= 0 {
		return nil, fmt.Errorf("%w: the hold's maximum time must be positive, got %s", ErrInvalid, maxHold)
	}
	if maxHeld <= 0 {
		return nil, fmt.Errorf("%w: the hold's limit of requests must be positive, got %d", ErrInvalid, maxHeld)
	}
	return &hold{
		since:      time.Now(),
		maxHold:    maxHold,
		maxHeld:    int64(maxHeld),
		retryAfter: strconv.Itoa(int(math.Ceil(maxHold.Seconds()))),
		released:   make(chan struct{}),
	}, nil
}

// Resume ends the service's pause; the held requests go on to the active
// target set as it is now (so a switch made during the pause applies to
// them). Errors: ErrConflict when the service is not paused, ErrNotFound,
// ErrClosed.
func (sw *Switch) Resume(service string) error {
	s, err := sw.serviceFor(service, false)
	if err != nil {
		return err
	}
	h := s.hold.Swap(nil)
	if h == nil {
		return fmt.Errorf("resume %s: %w: not paused", service, ErrConflict)
	}
	h.release(false)
	return nil
}

// Maintenance turns the service's maintenance answer on (every request
// gets a 503 with message as a text page, "" meaning
// DefaultMaintenanceMessage) or off. Turning it on again replaces the
// message. It takes precedence over a pause.
//
// Errors: ErrInvalid for a message longer than MaxMessageLen bytes, not
// UTF-8, or holding control characters (newlines included); ErrNotFound,
// ErrClosed.
func (sw *Switch) Maintenance(service string, on bool, message string) error {
	if on {
		if err := ValidateMessage(message); err != nil {
			return err
		}
	}
	s, err := sw.serviceFor(service, false)
	if err != nil {
		return err
	}
	if !on {
		s.maint.Store(nil)
		return nil
	}
	if message == "" {
		message = DefaultMaintenanceMessage
	}
	s.maint.Store(&maintenance{since: time.Now(), message: message, body: message + "\n"})
	return nil
}

// ValidateMessage checks a maintenance message as Maintenance does, for
// callers that validate input before acting (an API handler answering
// 400).
func ValidateMessage(message string) error {
	if len(message) > MaxMessageLen {
		return fmt.Errorf("%w: maintenance message has %d bytes, at most %d allowed", ErrInvalid, len(message), MaxMessageLen)
	}
	if !utf8.ValidString(message) {
		return fmt.Errorf("%w: maintenance message is not valid UTF-8", ErrInvalid)
	}
	for i, r := range message {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: maintenance message has a control character (%U) at byte %d", ErrInvalid, r, i)
		}
	}
	return nil
}

// admit applies maintenance and the hold. It returns false when it has
// answered the request itself (or the client left while held).
func (s *service) admit(w http.ResponseWriter, r *http.Request) bool {
	for waits := 0; ; waits++ {
		if m := s.maint.Load(); m != nil {
			s.reject(w, rejectMaintenance, m.body, "")
			return false
		}
		h := s.hold.Load()
		if h == nil {
			return true
		}
		// A request released from one pause into the next waits once
		// more; beyond that it is turned away, not held without end.
		if waits == 2 {
			s.reject(w, rejectHoldTimeout, holdBody, h.retryAfter)
			return false
		}
		if !s.wait(w, r, h) {
			return false
		}
	}
}

const (
	holdBody     = "503 Service Unavailable: the service is paused. Please try again shortly.\n"
	shutdownBody = "503 Service Unavailable: the traffic switch is restarting. Please try again.\n"
)

// wait holds the request until h is released (true), or answers it a 503
// past h's limits (false).
func (s *service) wait(w http.ResponseWriter, r *http.Request, h *hold) bool {
	if h.held.Add(1) > h.maxHeld {
		h.held.Add(-1)
		s.reject(w, rejectHoldLimit, holdBody, h.retryAfter)
		return false
	}
	defer h.held.Add(-1)
	t := time.NewTimer(h.maxHold)
	defer t.Stop()
	select {
	case <-h.released:
		if h.shutdown {
			s.reject(w, rejectShutdown, shutdownBody, "1")
			return false
		}
		return true
	case <-t.C:
		s.reject(w, rejectHoldTimeout, holdBody, h.retryAfter)
		return false
	case <-r.Context().Done():
		s.m.rejected[rejectClientGone].Inc()
		return false
	}
}

// rejection says why the switch answered a request without forwarding it:
// the reason label of deployd_switch_rejected_total.
type rejection int

const (
	rejectMaintenance rejection = iota
	rejectHoldLimit
	rejectHoldTimeout
	rejectNoTargets
	rejectShutdown
	rejectClientGone // left while held: nothing was answered
	numRejections
)

func (r rejection) String() string {
	switch r {
	case rejectMaintenance:
		return "maintenance"
	case rejectHoldLimit:
		return "hold_limit"
	case rejectHoldTimeout:
		return "hold_timeout"
	case rejectNoTargets:
		return "no_targets"
	case rejectShutdown:
		return "shutdown"
	case rejectClientGone:
		return "client_gone"
	}
	return "unknown"
}

// reject answers a 503 the switch makes itself and counts it.
func (s *service) reject(w http.ResponseWriter, why rejection, body, retryAfter string) {
	s.m.rejected[why].Inc()
	writePlain(w, http.StatusServiceUnavailable, retryAfter, body)
}

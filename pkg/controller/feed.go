package controller

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Types of the system feed's events.
const (
	FeedDeployment = "deployment" // a deployment's status changed
	FeedStep       = "step"       // a deployment's step started or ended
	FeedLog        = "log"        // a line of a deployment's output
	FeedService    = "service"    // a service's state changed: colors, health, pause, maintenance
	FeedContainers = "containers" // the service's containers, as the controller sees them, changed
	FeedNotice     = "notice"     // a Notification was sent
)

// DefaultFeedSize is how many events the system feed keeps for resuming
// clients when Options.FeedSize is zero.
const DefaultFeedSize = 4096

// ErrFeedLost says a FeedCursor cannot be resumed: it belongs to another
// process (deployd restarted) or the events after it are no longer kept.
// The reader must assume it missed events and read everything afresh.
var ErrFeedLost = errors.New("events after the cursor are lost")

// FeedEvent is one event of the system feed: what happened to any service.
// Fields that do not apply to a Type are empty.
type FeedEvent struct {
	// Seq numbers the events of this process's feed from 1, without gaps.
	Seq        uint64
	Time       time.Time
	Type       string
	Service    string
	Deployment string
	// Kind is the deployment's kind for deployment events and the
	// notification's kind for notices.
	Kind    string
	Image   string
	Status  string
	Actor   string
	Step    string
	Message string
}

// FeedCursor is a position in the system feed: the Seq of the last event
// read, in the feed of the process called Epoch. The zero cursor means
// "from now on".
type FeedCursor struct {
	Epoch string
	Seq   uint64
}

// String is the cursor's wire form, "<epoch>-<seq>".
func (c FeedCursor) String() string { return c.Epoch + "-" + strconv.FormatUint(c.Seq, 10) }

// ParseFeedCursor reads a cursor's wire form (String).
func ParseFeedCursor(s string) (FeedCursor, error) {
	epoch, seq, ok := strings.Cut(s, "-")
	if !ok || epoch == "" || strings.ContainsFunc(epoch, func(r rune) bool {
		return (r < '0' || r > '9') && (r < 'a' || r > 'z')
	}) {
		return FeedCursor{}, fmt.Errorf("feed cursor %q: want <epoch>-<seq>", s)
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return FeedCursor{}, fmt.Errorf("feed cursor %q: %w", s, err)
	}
	return FeedCursor{Epoch: epoch, Seq: n}, nil
}

// FeedPage is one read of the system feed.
type FeedPage struct {
	// Events are the kept events after the cursor, oldest first, of the
	// service asked for (all when none was).
	Events []FeedEvent
	// Next is the cursor for the next read: past Events and past the
	// events of other services that were skipped.
	Next FeedCursor
	// Changed is closed when an event is appended after Next.
	Changed <-chan struct{}
}

// systemFeed is a bounded ring of the latest FeedEvents. Appends never
// block on readers: they take the mutex for a copy and close changed,
// which is then replaced, as eventLog does.
type systemFeed struct {
	epoch string

	mu   sync.Mutex
	ring []FeedEvent // ring[(seq-1) % len(ring)] holds seq
	last uint64      // seq of the newest event; 0 before the first
	kept int         // how many events the ring holds
	// states are the last service messages publishState sent, so that
	// an unchanged state is not announced again.
	states  map[string]string
	changed chan struct{}
}

func newSystemFeed(epoch string, size int) *systemFeed {
	if size <= 0 {
		size = DefaultFeedSize
	}
	return &systemFeed{epoch: epoch, ring: make([]FeedEvent, size), states: map[string]string{}, changed: make(chan struct{})}
}

// append adds e with the next Seq and wakes the readers.
func (f *systemFeed) append(e FeedEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appendLocked(e)
}

func (f *systemFeed) appendLocked(e FeedEvent) {
	f.last++
	e.Seq = f.last
	f.ring[(e.Seq-1)%uint64(len(f.ring))] = e
	f.kept = min(f.kept+1, len(f.ring))
	close(f.changed)
	f.changed = make(chan struct{})
}

// appendState adds a service event with msg unless msg is what the last
// one said of the service.
func (f *systemFeed) appendState(e FeedEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if prev, ok := f.states[e.Service]; ok && prev == e.Message {
		return
	}
	f.states[e.Service] = e.Message
	f.appendLocked(e)
}

// since returns the events after cursor, of service when not "". A cursor
// of another epoch, one past the newest event, or one older than the
// oldest kept event is lost: the page then starts at the newest event and
// the error wraps ErrFeedLost.
func (f *systemFeed) since(cursor FeedCursor, service string) (FeedPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	head := FeedPage{Next: FeedCursor{Epoch: f.epoch, Seq: f.last}, Changed: f.changed}
	if cursor == (FeedCursor{}) {
		return head, nil
	}
	oldest := f.last - uint64(f.kept) + 1
	switch {
	case cursor.Epoch != f.epoch:
		return head, fmt.Errorf("%w: the cursor is of another deployd process (restarted)", ErrFeedLost)
	case cursor.Seq > f.last:
		return head, fmt.Errorf("%w: the cursor %s is ahead of the newest event", ErrFeedLost, cursor)
	case cursor.Seq+1 < oldest:
		return head, fmt.Errorf("%w: the events after %s are no longer kept", ErrFeedLost, cursor)
	}
	var out []FeedEvent
	for seq := cursor.Seq + 1; seq <= f.last; seq++ {
		e := f.ring[(seq-1)%uint64(len(f.ring))]
		if service == "" || e.Service == service {
			out = append(out, e)
		}
	}
	head.Events = out
	return head, nil
}

// Feed returns the events of the system feed after cursor, of one service
// or ("") all, for streaming every change of the system: the caller reads
// again with page.Next whenever page.Changed closes. The zero cursor reads
// from now on, with no events. It does not block.
//
// Errors: ENOTFOUND for an unknown service; ErrFeedLost (wrapped, saying
// why) when cursor cannot be resumed, with a page that starts at the
// newest event so the caller can go on after reading everything afresh.
func (c *Controller) Feed(cursor FeedCursor, service string) (FeedPage, error) {
	if service != "" {
		if _, err := c.spec(service); err != nil {
			return FeedPage{}, err
		}
	}
	return c.system.since(cursor, service)
}

// publish adds e to the system feed, stamped now when it has no time.
func (c *Controller) publish(e FeedEvent) {
	if e.Time.IsZero() {
		e.Time = c.now()
	}
	e.Time = e.Time.UTC()
	c.system.append(e)
}

// publishDeployment adds a deployment's progress event e to the system
// feed.
func (c *Controller) publishDeployment(d Deployment, e Event) {
	fe := FeedEvent{
		Time: e.Time, Service: d.Service, Deployment: d.ID,
		Step: e.Step, Status: e.Status, Message: e.Message,
	}
	switch e.Type {
	case EventStatus:
		fe.Type, fe.Kind, fe.Image, fe.Actor, fe.Step = FeedDeployment, string(d.Kind), d.Image, d.Trigger.Actor, ""
	case EventStep:
		fe.Type = FeedStep
	case EventLog:
		fe.Type = FeedLog
	default:
		return
	}
	c.publish(fe)
}

// publishService announces a change of a service's state, unless msg is
// what the last announcement of the service said.
func (c *Controller) publishService(service, msg string) {
	c.system.appendState(FeedEvent{Time: c.now().UTC(), Type: FeedService, Service: service, Message: msg})
}

// notify sends n to the Notifier and to the system feed. Every
// notification goes through here.
func (c *Controller) notify(n Notification) {
	c.notifier.Notify(n)
	c.publish(FeedEvent{
		Time: n.Time, Type: FeedNotice, Service: n.Service, Deployment: n.Deployment,
		Kind: n.Kind, Image: n.Image, Actor: n.Actor, Message: n.Message,
	})
}

// Package notify delivers controller notifications to webhooks (generic
// JSON and Slack-compatible incoming webhooks) in the background. Each
// target has its own queue, goroutine and retries, so a failing target
// never delays another; an Outbox keeps what is not delivered yet across
// restarts.
package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// Target types.
const (
	TypeWebhook = "webhook"
	TypeSlack   = "slack"
)

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>" when a
// target has a secret.
const SignatureHeader = "X-Deployd-Signature"

// ErrDropped is wrapped by Close's error when notifications were left
// undelivered that no outbox keeps.
var ErrDropped = errors.New("notifications dropped")

// Target is one place notifications go.
type Target struct {
	Name string
	// Type is TypeWebhook (the notification as a Payload) or TypeSlack
	// ({"text": "..."}).
	Type string
	// URL often holds a secret in its path (Slack's do); it is never
	// logged.
	URL string
	// Secret, when set, signs each body (see SignatureHeader).
	Secret []byte
	// Events lists the notification kinds the target wants; empty means
	// all.
	Events []string
}

func (t Target) wants(kind string) bool {
	if len(t.Events) == 0 {
		return true
	}
	for _, e := range t.Events {
		if e == kind {
			return true
		}
	}
	return false
}

// Options configures New.
type Options struct {
	Targets []Target
	Logger  logrus.FieldLogger
	// OnFailure, which may be nil, is called with a target's name for
	// every notification that target will never get: refused, failing
	// after retries, dropped on a full queue, too old when found in the
	// outbox, or left at shutdown without an outbox to keep it. It must
	// not block.
	OnFailure func(target string)
	// Outbox, which may be nil, keeps every notification until its target
	// has it (write-through: saved when queued, deleted when delivered or
	// given up), so that neither a shutdown nor a crash loses it.
	Outbox Outbox
	// MaxAge bounds how old a notification found in the outbox at start
	// may be and still be sent; 0 means DefaultMaxAge.
	MaxAge time.Duration
}

// settings are the delivery knobs; tests shorten the waits.
type settings struct {
	// queueSize bounds each target's queue, besides what the outbox held
	// at start.
	queueSize int
	// retryMax is how many times a failed delivery is retried, with
	// exponential backoff from retryWaitMin to retryWaitMax.
	retryMax       int
	retryWaitMin   time.Duration
	retryWaitMax   time.Duration
	requestTimeout time.Duration
	maxAge         time.Duration
	now            func() time.Time
}

func defaultSettings() settings {
	return settings{
		queueSize: 256,
		// About seven minutes of retries (1, 2, 4 ... 60, 60 s): a receiver
		// that restarts or has a short outage still gets everything, and
		// only this target's own queue waits meanwhile.
		retryMax:       12,
		retryWaitMin:   time.Second,
		retryWaitMax:   time.Minute,
		requestTimeout: 10 * time.Second,
		maxAge:         DefaultMaxAge,
		now:            time.Now,
	}
}

// Notifier queues notifications and delivers them from one goroutine per
// target, so Notify never waits for the network and a failing target
// never delays another. Create it with New and stop it with Close.
type Notifier struct {
	log       logrus.FieldLogger
	onFailure func(target string)
	outbox    Outbox
	s         settings
	workers   []*worker

	// storeCtx carries outbox calls. Close never cancels it: a delivery
	// that succeeds at the last moment must still be crossed off.
	storeCtx context.Context
	// sendCtx bounds every request; Close cancels it when its own
	// deadline runs out, so a slow receiver cannot hold shutdown.
	sendCtx    context.Context
	cancelSend context.CancelFunc
	// stopping ends when Close is called: workers stop retrying, retries
	// in flight are cut short, and what is queued is tried once.
	stopping context.Context
	stop     context.CancelFunc
	wg       sync.WaitGroup
	done     chan struct{}

	// mu orders Notify's queueing before Close: once closed is set,
	// nothing more is queued, so the workers' last look at their queues
	// sees everything.
	mu     sync.RWMutex
	closed bool
	// dropped counts what shutdown left undelivered and no outbox keeps.
	dropped atomic.Int64
}

var _ controller.Notifier = (*Notifier)(nil)

// item is one notification on its way to one target.
type item struct {
	// id is the notification's id in the outbox; "" when only memory
	// holds it (no outbox, or saving failed).
	id   string
	note controller.Notification
}

// New starts a Notifier delivering to o.Targets, beginning with what
// o.Outbox kept from earlier runs (see Options.MaxAge). ctx bounds that
// read of the outbox only; the Notifier runs until Close.
func New(ctx context.Context, o Options) *Notifier {
	return newNotifier(ctx, o, defaultSettings())
}

func newNotifier(ctx context.Context, o Options, s settings) *Notifier {
	if o.MaxAge > 0 {
		s.maxAge = o.MaxAge
	}
	onFailure := o.OnFailure
	if onFailure == nil {
		onFailure = func(string) {}
	}
	// The Notifier outlives ctx (the daemon's, which ends at SIGTERM,
	// before the last notifications are sent).
	life := context.WithoutCancel(ctx)
	sendCtx, cancelSend := context.WithCancel(life)
	stopping, stop := context.WithCancel(sendCtx)
	n := &Notifier{
		log:        o.Logger,
		onFailure:  onFailure,
		outbox:     o.Outbox,
		s:          s,
		storeCtx:   life,
		sendCtx:    sendCtx,
		cancelSend: cancelSend,
		stopping:   stopping,
		stop:       stop,
		done:       make(chan struct{}),
	}
	for _, t := range o.Targets {
		t.Secret = append([]byte(nil), t.Secret...)
		t.Events = append([]string(nil), t.Events...)
		n.workers = append(n.workers, newWorker(t, s.requestTimeout))
	}
	n.restore(ctx)
	for _, w := range n.workers {
		// Room for the backlog from the outbox, so none of it is dropped.
		w.queue = make(chan item, s.queueSize+len(w.backlog))
		for _, it := range w.backlog {
			w.queue <- it
		}
		w.backlog = nil
		n.wg.Add(1)
		go n.run(w)
	}
	go func() {
		n.wg.Wait()
		close(n.done)
	}()
	return n
}

// Notify queues note for every target that wants its kind.
//
// With an Outbox, Notify first saves note there, and only then returns:
// one small transaction for all targets, the cost of one deployment record
// (which a deploy has just written when it notifies), so that even kill -9
// right after a deploy ends loses no notification. It never waits for the
// network. If saving fails, note is still delivered from memory and the
// failure is logged.
//
// A full queue gives note up for that target (logged and counted); after
// Close, note stays in the outbox for the next start, or is dropped
// (logged and counted) when no outbox holds it.
func (n *Notifier) Notify(note controller.Notification) {
	if note.Time.IsZero() {
		note.Time = n.s.now().UTC()
	}
	var ws []*worker
	var names []string
	for _, w := range n.workers {
		if w.wants(note.Kind) {
			ws = append(ws, w)
			names = append(names, w.Name)
		}
	}
	if len(ws) == 0 {
		return
	}
	it := item{id: n.save(names, note), note: note}

	var full []*worker
	n.mu.RLock()
	closed := n.closed
	if !closed {
		for _, w := range ws {
			select {
			case w.queue <- it:
			default:
				full = append(full, w)
			}
		}
	}
	n.mu.RUnlock()

	if closed {
		for _, w := range ws {
			if n.leave(w.Name, it, "the notifier is closed") {
				n.noteLog(w.Name, note).Info("notification after shutdown kept in the store; it is sent after the next start")
			}
		}
		return
	}
	for _, w := range full {
		n.giveUp(w.Name, it, errors.New("its queue is full"))
	}
}

// save writes note to the outbox for targets and returns its id, or ""
// when there is no outbox or it failed.
func (n *Notifier) save(targets []string, note controller.Notification) string {
	if n.outbox == nil {
		return ""
	}
	id, err := n.outbox.AddNotification(n.storeCtx, targets, note)
	if err != nil {
		n.log.WithError(err).WithFields(logrus.Fields{"kind": note.Kind, "service": note.Service}).
			Warn("notification not saved in the store; it is sent from memory and lost if deployd stops first")
		return ""
	}
	return id
}

// giveUp is the end of a notification target will never get: logged,
// counted, and removed from the outbox.
func (n *Notifier) giveUp(target string, it item, err error) {
	n.noteLog(target, it.note).WithError(err).Warn("notification not delivered; given up")
	n.onFailure(target)
	n.forget(target, it)
}

// leave is shutdown's word on a notification not delivered yet: true when
// the outbox keeps it for the next start; otherwise it is dropped, logged
// and counted.
func (n *Notifier) leave(target string, it item, why string) (kept bool) {
	if it.id != "" {
		return true
	}
	n.noteLog(target, it.note).Warnf("notification dropped: %s", why)
	n.onFailure(target)
	n.dropped.Add(1)
	return false
}

func (n *Notifier) noteLog(target string, note controller.Notification) logrus.FieldLogger {
	f := logrus.Fields{"target": target, "kind": note.Kind, "service": note.Service}
	if note.Deployment != "" {
		f["deployment"] = note.Deployment
	}
	return n.log.WithFields(f)
}

// Close stops taking notifications and returns once every worker has
// stopped. Retries end at once (a retry goes to a target that just failed,
// and shutdown must not wait for it); what is queued is tried once each,
// until a target fails or ctx ends, which also cuts requests in flight
// short. What is left stays in the outbox and is sent after the next
// start. Close returns an error wrapping ErrDropped (and ctx's error when
// it ran out) when it left notifications that no outbox holds; those are
// logged and counted too.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.stop()
	var ctxErr error
	select {
	case <-n.done:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		n.cancelSend()
		<-n.done
	}
	n.cancelSend()
	for _, w := range n.workers {
		w.client.CloseIdleConnections()
	}
	if d := n.dropped.Load(); d > 0 {
		if ctxErr != nil {
			return fmt.Errorf("notify: %d notifications not delivered at shutdown: %w: %w", d, ErrDropped, ctxErr)
		}
		return fmt.Errorf("notify: %d notifications not delivered at shutdown: %w", d, ErrDropped)
	}
	return nil
}

// newWorker prepares a target's client: its own connection pool, so a
// target that hangs holds none of another's connections.
func newWorker(t Target, timeout time.Duration) *worker {
	var rt http.RoundTripper
	if tr, ok := http.DefaultTransport.(*http.Transport); ok {
		rt = tr.Clone()
	}
	return &worker{Target: t, client: &http.Client{Timeout: timeout, Transport: rt}}
}

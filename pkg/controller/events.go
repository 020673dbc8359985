package controller

import (
	"context"
	"strings"
	"sync"
	"time"
)

// Event types of a deployment's progress stream.
const (
	EventStep   = "step"   // a step started or ended; Status is the step's
	EventLog    = "log"    // a line the deploy produced (pull, pre-deploy output, probes)
	EventStatus = "status" // the deployment's status changed; the last event has a final one
)

// Event is one entry of a deployment's progress stream.
type Event struct {
	Seq     int
	Time    time.Time
	Type    string
	Step    string
	Status  string
	Message string
}

// keptEventLogs is how many finished deployments keep their full event
// stream in memory; older ones are rebuilt from their stored record.
const keptEventLogs = 64

// maxEventsPerLog bounds one deployment's stream; a runaway log (a health
// check failing for an hour) keeps its first lines and its final events.
const maxEventsPerLog = 5000

// eventLog is one deployment's stream. Readers wait on changed, which is
// closed and replaced on every append.
type eventLog struct {
	mu      sync.Mutex
	events  []Event
	done    bool
	dropped int
	changed chan struct{}
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

func (l *eventLog) append(e Event, final bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	if len(l.events) >= maxEventsPerLog && !final && e.Type == EventLog {
		l.dropped++
		return
	}
	e.Seq = len(l.events) + 1
	l.events = append(l.events, e)
	l.done = final
	close(l.changed)
	l.changed = make(chan struct{})
}

// since returns the events after seq, a channel closed at the next append
// and whether the stream has ended.
func (l *eventLog) since(seq int) ([]Event, <-chan struct{}, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq < 0 {
		seq = 0
	}
	var out []Event
	if seq < len(l.events) {
		out = append(out, l.events[seq:]...)
	}
	return out, l.changed, l.done
}

// eventHub holds the streams of running and recently finished deployments.
type eventHub struct {
	mu       sync.Mutex
	logs     map[string]*eventLog
	finished []string // ids in the order they finished, oldest first
}

func newEventHub() *eventHub { return &eventHub{logs: map[string]*eventLog{}} }

func (h *eventHub) open(id string) *eventLog {
	h.mu.Lock()
	defer h.mu.Unlock()
	l, ok := h.logs[id]
	if !ok {
		l = newEventLog()
		h.logs[id] = l
	}
	return l
}

func (h *eventHub) get(id string) *eventLog {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.logs[id]
}

// retire marks id finished and forgets the oldest finished streams.
func (h *eventHub) retire(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.finished = append(h.finished, id)
	for len(h.finished) > keptEventLogs {
		delete(h.logs, h.finished[0])
		h.finished = h.finished[1:]
	}
}

// Events returns the events of deployment id after seq (0: from the start),
// a channel that is closed when more may be available, and whether the
// stream is complete. A caller streams by calling it again with the last
// Seq it saw whenever the channel closes. Deployments that finished long
// ago, or before this process started, get a stream rebuilt from their
// record. ENOTFOUND when there is no such deployment.
func (c *Controller) Events(ctx context.Context, id string, seq int) ([]Event, <-chan struct{}, bool, error) {
	if l := c.events.get(id); l != nil {
		evs, changed, done := l.since(seq)
		return evs, changed, done, nil
	}
	d, err := c.Deployment(ctx, id)
	if err != nil {
		return nil, nil, false, err
	}
	all := eventsFromRecord(d)
	if seq < 0 {
		seq = 0
	}
	var out []Event
	if seq < len(all) {
		out = all[seq:]
	}
	closed := make(chan struct{})
	close(closed)
	// A deployment of another process that never finished is reported as
	// it stands; its stream is complete as far as this process can tell.
	return out, closed, true, nil
}

// eventsFromRecord rebuilds a deployment's stream from its stored record:
// each step's start and end with the step's output as log lines, then the
// deployment's status.
func eventsFromRecord(d Deployment) []Event {
	var evs []Event
	add := func(e Event) {
		e.Seq = len(evs) + 1
		evs = append(evs, e)
	}
	add(Event{Time: d.CreatedAt, Type: EventStatus, Status: StatusQueued.String()})
	for _, s := range d.Steps {
		add(Event{Time: s.StartedAt, Type: EventStep, Step: s.Name, Status: StepRunning.String()})
		for _, line := range OutputLines(s.Output) {
			add(Event{Time: s.StartedAt, Type: EventLog, Step: s.Name, Message: line})
		}
		if s.FinishedAt != nil {
			add(Event{Time: *s.FinishedAt, Type: EventStep, Step: s.Name, Status: s.Status.String(), Message: s.Message})
		}
	}
	if d.Status.Done() {
		t := d.CreatedAt
		if d.FinishedAt != nil {
			t = *d.FinishedAt
		}
		add(Event{Time: t, Type: EventStatus, Status: d.Status.String(), Message: d.Error})
	}
	return evs
}

// OutputLines splits a step's recorded output (Step.Output) into its
// lines, without the empty one after a final newline; nil for no output.
func OutputLines(out string) []string {
	out = strings.TrimRight(out, "\n")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

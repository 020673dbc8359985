package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/deployd/deployd/pkg/controller"
)

// feedHeartbeatInterval is the default of Options.FeedHeartbeat: the
// status page tells a live stream from a dead one by its heartbeats.
const feedHeartbeatInterval = 5 * time.Second

// Event names of GET /api/v1/events beside the controller's feed types.
const (
	feedHello     = "hello"
	feedReset     = "reset"
	feedHeartbeat = "heartbeat"
)

// The data of the system stream's events, one type per event name. Every
// listed field is always present, empty or not, so clients need no
// guesses about missing ones.
type (
	// FeedHello is the first event of every connection.
	FeedHello struct {
		Type        string    `json:"type"`
		Time        time.Time `json:"time"`
		Resumed     bool      `json:"resumed"`
		HeartbeatMS int64     `json:"heartbeat_ms"`
	}
	// FeedReset follows hello when the Last-Event-ID could not be
	// resumed: the client must read everything afresh.
	FeedReset struct {
		Type   string    `json:"type"`
		Time   time.Time `json:"time"`
		Reason string    `json:"reason"`
	}
	// FeedTick is the heartbeat event's data.
	FeedTick struct {
		Type string    `json:"type"`
		Time time.Time `json:"time"`
	}
	// FeedDeployment is a deployment's status change.
	FeedDeployment struct {
		Type       string    `json:"type"`
		Time       time.Time `json:"time"`
		Service    string    `json:"service"`
		Deployment string    `json:"deployment"`
		Kind       string    `json:"kind"`
		Image      string    `json:"image"`
		Status     string    `json:"status"`
		Actor      string    `json:"actor"`
		Message    string    `json:"message"`
	}
	// FeedStep is a deployment's step starting or ending.
	FeedStep struct {
		Type       string    `json:"type"`
		Time       time.Time `json:"time"`
		Service    string    `json:"service"`
		Deployment string    `json:"deployment"`
		Step       string    `json:"step"`
		Status     string    `json:"status"`
		Message    string    `json:"message"`
	}
	// FeedLog is one line of a deployment's output.
	FeedLog struct {
		Type       string    `json:"type"`
		Time       time.Time `json:"time"`
		Service    string    `json:"service"`
		Deployment string    `json:"deployment"`
		Step       string    `json:"step"`
		Message    string    `json:"message"`
	}
	// FeedService is a change of a service's state.
	FeedService struct {
		Type    string    `json:"type"`
		Time    time.Time `json:"time"`
		Service string    `json:"service"`
		Message string    `json:"message"`
	}
	// FeedContainers says the service's containers changed.
	FeedContainers struct {
		Type    string    `json:"type"`
		Time    time.Time `json:"time"`
		Service string    `json:"service"`
	}
	// FeedNotice is a notification as it was sent.
	FeedNotice struct {
		Type       string    `json:"type"`
		Time       time.Time `json:"time"`
		Service    string    `json:"service"`
		Kind       string    `json:"kind"`
		Deployment string    `json:"deployment"`
		Actor      string    `json:"actor"`
		Message    string    `json:"message"`
	}
)

// feedData is the JSON of one feed event; ok is false for a type this
// server does not know, which is not sent.
func feedData(e controller.FeedEvent) (data any, ok bool) {
	t := e.Time.UTC()
	switch e.Type {
	case controller.FeedDeployment:
		return FeedDeployment{Type: e.Type, Time: t, Service: e.Service, Deployment: e.Deployment, Kind: e.Kind,
			Image: e.Image, Status: e.Status, Actor: e.Actor, Message: e.Message}, true
	case controller.FeedStep:
		return FeedStep{Type: e.Type, Time: t, Service: e.Service, Deployment: e.Deployment, Step: e.Step,
			Status: e.Status, Message: e.Message}, true
	case controller.FeedLog:
		return FeedLog{Type: e.Type, Time: t, Service: e.Service, Deployment: e.Deployment, Step: e.Step,
			Message: e.Message}, true
	case controller.FeedService:
		return FeedService{Type: e.Type, Time: t, Service: e.Service, Message: e.Message}, true
	case controller.FeedContainers:
		return FeedContainers{Type: e.Type, Time: t, Service: e.Service}, true
	case controller.FeedNotice:
		return FeedNotice{Type: e.Type, Time: t, Service: e.Service, Kind: e.Kind, Deployment: e.Deployment,
			Actor: e.Actor, Message: e.Message}, true
	}
	return nil, false
}

// systemEvents is GET /api/v1/events: every service's events (or one's,
// with ?service=) as Server-Sent Events, live until the client leaves or
// the server shuts down. A Last-Event-ID (or ?after=) of this process's
// stream replays the kept events after it; any other is answered with a
// reset event.
func (s *Server) systemEvents(c *fiber.Ctx) error {
	service := c.Query("service")
	var cursor controller.FeedCursor
	reset := ""
	// A browser's first connection cannot send Last-Event-ID; the status
	// page passes the cursor it was rendered at as ?after= instead, so
	// that nothing between the render and the stream is lost.
	raw, from := c.Get("Last-Event-ID"), "Last-Event-ID"
	if raw == "" {
		raw, from = c.Query("after"), "after"
	}
	if raw != "" {
		var err error
		if cursor, err = controller.ParseFeedCursor(raw); err != nil {
			reset = "malformed " + from
		}
	}
	// Read here so that an unknown service is a plain JSON 404.
	page, err := s.ctl.Feed(cursor, service)
	if errors.Is(err, controller.ErrFeedLost) {
		reset, err = err.Error(), nil
	}
	if err != nil {
		return err
	}
	release, err := s.slots.acquire(c, TokenName(c))
	if err != nil {
		s.log.WithFields(requestFields(c)).WithError(err).Warn("event stream refused")
		return err
	}

	log := s.log.WithFields(requestFields(c))
	if service != "" {
		log = log.WithField("service", service)
	}
	st := newSSEStream(s, c, s.feedHeartbeat, log)
	now := time.Now().UTC()
	resumed := raw != "" && reset == ""
	// hello's id is where the client stands: were it the newest event's,
	// a connection lost during the replay would skip the rest of it.
	at := page.Next
	if resumed {
		at = cursor
	}
	first := []sseFrame{{id: at.String(), event: feedHello, data: FeedHello{
		Type: feedHello, Time: now, Resumed: resumed, HeartbeatMS: s.feedHeartbeat.Milliseconds(),
	}}}
	if reset != "" {
		first = append(first, sseFrame{id: page.Next.String(), event: feedReset,
			data: FeedReset{Type: feedReset, Time: now, Reason: reset}})
	}
	src := &feedSource{ctl: s.ctl, service: service, first: first, page: page}
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer release()
		st.run(w, src)
	})
	return nil
}

// feedSource reads the system feed from a cursor on.
type feedSource struct {
	ctl     Controller
	service string
	// first holds hello (and reset) until the first next; page is the
	// read the handler made.
	first   []sseFrame
	page    controller.FeedPage
	fetched bool
}

func (f *feedSource) next(ctx context.Context) ([]sseFrame, <-chan struct{}, bool, error) {
	frames := f.first
	if f.fetched {
		page, err := f.ctl.Feed(f.page.Next, f.service)
		switch {
		case errors.Is(err, controller.ErrFeedLost):
			// Only a reader slower than the whole ring loses its place;
			// it is told to start afresh rather than shown a gap.
			frames = append(frames, sseFrame{id: page.Next.String(), event: feedReset,
				data: FeedReset{Type: feedReset, Time: time.Now().UTC(), Reason: err.Error()}})
		case err != nil:
			return nil, nil, false, fmt.Errorf("read the system feed: %w", err)
		}
		f.page = page
	}
	f.first, f.fetched = nil, true
	for _, e := range f.page.Events {
		if data, ok := feedData(e); ok {
			frames = append(frames, sseFrame{id: controller.FeedCursor{Epoch: f.page.Next.Epoch, Seq: e.Seq}.String(),
				event: e.Type, data: data})
		}
	}
	return frames, f.page.Changed, false, nil
}

// heartbeat carries the stream's position as its id, so that a client
// that reconnects after events of other services were skipped resumes
// past them.
func (f *feedSource) heartbeat() sseFrame {
	return sseFrame{id: f.page.Next.String(), event: feedHeartbeat, data: FeedTick{Type: feedHeartbeat, Time: time.Now().UTC()}}
}

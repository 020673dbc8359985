package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

const (
	// heartbeatInterval is how often an idle stream sends a comment: it
	// keeps proxies from closing the connection and finds departed clients.
	heartbeatInterval = 15 * time.Second
	// eventsCallTimeout bounds each Events call of a running stream.
	eventsCallTimeout = 10 * time.Second
)

// deploymentEvents is GET /api/v1/deployments/:id/events: the deployment's
// progress as Server-Sent Events, history first, then live, until the
// stream is complete, the client leaves or the server shuts down.
func (s *Server) deploymentEvents(c *fiber.Ctx) error {
	id := c.Params("id")
	seq := 0
	if raw := c.Get("Last-Event-ID"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			return controller.Errorf(controller.EINVALID, "Last-Event-ID must be a non-negative integer, got %q", raw)
		}
		seq = n
	}
	// The first batch is fetched here so that an unknown id is a plain
	// JSON 404 rather than a stream that ends at once.
	evs, changed, done, err := s.ctl.Events(c.UserContext(), id, seq)
	if err != nil {
		return err
	}
	release, err := s.slots.acquire(c, TokenName(c))
	if err != nil {
		s.log.WithFields(requestFields(c)).WithError(err).Warn("event stream refused")
		return err
	}

	st := newSSEStream(s, c, s.heartbeat, s.log.WithFields(requestFields(c)).WithField("deployment", id))
	src := &deploymentSource{ctl: s.ctl, id: id, seq: seq, first: evs, changed: changed, done: done}
	// fasthttp runs the writer on a goroutine of its own, even when the
	// response is never sent, and the writer's end frees the slot.
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer release()
		st.run(w, src)
	})
	return nil
}

// setStreamHeaders marks the response as an event stream.
func setStreamHeaders(c *fiber.Ctx) {
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-store")
	// nginx in front would otherwise buffer the stream.
	c.Set("X-Accel-Buffering", "no")
}

// sseFrame is one Server-Sent Event, or a comment when comment is set.
type sseFrame struct {
	id, event string
	data      any
	comment   string
}

// streamSource is what an event stream reads. next runs on the stream's
// goroutine only.
type streamSource interface {
	// next returns the frames to send now, a channel closed when more may
	// be available, and whether the stream is complete after them.
	next(ctx context.Context) (frames []sseFrame, changed <-chan struct{}, done bool, err error)
	// heartbeat is what an idle stream sends every heartbeat interval.
	heartbeat() sseFrame
}

// sseStream is one client's stream. run executes on fasthttp's stream
// goroutine after the handler returned, so it uses only the server's
// lifetime, never the request's context.
type sseStream struct {
	s        *Server
	conn     net.Conn
	interval time.Duration
	log      logrus.FieldLogger
}

func newSSEStream(s *Server, c *fiber.Ctx, interval time.Duration, log logrus.FieldLogger) *sseStream {
	setStreamHeaders(c)
	return &sseStream{s: s, conn: c.Context().Conn(), interval: interval, log: log}
}

// run writes what src has, and then what follows, until src says the
// stream is complete, the client goes away or the server shuts down.
// Write errors mean the client went away; they end the stream quietly.
func (st *sseStream) run(w *bufio.Writer, src streamSource) {
	heartbeat := time.NewTicker(st.interval)
	defer heartbeat.Stop()
	for {
		ctx, cancel := context.WithTimeout(st.s.streams, eventsCallTimeout)
		frames, changed, done, err := src.next(ctx)
		cancel()
		if err != nil {
			if st.s.streams.Err() == nil {
				st.log.WithError(err).Warn("read events; ending the stream")
			}
			return
		}
		if err := st.write(w, frames...); err != nil {
			st.log.WithError(err).Debug("event stream ended")
			return
		}
		if done || !st.idle(w, src, heartbeat.C, changed) {
			return
		}
	}
}

// idle sends heartbeats until changed closes, and says whether the stream
// goes on: false once the server shuts down or the client went away.
func (st *sseStream) idle(w *bufio.Writer, src streamSource, heartbeat <-chan time.Time, changed <-chan struct{}) bool {
	for {
		select {
		case <-st.s.streams.Done():
			return false
		case <-changed:
			return true
		case <-heartbeat:
			if err := st.write(w, src.heartbeat()); err != nil {
				st.log.WithError(err).Debug("event stream ended")
				return false
			}
		}
	}
}

// write sends frames and flushes them, if there are any.
func (st *sseStream) write(w *bufio.Writer, frames ...sseFrame) error {
	if len(frames) == 0 {
		return nil
	}
	for _, f := range frames {
		if err := writeFrame(w, f); err != nil {
			return err
		}
	}
	return st.flush(w)
}

// flush pushes what is buffered to the client. fasthttp sets the write
// deadline once per response; each flush moves it, so a stream lives as
// long as its client reads while a stalled client still times out.
func (st *sseStream) flush(w *bufio.Writer) error {
	if st.conn != nil {
		if err := st.conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
			return fmt.Errorf("extend write deadline: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("flush events: %w", err)
	}
	return nil
}

// writeFrame writes one SSE event. JSON holds no raw newline, and the
// event name is one of our words; anything else becomes "message" so that
// no value can break the framing.
func writeFrame(w *bufio.Writer, f sseFrame) error {
	if f.comment != "" {
		_, err := fmt.Fprintf(w, ": %s\n\n", f.comment)
		return err
	}
	data, err := json.Marshal(f.data)
	if err != nil {
		return fmt.Errorf("marshal event %s: %w", f.id, err)
	}
	typ := f.event
	if typ == "" || strings.ContainsAny(typ, "\r\n:") {
		typ = "message"
	}
	if f.id != "" && !strings.ContainsAny(f.id, "\r\n") {
		if _, err := fmt.Fprintf(w, "id: %s\n", f.id); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data)
	return err
}

// deploymentSource reads one deployment's progress: the batch the handler
// fetched first, then whatever follows seq, until the final status.
type deploymentSource struct {
	ctl     Controller
	id      string
	seq     int
	first   []controller.Event
	changed <-chan struct{}
	done    bool
	fetched bool
}

func (d *deploymentSource) next(ctx context.Context) ([]sseFrame, <-chan struct{}, bool, error) {
	evs, changed, done := d.first, d.changed, d.done
	if d.fetched {
		var err error
		evs, changed, done, err = d.ctl.Events(ctx, d.id, d.seq)
		if err != nil {
			return nil, nil, false, fmt.Errorf("events of deployment %s: %w", d.id, err)
		}
	}
	d.fetched, d.first = true, nil
	frames := make([]sseFrame, 0, len(evs))
	for _, e := range evs {
		frames = append(frames, sseFrame{id: strconv.Itoa(e.Seq), event: e.Type, data: eventOf(e)})
		d.seq = e.Seq
	}
	return frames, changed, done, nil
}

// heartbeat is a comment: the deployment stream's clients know no
// heartbeat event.
func (d *deploymentSource) heartbeat() sseFrame { return sseFrame{comment: "heartbeat"} }

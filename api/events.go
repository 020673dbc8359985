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

	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-store")
	// nginx in front would otherwise buffer the stream.
	c.Set("X-Accel-Buffering", "no")
	st := &eventStream{
		s: s, id: id, conn: c.Context().Conn(),
		log: s.log.WithFields(requestFields(c)).WithField("deployment", id),
	}
	// fasthttp runs the writer on a goroutine of its own, even when the
	// response is never sent, and the writer's end frees the slot.
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer release()
		st.run(w, seq, evs, changed, done)
	})
	return nil
}

// eventStream is one client's stream. run executes on fasthttp's stream
// goroutine after the handler returned, so it uses only the server's
// lifetime, never the request's context.
type eventStream struct {
	s    *Server
	id   string
	conn net.Conn
	log  logrus.FieldLogger
}

// run writes evs and then whatever follows seq, until done. Write errors
// mean the client went away; they end the stream quietly.
func (st *eventStream) run(w *bufio.Writer, seq int, evs []controller.Event, changed <-chan struct{}, done bool) {
	heartbeat := time.NewTicker(st.s.heartbeat)
	defer heartbeat.Stop()
	for {
		for _, e := range evs {
			if err := writeEvent(w, e); err != nil {
				st.log.WithError(err).Debug("event stream ended")
				return
			}
			seq = e.Seq
		}
		if len(evs) > 0 && st.flush(w) != nil {
			return // the client went away
		}
		if done {
			return
		}
		select {
		case <-st.s.streams.Done():
			return
		case <-heartbeat.C:
			if _, err := w.WriteString(": heartbeat\n\n"); err != nil || st.flush(w) != nil {
				return
			}
			evs = nil
			continue
		case <-changed:
		}
		ctx, cancel := context.WithTimeout(st.s.streams, eventsCallTimeout)
		var err error
		evs, changed, done, err = st.s.ctl.Events(ctx, st.id, seq)
		cancel()
		if err != nil {
			if st.s.streams.Err() == nil {
				st.log.WithError(err).Warn("read deployment events; ending the stream")
			}
			return
		}
	}
}

// flush pushes what is buffered to the client. fasthttp sets the write
// deadline once per response; each flush moves it, so a stream lives as
// long as its client reads while a stalled client still times out.
func (st *eventStream) flush(w *bufio.Writer) error {
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

// writeEvent writes one SSE event. JSON holds no raw newline, and the type
// is one of the controller's words; anything else becomes "message" so
// that no value can break the framing.
func writeEvent(w *bufio.Writer, e controller.Event) error {
	data, err := json.Marshal(eventOf(e))
	if err != nil {
		return fmt.Errorf("marshal event %d: %w", e.Seq, err)
	}
	typ := e.Type
	if typ == "" || strings.ContainsAny(typ, "\r\n:") {
		typ = "message"
	}
	_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, typ, data)
	return err
}

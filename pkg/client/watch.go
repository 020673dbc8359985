package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// SystemEvent is one event of GET /api/v1/events: the frame's id and name,
// the data as sent, and the data's fields that any event type carries.
// Fields that do not apply to Type are empty.
type SystemEvent struct {
	// ID is the event's "<epoch>-<seq>"; hello, reset and heartbeat carry
	// the stream's position.
	ID string `json:"-"`
	// Data is the event's JSON as the server sent it.
	Data json.RawMessage `json:"-"`

	Type        string    `json:"type"`
	Time        time.Time `json:"time"`
	Service     string    `json:"service"`
	Deployment  string    `json:"deployment"`
	Kind        string    `json:"kind"`
	Image       string    `json:"image"`
	Status      string    `json:"status"`
	Actor       string    `json:"actor"`
	Step        string    `json:"step"`
	Message     string    `json:"message"`
	Reason      string    `json:"reason"`
	Resumed     bool      `json:"resumed"`
	HeartbeatMS int64     `json:"heartbeat_ms"`
}

// Watch follows every service's events, or one service's when service is
// not "", calling fn for each in order, heartbeats included. It blocks
// until fn returns an error (returned as is) or ctx ends (ctx's error). A
// dropped connection, a server shutting down or a 5xx or 429 answer is
// retried after a short backoff, resuming with Last-Event-ID; when the
// server cannot resume, fn gets its reset event. Other error answers (an
// unknown service, a bad token) are returned as *APIError at once.
func (c *Client) Watch(ctx context.Context, service string, fn func(SystemEvent) error) error {
	last := ""
	// watchOnce never returns nil: the system stream has no end.
	return c.follow(ctx, func() (bool, error) { return c.watchOnce(ctx, service, &last, fn) })
}

// watchOnce reads one connection's worth of events, keeping in *last the
// id to resume after. It says whether any event arrived.
func (c *Client) watchOnce(ctx context.Context, service string, last *string, fn func(SystemEvent) error) (bool, error) {
	var q url.Values
	if service != "" {
		q = url.Values{"service": {service}}
	}
	body, err := c.openStream(ctx, c.endpoint(q, "api", "v1", "events"), *last)
	if err != nil {
		return false, err
	}
	defer body.Close()

	progressed := false
	err = eachFrame(body, func(frame sseFrame) error {
		if len(frame.data) == 0 {
			return nil
		}
		ev := SystemEvent{ID: frame.id, Data: json.RawMessage(strings.Join(frame.data, "\n"))}
		if err := json.Unmarshal(ev.Data, &ev); err != nil {
			return fmt.Errorf("decode event %q: %w", frame.id, err)
		}
		if ev.Type == "" {
			ev.Type = frame.typ
		}
		if frame.id != "" {
			*last = frame.id
		}
		progressed = true
		if err := fn(ev); err != nil {
			return &callbackError{err}
		}
		return nil
	})
	if err != nil {
		return progressed, fmt.Errorf("system events: %w", err)
	}
	return progressed, errors.New("system event stream ended")
}

package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

// maxEventLine bounds one line of the event stream; a log event carries one
// line of a command's output.
const maxEventLine = 1 << 20

// errStreamEnded says the server closed the stream before the final status
// event; Events reconnects.
var errStreamEnded = errors.New("event stream ended before the final status")

// Events follows the progress of deployment id from after the event with
// Seq after (0: from the start), calling fn for each event in order. It
// blocks until fn has seen the final status event, fn returns an error
// (returned as is) or ctx ends (ctx's error). A dropped connection or a 5xx
// answer is retried after a short backoff, resuming with Last-Event-ID so
// no event is seen twice; other error answers (unknown deployment, bad
// token) are returned as *APIError at once.
func (c *Client) Events(ctx context.Context, id string, after int, fn func(api.Event) error) error {
	last := after
	return c.follow(ctx, func() (bool, error) { return c.streamOnce(ctx, id, &last, fn) })
}

// follow calls once, one connection of a stream, until it returns nil
// (the stream is complete), fn's error, an error answer that is not worth
// retrying (returned at once) or ctx ends. Between connections it waits a
// backoff that starts again from the minimum after a connection that made
// progress.
func (c *Client) follow(ctx context.Context, once func() (progressed bool, err error)) error {
	backoff := c.minBackoff
	for {
		progressed, err := once()
		if err == nil {
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		var apiErr *APIError
		var fnErr *callbackError
		switch {
		case errors.As(err, &fnErr):
			return fnErr.err
		case errors.As(err, &apiErr) && !retryableStatus(apiErr.Status):
			return err
		}
		if progressed {
			backoff = c.minBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, c.maxBackoff)
	}
}

func retryableStatus(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
}

// callbackError carries fn's error out of streamOnce, so that it is told
// apart from the stream's own.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// streamOnce reads one connection's worth of events, advancing *last. It
// returns nil once the final status event was handed to fn, and whether any
// new event arrived.
func (c *Client) streamOnce(ctx context.Context, id string, last *int, fn func(api.Event) error) (bool, error) {
	lastID := ""
	if *last > 0 {
		lastID = strconv.Itoa(*last)
	}
	body, err := c.openStream(ctx, c.endpoint(nil, "api", "v1", "deployments", id, "events"), lastID)
	if err != nil {
		return false, err
	}
	defer body.Close()

	progressed, final := false, false
	err = eachFrame(body, func(f sseFrame) error {
		ev, ok, err := f.event()
		if err != nil {
			return err
		}
		// After a reconnect the server may repeat what was already seen.
		if !ok || ev.Seq <= *last {
			return nil
		}
		*last = ev.Seq
		progressed = true
		if err := fn(ev); err != nil {
			return &callbackError{err}
		}
		if isFinal(ev) {
			final = true
			return errFinal
		}
		return nil
	})
	switch {
	case final:
		return progressed, nil
	case err != nil:
		return progressed, fmt.Errorf("deployment %s events: %w", id, err)
	}
	return progressed, errStreamEnded
}

// errFinal stops eachFrame after a deployment's final status.
var errFinal = errors.New("final status")

// openStream GETs the server-sent events at u, resuming after lastID when
// it is not "". The caller closes the body. An answer other than 200 is an
// *APIError.
func (c *Client) openStream(ctx context.Context, u *url.URL, lastID string) (io.ReadCloser, error) {
	req, err := c.newRequest(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, decodeAPIError(resp)
	}
	return resp.Body, nil
}

// eachFrame calls fn with every complete frame of body, in order, until
// the body ends (nil), fn returns an error (returned as is) or reading
// fails.
func eachFrame(body io.Reader, fn func(sseFrame) error) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	var f sseFrame
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			f.add(line)
			continue
		}
		frame := f
		f = sseFrame{}
		if err := fn(frame); err != nil {
			return err
		}
	}
	return sc.Err()
}

// sseFrame collects the fields of one server-sent event.
type sseFrame struct {
	id, typ string
	data    []string
}

func (f *sseFrame) add(line string) {
	if strings.HasPrefix(line, ":") {
		return // a comment, used as a keep-alive
	}
	name, value, _ := strings.Cut(line, ":")
	value = strings.TrimPrefix(value, " ")
	switch name {
	case "id":
		f.id = value
	case "event":
		f.typ = value
	case "data":
		f.data = append(f.data, value)
	}
}

// event decodes the frame; ok is false for a frame without data.
func (f *sseFrame) event() (api.Event, bool, error) {
	if len(f.data) == 0 {
		return api.Event{}, false, nil
	}
	var ev api.Event
	if err := json.Unmarshal([]byte(strings.Join(f.data, "\n")), &ev); err != nil {
		return api.Event{}, false, fmt.Errorf("decode event %q: %w", f.id, err)
	}
	if ev.Seq == 0 && f.id != "" {
		seq, err := strconv.Atoi(f.id)
		if err != nil {
			return api.Event{}, false, fmt.Errorf("event id %q is not a sequence number", f.id)
		}
		ev.Seq = seq
	}
	if ev.Type == "" {
		ev.Type = f.typ
	}
	return ev, true, nil
}

// isFinal reports whether ev is the status event that ends a deployment.
func isFinal(ev api.Event) bool {
	if ev.Type != controller.EventStatus {
		return false
	}
	var s controller.Status
	return s.UnmarshalText([]byte(ev.Status)) == nil && s.Done()
}

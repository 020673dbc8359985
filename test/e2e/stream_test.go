package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/controller"
)

// streamEvent is one server-sent event of the demo app's GET /events, and
// when the test read it.
type streamEvent struct {
	N       int    `json:"n"`
	Version string `json:"version"`
	Color   string `json:"color"`
	at      time.Time
}

// eventStream is a GET /events through nginx being read.
type eventStream struct {
	events chan streamEvent
	// end gets the read's end once the events are all sent: nil for a
	// clean end of the stream.
	end   chan error
	endAt time.Time // set before end is sent
}

// openEventStream starts GET /events?n=&every= through nginx and checks
// its answer is an event stream; the stream is read until it ends (or the
// test does).
func (e *env) openEventStream(n int, every time.Duration) *eventStream {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n)*every+30*time.Second)
	var wg sync.WaitGroup
	e.t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	url := fmt.Sprintf("%s/events?n=%d&every=%d", e.ng.URL, n, every.Milliseconds())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	res, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		e.t.Fatalf("GET /events through nginx: %v", err)
	}
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		res.Body.Close()
		e.t.Fatalf("GET /events through nginx: %d %s %q, want 200 text/event-stream", res.StatusCode, ct, b)
	}
	s := &eventStream{events: make(chan streamEvent, n), end: make(chan error, 1)}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var err error
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			ev := streamEvent{at: time.Now()}
			if err = json.Unmarshal([]byte(data), &ev); err != nil {
				break
			}
			s.events <- ev
		}
		if err == nil {
			err = sc.Err()
		}
		s.endAt = time.Now()
		close(s.events)
		s.end <- err
	}()
	return s
}

// In switch mode a server-sent event stream opened through nginx before a
// deploy keeps flowing from the old color after the switch, through the
// drain, until the drain timeout closes it (cleanly: an EventSource
// reconnects, and then reaches the new color); the drain step says so.
func TestSwitch_EventStreamRunsOnTheOldColorUntilTheDrainTimeout(t *testing.T) {
	t.Parallel()
	const (
		drain = 2 * time.Second
		every = 50 * time.Millisecond
	)
	e := newEnv(t, "v1", "v2")
	cfg := defaultSvc()
	cfg.Traffic = config.TrafficModeSwitch
	cfg.Drain = drain
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	d.mustSucceed("v1")

	// 600 events every 50ms would last 30s: only the drain can end it.
	stream := e.openEventStream(600, every)
	first, ok := <-stream.events
	if !ok || first.Version != "v1" || first.Color != "blue" {
		t.Fatalf("first event = %+v (stream open: %v), want one from v1 on blue", first, ok)
	}
	v2 := d.mustSucceed("v2")
	e.assertServes("v2", "green")
	if err := <-stream.end; err != nil {
		t.Fatalf("the stream ended with %v, want a clean end", err)
	}

	sw, dr := findStep(v2, controller.StepSwitch), findStep(v2, controller.StepDrain)
	if sw == nil || sw.FinishedAt == nil || dr == nil || dr.FinishedAt == nil {
		t.Fatalf("steps = %s, want a finished switch and drain", stepSummary(v2))
	}
	var after, total int
	last := first
	for ev := range stream.events {
		total++
		if ev.Version != "v1" || ev.Color != "blue" {
			t.Fatalf("event %+v, want every event of the stream from v1 on blue", ev)
		}
		if ev.at.After(*sw.FinishedAt) {
			after++
		}
		last = ev
	}
	// A 2s drain at one event per 50ms: about 40 after the switch; half
	// of that allows for a loaded machine.
	if want := int(drain / every / 2); after < want {
		t.Errorf("events after the switch = %d, want at least %d: the stream must keep flowing on blue", after, want)
	}
	// The stream ends at the drain's timeout, not before and not much
	// after (the drain step's own end, plus nginx passing the end on).
	earliest, latest := dr.StartedAt.Add(drain-100*time.Millisecond), dr.FinishedAt.Add(time.Second)
	if stream.endAt.Before(earliest) || stream.endAt.After(latest) {
		t.Errorf("stream ended %s after the drain began, want between %s and %s after",
			stream.endAt.Sub(dr.StartedAt).Round(time.Millisecond), earliest.Sub(dr.StartedAt).Round(time.Millisecond),
			latest.Sub(dr.StartedAt).Round(time.Millisecond))
	}
	for _, want := range []string{"waited for 1 request(s)", "on blue", "timed out after " + drain.String(), "closed 1 event stream(s)"} {
		if !strings.Contains(dr.Message, want) {
			t.Errorf("drain step message %q, want it to say %q", dr.Message, want)
		}
	}
	t.Logf("stream: %d events after the first (%d after the switch, last #%d); ended %s after the drain began (drain %s); drain: %s",
		total, after, last.N, stream.endAt.Sub(dr.StartedAt).Round(time.Millisecond), drain, dr.Message)

	// What an EventSource does next: reconnect, to the new color.
	again := e.openEventStream(1, 0)
	if ev, ok := <-again.events; !ok || ev.Version != "v2" || ev.Color != "green" {
		t.Fatalf("a new stream after the drain: %+v (open: %v), want v2 on green", ev, ok)
	}
	if err := <-again.end; err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("new stream: %v", err)
	}
}

package trafficswitch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// Handoff ends the old process's part in a graceful upgrade, once its
// listeners are also served by the new process (the same sockets, their
// file descriptors passed on; SO_REUSEPORT sockets would drop the
// connections queued on the one closed). It blocks until the old process
// serves nothing, or until ctx ends:
//
//  1. from now on every answer carries Connection: close, so net/http
//     closes each busy keep-alive connection right after its response,
//     and the client (nginx) opens its next one to the new process;
//  2. the listeners are closed: the new process accepts every new
//     connection. Connections already open are served on;
//  3. it waits until every client connection is closed. It never closes
//     an idle one itself: nginx may be writing a request on it. nginx
//     closes idle upstream connections after its keepalive_timeout, or
//     sends one more request, whose answer closes it (1);
//  4. it waits for the upgraded (WebSocket) connections, which are no
//     longer the server's, to end;
//  5. it closes the Switch (Close). When ctx ended first, Close closes
//     what remains at once: upgraded connections and event streams as a
//     drain's timeout does, idle connections too; ctx's error is returned.
//
// The Switch goes on taking Plane calls (Restore) until Close. Errors:
// ErrClosed when the Switch is closed already; ctx's error; Close's.
func (sw *Switch) Handoff(ctx context.Context) error {
	sw.mu.Lock()
	if sw.closed {
		sw.mu.Unlock()
		return ErrClosed
	}
	sw.handingOff.Store(true)
	services := make([]*service, 0, len(sw.services))
	for _, s := range sw.services {
		services = append(services, s)
	}
	sw.mu.Unlock()

	var errs []error
	var served []chan struct{}
	for _, s := range services {
		s.mu.Lock()
		ln, done := s.ln, s.served
		s.mu.Unlock()
		if ln == nil {
			continue
		}
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close the listener of %s: %w", s.name, err))
		}
		served = append(served, done)
	}
	// Once Serve has returned, every connection it accepted is counted:
	// it counts one (StateNew) before it accepts the next.
	for _, done := range served {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	err := sw.conns.waitNone(ctx)
	if err == nil {
		err = sw.waitUpgraded(ctx, services)
	}
	if err != nil {
		sw.log.WithError(err).WithField("open", sw.conns.open()).
			Warn("handoff cut short: closing the connections left")
		errs = append(errs, fmt.Errorf("hand off: %w", err))
	}
	if cerr := sw.Close(ctx); cerr != nil && !errors.Is(cerr, ctx.Err()) {
		errs = append(errs, cerr)
	}
	return errors.Join(errs...)
}

// waitUpgraded waits until no color of services has anything in flight:
// with every client connection closed, only upgraded ones can be left.
func (sw *Switch) waitUpgraded(ctx context.Context, services []*service) error {
	for _, s := range services {
		s.mu.Lock()
		colors := make([]*colorState, 0, len(s.colors))
		for _, c := range s.colors {
			colors = append(colors, c)
		}
		s.mu.Unlock()
		for _, c := range colors {
			if !c.waitIdle(ctx, nil) {
				return ctx.Err()
			}
		}
	}
	return nil
}

// closeAfter makes net/http close the connection after this answer. An
// Upgrade request is left alone: its 101 must say Connection: Upgrade,
// and its connection leaves the server anyway.
func (s *service) closeAfter(w http.ResponseWriter, r *http.Request) {
	if _, upgrade := r.Header["Upgrade"]; upgrade {
		return
	}
	w.Header()["Connection"] = connectionClose
}

var connectionClose = []string{"close"}

// connCount counts the connections of the Switch's servers that are open
// and still theirs: accepted, neither closed nor hijacked.
type connCount struct {
	mu   sync.Mutex
	n    int
	none chan struct{} // closed when n reaches 0 while someone waits
}

// track is http.Server.ConnState. A connection ends in StateClosed or
// StateHijacked, exactly one of them.
func (cc *connCount) track(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		cc.mu.Lock()
		cc.n++
		cc.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		cc.mu.Lock()
		cc.n--
		if cc.n == 0 && cc.none != nil {
			close(cc.none)
			cc.none = nil
		}
		cc.mu.Unlock()
	}
}

func (cc *connCount) open() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.n
}

// waitNone blocks until no connection is open, or ctx ends (its error).
func (cc *connCount) waitNone(ctx context.Context) error {
	cc.mu.Lock()
	if cc.n == 0 {
		cc.mu.Unlock()
		return nil
	}
	if cc.none == nil {
		cc.none = make(chan struct{})
	}
	none := cc.none
	cc.mu.Unlock()
	select {
	case <-none:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

package api

import (
	"sync"
	"time"
)

const (
	// maxSignatureFailures failed signatures within failureWindow block an
	// address until the window ends.
	maxSignatureFailures = 10
	failureWindow        = time.Minute
	// maxTrackedClients bounds the limiter's memory whatever the number of
	// addresses an attacker has.
	maxTrackedClients = 4096
)

// failureLimiter counts failures per client address in fixed windows. It
// prunes lazily, on use, so it owns no goroutine.
type failureLimiter struct {
	limit  int
	window time.Duration
	max    int

	mu      sync.Mutex
	clients map[string]failureCount
}

type failureCount struct {
	n     int
	since time.Time // the window's start: the first failure in it
}

func newFailureLimiter(limit int, window time.Duration, maxClients int) *failureLimiter {
	return &failureLimiter{limit: limit, window: window, max: maxClients, clients: make(map[string]failureCount)}
}

// blocked reports whether addr has used up its failures, and for how much
// longer it stays blocked.
func (l *failureLimiter) blocked(addr string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fc, ok := l.clients[addr]
	if !ok {
		return 0, false
	}
	end := fc.since.Add(l.window)
	if !now.Before(end) {
		delete(l.clients, addr)
		return 0, false
	}
	if fc.n < l.limit {
		return 0, false
	}
	return end.Sub(now), true
}

// fail counts one failure of addr and reports whether addr is now blocked.
func (l *failureLimiter) fail(addr string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	fc, ok := l.clients[addr]
	if !ok || !now.Before(fc.since.Add(l.window)) {
		if !ok && len(l.clients) >= l.max {
			l.prune(now)
		}
		fc = failureCount{since: now}
	}
	fc.n++
	l.clients[addr] = fc
	return fc.n >= l.limit
}

// prune drops ended windows and, if the map is still full, the oldest
// window: a flood from many addresses may free one address early, but it
// can never grow the map.
func (l *failureLimiter) prune(now time.Time) {
	oldest, oldestAddr := now, ""
	for addr, fc := range l.clients {
		if !now.Before(fc.since.Add(l.window)) {
			delete(l.clients, addr)
			continue
		}
		if !fc.since.After(oldest) {
			oldest, oldestAddr = fc.since, addr
		}
	}
	if len(l.clients) >= l.max {
		delete(l.clients, oldestAddr)
	}
}

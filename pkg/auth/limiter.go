package auth

import (
	"sync"
	"time"
)

// Limiter counts failures per key (a client address) in a sliding window:
// a key with max failures in the last window is blocked until the oldest of
// them leaves the window. It prunes lazily, on use, so it owns no
// goroutine, and it tracks at most maxKeys keys. Safe for concurrent use.
type Limiter struct {
	max     int
	window  time.Duration
	maxKeys int
	now     func() time.Time

	mu sync.Mutex
	// keys holds each key's recent failures, oldest first, at most max.
	keys map[string][]time.Time
}

// NewLimiter blocks a key after max failures within window, remembering at
// most maxKeys keys.
func NewLimiter(max int, window time.Duration, maxKeys int, now func() time.Time) *Limiter {
	return &Limiter{max: max, window: window, maxKeys: maxKeys, now: now, keys: make(map[string][]time.Time)}
}

// Blocked reports whether key has used up its failures, and for how much
// longer it stays blocked.
func (l *Limiter) Blocked(key string) (retryAfter time.Duration, blocked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	fails := l.recent(key, now)
	if len(fails) < l.max {
		return 0, false
	}
	return fails[0].Add(l.window).Sub(now), true
}

// Fail counts one failure of key.
func (l *Limiter) Fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	fails := l.recent(key, now)
	if fails == nil && len(l.keys) >= l.maxKeys {
		l.prune(now)
	}
	fails = append(fails, now)
	if len(fails) > l.max {
		// Only the newest max failures can decide a block.
		fails = append(fails[:0], fails[len(fails)-l.max:]...)
	}
	l.keys[key] = fails
}

// recent returns key's failures still inside the window, forgetting the
// others; nil when none are left.
func (l *Limiter) recent(key string, now time.Time) []time.Time {
	fails, ok := l.keys[key]
	if !ok {
		return nil
	}
	i := 0
	for i < len(fails) && !now.Before(fails[i].Add(l.window)) {
		i++
	}
	if i == len(fails) {
		delete(l.keys, key)
		return nil
	}
	if i > 0 {
		fails = append(fails[:0], fails[i:]...)
		l.keys[key] = fails
	}
	return fails
}

// prune drops keys whose failures have all left the window and, if the map
// is still full, the key failed longest ago: a flood from many addresses
// may free one address early, but it can never grow the map.
func (l *Limiter) prune(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for key := range l.keys {
		fails := l.recent(key, now)
		if fails == nil {
			continue
		}
		last := fails[len(fails)-1]
		if oldestKey == "" || last.Before(oldest) {
			oldestKey, oldest = key, last
		}
	}
	if len(l.keys) >= l.maxKeys && oldestKey != "" {
		delete(l.keys, oldestKey)
	}
}

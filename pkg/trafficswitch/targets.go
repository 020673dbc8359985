package trafficswitch

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// colorState is one color of one service: its keep-alive pool, what it
// has in flight (for Drain) and its metric children. It lives as long as
// the Switch, so a color's pool stays warm between its turns.
type colorState struct {
	name      string
	service   *service
	transport *http.Transport
	m         colorMetrics

	// busy counts the color's requests in flight, upgraded connections
	// included; Drain waits for it to reach zero.
	busy    atomic.Int64
	waiters atomic.Int32

	mu       sync.Mutex
	idle     chan struct{}          // closed when busy reaches zero while someone waits
	upgraded map[*exchange]struct{} // exchanges whose connection switched protocols
	streams  map[*exchange]struct{} // exchanges answering an event stream
	last     *targetSet             // the color's latest target set; guarded by service.mu
}

func newColorState(sw *Switch, s *service, color string) *colorState {
	return &colorState{
		name:      color,
		service:   s,
		transport: newTransport(sw.opts),
		m:         sw.m.color(s.name, color),
		upgraded:  make(map[*exchange]struct{}),
		streams:   make(map[*exchange]struct{}),
	}
}

// newTransport is one color's pool: HTTP/1.1 only (replicas speak plain
// HTTP), no proxy from the environment, no transparent gzip (the client's
// Accept-Encoding passes through untouched), bounded dial and header
// waits.
func newTransport(o Options) *http.Transport {
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       o.IdleConnTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
}

// acquire counts one request on the color. release undoes it and wakes a
// waiting Drain when nothing is left.
func (c *colorState) acquire() { c.busy.Add(1) }

func (c *colorState) release() {
	if c.busy.Add(-1) == 0 && c.waiters.Load() > 0 {
		c.mu.Lock()
		if c.idle != nil && c.busy.Load() == 0 {
			close(c.idle)
			c.idle = nil
		}
		c.mu.Unlock()
	}
}

// waitIdle blocks until nothing is in flight on the color (true), or
// until timeout fires or ctx ends (false).
func (c *colorState) waitIdle(ctx context.Context, timeout <-chan time.Time) bool {
	c.waiters.Add(1)
	defer c.waiters.Add(-1)
	for {
		c.mu.Lock()
		if c.busy.Load() == 0 {
			c.mu.Unlock()
			return true
		}
		if c.idle == nil {
			c.idle = make(chan struct{})
		}
		idle := c.idle
		c.mu.Unlock()
		select {
		case <-idle:
		case <-timeout:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// counts returns the requests in flight (upgraded excluded) and the
// upgraded connections open.
func (c *colorState) counts() (inFlight, upgraded int) {
	c.mu.Lock()
	upgraded = len(c.upgraded)
	c.mu.Unlock()
	inFlight = int(c.busy.Load()) - upgraded
	if inFlight < 0 {
		inFlight = 0
	}
	return inFlight, upgraded
}

// closeUpgraded closes the color's upgraded connections (the replica
// side: ReverseProxy then closes the client side) and returns how many.
func (c *colorState) closeUpgraded() int {
	c.mu.Lock()
	conns := make([]*exchange, 0, len(c.upgraded))
	for ex := range c.upgraded {
		conns = append(conns, ex)
	}
	c.mu.Unlock()
	for _, ex := range conns {
		_ = ex.upgradedConn.Close()
	}
	return len(conns)
}

// closeStreams ends the color's event streams (see streamBody) and
// returns how many.
func (c *colorState) closeStreams() int {
	c.mu.Lock()
	streams := make([]*exchange, 0, len(c.streams))
	for ex := range c.streams {
		streams = append(streams, ex)
	}
	c.mu.Unlock()
	for _, ex := range streams {
		ex.stream.end()
	}
	return len(streams)
}

// targetSet is one generation of a service's targets: the replicas of one
// color. Requests keep the set they started on.
type targetSet struct {
	color    *colorState
	replicas []*replica
	next     atomic.Uint32 // round-robin start of the next pick
	win      window
}

// replica is one target address and what is in flight on it.
type replica struct {
	addr     string
	inFlight atomic.Int64
	// downUntil (Switch.since nanoseconds) is set when a dial failed;
	// until then the replica is tried only when no other one is left.
	downUntil atomic.Int64
}

func newTargetSet(c *colorState, addrs []string) *targetSet {
	t := &targetSet{color: c, replicas: make([]*replica, len(addrs))}
	for i, a := range addrs {
		t.replicas[i] = &replica{addr: a}
	}
	return t
}

func (t *targetSet) sameAddrs(addrs []string) bool {
	if len(addrs) != len(t.replicas) {
		return false
	}
	for i, r := range t.replicas {
		if r.addr != addrs[i] {
			return false
		}
	}
	return true
}

func (t *targetSet) addrs() []string {
	out := make([]string, len(t.replicas))
	for i, r := range t.replicas {
		out[i] = r.addr
	}
	return out
}

// pick returns the replica with the fewest requests in flight and counts
// one more on it. Replicas that are down, then replicas in tried (a bit
// per index), come last; among equals the scan starts one further each
// call, which makes ties round robin. It returns -1 for an empty set.
//
// Least-requests rather than plain round robin because replicas of a
// deploy are often uneven (one still warming up, one busy with a slow
// request); with the counters already kept for Drain it costs one atomic
// load per replica.
func (t *targetSet) pick(tried uint64, now int64) int {
	n := len(t.replicas)
	if n == 0 {
		return -1
	}
	start := int(t.next.Add(1) % uint32(n))
	best, bestRank, bestLoad := -1, 0, int64(0)
	for i := 0; i < n; i++ {
		j := start + i
		if j >= n {
			j -= n
		}
		r := t.replicas[j]
		rank := 0
		switch {
		case j < 64 && tried&(1<<j) != 0:
			rank = 2
		case r.downUntil.Load() > now:
			rank = 1
		}
		load := r.inFlight.Load()
		if best < 0 || rank < bestRank || (rank == bestRank && load < bestLoad) {
			best, bestRank, bestLoad = j, rank, load
		}
	}
	t.replicas[best].inFlight.Add(1)
	return best
}

package api

import (
	"sync"

	"github.com/gofiber/fiber/v2"

	"github.com/deployd/deployd/pkg/controller"
)

// Defaults of Options.MaxStreams and MaxStreamsPerToken: each stream holds
// a connection and a goroutine for as long as its client stays.
const (
	defaultMaxStreams         = 256
	defaultMaxStreamsPerToken = 16
	// streamRetryAfter is what a refused stream is told to wait: streams
	// end when their deployment does, usually within minutes.
	streamRetryAfter = "5"
)

// streamSlots counts open event streams, in all and per token. Safe for
// concurrent use.
type streamSlots struct {
	max, perToken int

	mu      sync.Mutex
	total   int
	byToken map[string]int
}

func newStreamSlots(max, perToken int) *streamSlots {
	if max <= 0 {
		max = defaultMaxStreams
	}
	if perToken <= 0 {
		perToken = defaultMaxStreamsPerToken
	}
	return &streamSlots{max: max, perToken: perToken, byToken: make(map[string]int)}
}

// acquire takes a slot for token, or returns a rate_limited error saying
// which cap is full. The caller must call release exactly once.
func (s *streamSlots) acquire(c *fiber.Ctx, token string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.byToken[token] >= s.perToken:
		c.Set(fiber.HeaderRetryAfter, streamRetryAfter)
		return nil, controller.Errorf(codeRateLimited,
			"token %q has %d event streams open, the most one token may; close one and retry", token, s.perToken)
	case s.total >= s.max:
		c.Set(fiber.HeaderRetryAfter, streamRetryAfter)
		return nil, controller.Errorf(codeRateLimited,
			"the server has %d event streams open, the most it serves at once; retry later", s.max)
	}
	s.total++
	s.byToken[token]++
	var once sync.Once
	return func() { once.Do(func() { s.release(token) }) }, nil
}

func (s *streamSlots) release(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.byToken[token]--; s.byToken[token] <= 0 {
		delete(s.byToken, token)
	}
}

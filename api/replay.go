package api

import (
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// maxReplayEntries bounds the replay cache. Only correctly signed
// deliveries enter it, so only the holder of the webhook secret can fill
// it; 10,000 within the skew window is far beyond any CI.
const maxReplayEntries = 10000

var (
	errReplayed        = errors.New("this signature was already used by another delivery; sign each request afresh with a new " + headerTimestamp)
	errReplayCacheFull = errors.New("too many webhook deliveries within the timestamp window; retry later")
)

// replayCache remembers the signature of each accepted webhook request
// until its timestamp leaves the skew window, after which the timestamp
// check refuses it anyway. A signature comes back only with the request
// it signed, so a captured request resent with another delivery id is
// refused, while a retry of the same delivery passes on to the
// controller, which answers it with the deployment it already started.
// Safe for concurrent use; its memory is bounded by max.
type replayCache struct {
	max int

	mu    sync.Mutex
	bySig map[[sha256.Size]byte]replaySeen
}

type replaySeen struct {
	delivery string
	expires  time.Time
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, bySig: make(map[[sha256.Size]byte]replaySeen)}
}

// admit records sig for delivery until expires. It returns errReplayed
// when sig was seen with another delivery, and errReplayCacheFull when
// max live signatures are remembered already: forgetting one early would
// let its request be replayed.
func (r *replayCache) admit(sig [sha256.Size]byte, delivery string, now, expires time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seen, ok := r.bySig[sig]; ok && now.Before(seen.expires) {
		if seen.delivery != delivery {
			return errReplayed
		}
		return nil
	}
	if len(r.bySig) >= r.max {
		for k, seen := range r.bySig {
			if !now.Before(seen.expires) {
				delete(r.bySig, k)
			}
		}
		if len(r.bySig) >= r.max {
			return errReplayCacheFull
		}
	}
	r.bySig[sig] = replaySeen{delivery: delivery, expires: expires}
	return nil
}

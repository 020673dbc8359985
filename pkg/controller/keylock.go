package controller

import (
	"context"
	"sync"
)

// keyLock is a mutex per key, such as a webhook delivery key: holders of
// different keys never wait for each other. A key's entry lives only while
// someone holds or waits for it.
type keyLock struct {
	mu   sync.Mutex
	keys map[string]*keyEntry
}

type keyEntry struct {
	// sem holds a token while the key is locked.
	sem  chan struct{}
	refs int // holders and waiters
}

// lock takes key's lock, waiting while another holder has it. It returns
// ctx's error, taking nothing, when ctx ends first. Call unlock exactly once.
func (k *keyLock) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.keys == nil {
		k.keys = map[string]*keyEntry{}
	}
	e := k.keys[key]
	if e == nil {
		e = &keyEntry{sem: make(chan struct{}, 1)}
		k.keys[key] = e
	}
	e.refs++
	k.mu.Unlock()

	select {
	case e.sem <- struct{}{}:
		return func() {
			<-e.sem
			k.forget(key, e)
		}, nil
	case <-ctx.Done():
		k.forget(key, e)
		return nil, ctx.Err()
	}
}

// forget drops one reference to key's entry, and the entry with the last.
func (k *keyLock) forget(key string, e *keyEntry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(k.keys, key)
	}
}

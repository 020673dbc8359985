package controller

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// defaultViewResync is how often FollowContainers lists every service's
// containers again, whatever the feed said: it bounds the life of a view
// gone wrong through an event the engine never sent.
const defaultViewResync = 30 * time.Second

// viewSinceMargin moves the start of each follow back, so that a clock a
// little ahead of the engine's cannot lose the changes made while the
// full resync lists them. A change replayed twice costs one more list.
const viewSinceMargin = time.Second

// containerView holds each service's containers as the runtime last listed
// them, for Service and Services to answer without asking the runtime. A
// service has an entry only while the feed is followed and the service was
// listed since; without one, callers ask the runtime.
type containerView struct {
	mu        sync.Mutex
	byService map[string][]Container
	// epoch grows each time the view is dropped, so that a list started
	// before the drop is not stored after it.
	epoch uint64
	// live is true while the feed is followed; only then are lists kept.
	live bool
	// dirty are the services to list again; wake is signalled when one is
	// added.
	dirty map[string]bool
	wake  chan struct{}
	// shown is the last list stored of each service, kept across drops,
	// so that put can tell whether a service's containers changed.
	shown map[string][]Container
}

func newContainerView() *containerView {
	return &containerView{byService: map[string][]Container{}, dirty: map[string]bool{}, wake: make(chan struct{}, 1),
		shown: map[string][]Container{}}
}

// get returns a copy of service's containers and whether the view has them.
func (v *containerView) get(service string) ([]Container, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	cs, ok := v.byService[service]
	return slices.Clone(cs), ok
}

// mark asks for services to be listed again. It does not block.
func (v *containerView) mark(services ...string) {
	v.mu.Lock()
	for _, s := range services {
		v.dirty[s] = true
	}
	v.mu.Unlock()
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// follow makes the view keep lists from now on, until drop.
func (v *containerView) follow() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.live = true
}

// take returns the services to list, and the epoch their lists belong to;
// none while the feed is not followed.
func (v *containerView) take() ([]string, uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.live {
		clear(v.dirty)
		return nil, v.epoch
	}
	names := make([]string, 0, len(v.dirty))
	for s := range v.dirty {
		names = append(names, s)
	}
	clear(v.dirty)
	return names, v.epoch
}

// put stores a list made in epoch, unless the view was dropped since, and
// reports whether it differs from the list stored before.
func (v *containerView) put(service string, cs []Container, epoch uint64) (changed bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.live || epoch != v.epoch {
		return false
	}
	v.byService[service] = cs
	// The runtime's order is not part of the view's meaning.
	sorted := slices.SortedFunc(slices.Values(cs), func(a, b Container) int { return strings.Compare(a.ID, b.ID) })
	prev, seen := v.shown[service]
	v.shown[service] = sorted
	return !seen || !slices.EqualFunc(prev, sorted, sameContainer)
}

// sameContainer compares what a view shows of a container. Times are
// compared with Equal: == would also compare their monotonic readings.
func sameContainer(a, b Container) bool {
	ta, tb := a.StartedAt, b.StartedAt
	a.StartedAt, b.StartedAt = time.Time{}, time.Time{}
	return a == b && ta.Equal(tb)
}

// forget drops one service's entry (its list failed).
func (v *containerView) forget(service string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.byService, service)
}

// drop empties the view: the feed broke, so it can no longer be trusted.
func (v *containerView) drop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.epoch++
	v.live = false
	clear(v.byService)
	clear(v.dirty)
}

// FollowContainers keeps the in-memory view of every service's containers
// that Service and Services answer from: it lists them all, then lists a
// service again on each change the container feed reports, and all of them
// again every resync interval (Options.ViewResync). When the feed breaks
// (the engine went away) the view is dropped, so that requests ask the
// runtime and say when it is unreachable, and the feed is followed again
// with backoff, starting with a full resync. It blocks until ctx ends, and
// returns at once without a feed.
func (c *Controller) FollowContainers(ctx context.Context) {
	if c.feed == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.refreshView(ctx)
	}()
	report := func(service string) {
		if _, ok := c.services[service]; ok {
			c.view.mark(service)
		}
	}
	c.followRetrying(ctx, "container feed broke; serving the service view from the engine until it is followed again",
		func() error {
			since := c.now().Add(-viewSinceMargin)
			c.view.follow()
			c.view.mark(c.names...)
			err := c.feed.FollowContainers(ctx, since, report)
			c.view.drop()
			return err
		}, nil)
	<-done
}

// refreshView lists the services marked dirty, and every service each
// resync interval, until ctx ends.
func (c *Controller) refreshView(ctx context.Context) {
	tick := time.NewTicker(c.viewResync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.view.wake:
		case <-tick.C:
			c.view.mark(c.names...)
			continue
		}
		names, epoch := c.view.take()
		for _, name := range names {
			cs, err := c.runtime(name).Containers(ctx, name)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				c.view.forget(name)
				c.log.WithError(err).WithField("service", name).Warn("list containers for the service view")
				continue
			}
			if c.view.put(name, cs, epoch) {
				c.publish(FeedEvent{Type: FeedContainers, Service: name})
			}
		}
	}
}

// containersOf returns the service's containers from the view, or from the
// runtime when the view does not hold them.
func (c *Controller) containersOf(ctx context.Context, service string) ([]Container, error) {
	if cs, ok := c.view.get(service); ok {
		return cs, nil
	}
	cs, err := c.runtime(service).Containers(ctx, service)
	if err != nil {
		return nil, unavailable("list containers of "+service, err)
	}
	return cs, nil
}

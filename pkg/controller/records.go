package controller

import (
	"context"
	"fmt"
	"sync"
)

// serviceRecords is what a service view reads from the store: its state,
// the deployments its colors came from, the running or last deployment,
// and the recent outcomes the page keeps showing.
type serviceRecords struct {
	state   ServiceState
	traffic TrafficState
	// leaseID is the deployment running when the records were read; a
	// new one makes them stale even before it writes anything.
	leaseID                                        string
	active, standby, last, lastFailure, lastSwitch *Deployment
}

// recordCache keeps each service's records between writes, so a status
// request decodes no deployment (recentOutcomes reads up to 50) unless
// the service changed. Every write of a service through the store bumps
// its generation after it committed: records read under an older
// generation are never served again.
type recordCache struct {
	mu      sync.Mutex
	gen     map[string]uint64
	entries map[string]cachedRecords
}

type cachedRecords struct {
	gen uint64
	rec serviceRecords
}

func newRecordCache() *recordCache {
	return &recordCache{gen: map[string]uint64{}, entries: map[string]cachedRecords{}}
}

func (rc *recordCache) wrote(service string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.gen[service]++
	delete(rc.entries, service)
}

// lookup returns the service's cached records when they are current, and
// the generation a fresh read must be stored under.
func (rc *recordCache) lookup(service, leaseID string) (serviceRecords, uint64, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	gen := rc.gen[service]
	e, ok := rc.entries[service]
	if !ok || e.gen != gen || e.rec.leaseID != leaseID {
		return serviceRecords{}, gen, false
	}
	return e.rec, gen, true
}

func (rc *recordCache) store(service string, gen uint64, rec serviceRecords) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.gen[service] == gen {
		rc.entries[service] = cachedRecords{gen: gen, rec: rec}
	}
}

// notingStore tells the record cache about every write of a service, after
// the write returned.
type notingStore struct {
	Store
	wrote func(service string)
}

func (s notingStore) PutService(ctx context.Context, st ServiceState) error {
	defer s.wrote(st.Name)
	return s.Store.PutService(ctx, st)
}

func (s notingStore) PutDeployment(ctx context.Context, d Deployment) error {
	defer s.wrote(d.Service)
	return s.Store.PutDeployment(ctx, d)
}

func (s notingStore) SaveSwitch(ctx context.Context, st ServiceState, d Deployment) error {
	defer s.wrote(st.Name)
	defer s.wrote(d.Service)
	return s.Store.SaveSwitch(ctx, st, d)
}

func (s notingStore) PutTraffic(ctx context.Context, t TrafficState) error {
	defer s.wrote(t.Service)
	return s.Store.PutTraffic(ctx, t)
}

// records returns name's records, from the cache when no write of the
// service happened since they were read. The deployments are copies the
// caller may keep.
func (c *Controller) records(ctx context.Context, name string) (serviceRecords, error) {
	c.mu.Lock()
	leaseID := ""
	if l := c.leases[name]; l != nil {
		leaseID = l.id
	}
	c.mu.Unlock()
	rec, gen, ok := c.recordCache.lookup(name, leaseID)
	if !ok {
		var err error
		if rec, err = c.readRecords(ctx, name, leaseID); err != nil {
			return serviceRecords{}, err
		}
		c.recordCache.store(name, gen, rec)
	}
	for _, d := range []**Deployment{&rec.active, &rec.standby, &rec.last, &rec.lastFailure, &rec.lastSwitch} {
		if *d != nil {
			cp := **d
			*d = &cp
		}
	}
	return rec, nil
}

func (c *Controller) readRecords(ctx context.Context, name, leaseID string) (serviceRecords, error) {
	rec := serviceRecords{leaseID: leaseID}
	var err error
	if rec.state, err = c.state(ctx, name); err != nil {
		return serviceRecords{}, err
	}
	get := func(id string) *Deployment {
		if id == "" {
			return nil
		}
		d, err := c.store.GetDeployment(ctx, id)
		if err != nil {
			return nil
		}
		return &d
	}
	rec.active = get(rec.state.ActiveDeployment)
	rec.standby = get(rec.state.StandbyDeployment)
	rec.last = get(leaseID)
	if rec.last == nil {
		last, err := c.store.ListDeployments(ctx, name, 1)
		if err != nil {
			return serviceRecords{}, fmt.Errorf("last deployment of %s: %w", name, err)
		}
		if len(last) > 0 {
			rec.last = &last[0]
		}
	}
	if rec.lastFailure, rec.lastSwitch, err = c.recentOutcomes(ctx, name); err != nil {
		return serviceRecords{}, err
	}
	if c.traffic != nil {
		if rec.traffic, err = c.trafficRecord(ctx, name); err != nil {
			return serviceRecords{}, err
		}
	}
	return rec, nil
}

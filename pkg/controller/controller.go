package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Options wires a Controller to its ports.
type Options struct {
	Services []ServiceSpec
	// Runtime runs the containers of services on RuntimeDocker, Swarm
	// those on RuntimeSwarm; Swarm may be nil when no service is (Start
	// refuses one that is).
	Runtime Runtime
	Swarm   Runtime
	Router  Router
	Prober  Prober
	Store   Store
	Logger  logrus.FieldLogger
	// Notifier and Observer may be nil: nothing is sent or recorded.
	Notifier Notifier
	Observer Observer
	// Hook may be nil; see Hook.
	Hook Hook
	// Exits may be nil: then only the scheduled rounds notice dead
	// containers. See FollowExits.
	Exits ExitFeed
	// Containers may be nil: then Service and Services list the
	// service's containers from the runtime on every call. See
	// FollowContainers.
	Containers ContainerFeed
	// ViewResync is how often FollowContainers lists every service's
	// containers again; zero means defaultViewResync.
	ViewResync time.Duration
	// ExitSettle is how long FollowExits lets a service settle after a
	// container exit before its pass; zero means defaultExitSettle.
	ExitSettle time.Duration
	// TrafficReader may be nil: then the traffic rules
	// (ServiceSpec.BakeTraffic, WatchSpec.Traffic) are off. Only the
	// request-level switch counts requests per color; in switch mode the
	// daemon passes trafficswitch.NewTrafficReader of its switch's Plane.
	TrafficReader TrafficReader
	// Watch and Retention configure the watchdog, bake and retention.
	Watch     WatchSpec
	Retention RetentionSpec
	// TrafficControl is the request-level switch's pause and maintenance;
	// nil in reload mode, where those calls answer ECONFLICT.
	TrafficControl TrafficControl
	// Pause bounds every pause; zero fields take DefaultPauseMaxHold and
	// DefaultPauseMaxHeld.
	Pause PauseLimits
	// FeedSize is how many events the system feed keeps for clients that
	// resume (see Feed); zero means DefaultFeedSize.
	FeedSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Controller runs deploys and rollbacks, at most one at a time per service.
// Its methods are safe for concurrent use.
type Controller struct {
	services map[string]ServiceSpec
	names    []string
	rt       Runtime
	swarm    Runtime
	router   Router
	prober   Prober
	store    Store
	// recordCache keeps what Service reads from the store between writes.
	recordCache *recordCache
	windows     TrafficReader
	log         logrus.FieldLogger
	now         func() time.Time
	notifier    Notifier
	observer    Observer
	hook        Hook
	exits       ExitFeed
	settle      time.Duration
	// feed keeps view current; see FollowContainers.
	feed       ContainerFeed
	view       *containerView
	viewResync time.Duration
	watchCfg   WatchSpec
	retain     RetentionSpec
	traffic    TrafficControl
	pause      PauseLimits
	// trafficMu serializes the changes of pause and maintenance, so that
	// the switch and the stored record change in the same order. Its holds
	// are short: the switch does not block, the store writes one record.
	trafficMu sync.Mutex
	// readFailures keeps the traffic rule's failed window reads to one
	// warning per episode.
	readFailures readFailures

	// watch is the watchdog's memory of each service between rounds.
	watch *watchBook

	// runCtx is the parent of every deploy; Close cancels it.
	runCtx    context.Context
	cancelRun context.CancelFunc
	wg        sync.WaitGroup

	events *eventHub
	// system is every service's events, for the system event stream.
	system *systemFeed
	// deliveries serializes the check-then-deploy of copies of one webhook
	// delivery; deliveries with other keys go on meanwhile.
	deliveries keyLock

	// probeResults holds the last probe result per container id, shown
	// where the runtime knows no health of its own.
	probeResults *probeResults

	// unaudited sums up the requests RecordAudit counts instead of writing.
	unaudited *unauditedLog

	mu     sync.Mutex
	leases map[string]*lease // by service
	closed bool
	lastID time.Time
}

// New returns a Controller. Call Start before serving requests and Close
// when done.
func New(o Options) *Controller {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Controller{
		services:     make(map[string]ServiceSpec, len(o.Services)),
		rt:           o.Runtime,
		swarm:        o.Swarm,
		router:       o.Router,
		prober:       o.Prober,
		windows:      o.TrafficReader,
		log:          o.Logger,
		now:          o.Now,
		runCtx:       ctx,
		cancelRun:    cancel,
		leases:       make(map[string]*lease),
		events:       newEventHub(),
		probeResults: &probeResults{byID: map[string]string{}},
		unaudited:    &unauditedLog{},
		notifier:     o.Notifier,
		observer:     o.Observer,
		hook:         o.Hook,
		exits:        o.Exits,
		feed:         o.Containers,
		view:         newContainerView(),
		viewResync:   o.ViewResync,
		settle:       o.ExitSettle,
		watchCfg:     o.Watch,
		retain:       o.Retention,
		traffic:      o.TrafficControl,
		pause:        o.Pause,
		watch:        &watchBook{byService: map[string]*watchEntry{}},
		recordCache:  newRecordCache(),
	}
	c.store = notingStore{Store: o.Store, wrote: c.recordCache.wrote}
	if c.now == nil {
		c.now = time.Now
	}
	// The process's start time names its feed, so that a cursor of an
	// earlier process is never taken for one of this.
	c.system = newSystemFeed(strconv.FormatInt(time.Now().UnixNano(), 36), o.FeedSize)
	if c.viewResync <= 0 {
		c.viewResync = defaultViewResync
	}
	if c.notifier == nil {
		c.notifier = noopNotifier{}
	}
	if c.observer == nil {
		c.observer = noopObserver{}
	}
	if c.hook == nil {
		c.hook = func(string) {}
	}
	if c.pause.MaxHold <= 0 {
		c.pause.MaxHold = DefaultPauseMaxHold
	}
	if c.pause.MaxHeld <= 0 {
		c.pause.MaxHeld = DefaultPauseMaxHeld
	}
	if c.settle <= 0 {
		c.settle = defaultExitSettle
	}
	if c.watchCfg.UnhealthyThreshold <= 0 {
		c.watchCfg.UnhealthyThreshold = defaultUnhealthyThreshold
	}
	if c.watchCfg.Interval <= 0 {
		c.watchCfg.Interval = defaultWatchInterval
	}
	if c.log == nil {
		l := logrus.New()
		l.Out = discard{}
		c.log = l
	}
	for _, s := range o.Services {
		c.services[s.Name] = s
		c.names = append(c.names, s.Name)
	}
	sort.Strings(c.names)
	return c
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Close stops accepting deployments, cancels the running ones (each ends at
// a safe point: before the switch its containers are removed, a switch in
// progress completes) and waits for them until ctx is done.
func (c *Controller) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancelRun()
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for running deployments: %w", ctx.Err())
	}
}

func (c *Controller) spec(name string) (ServiceSpec, error) {
	s, ok := c.services[name]
	if !ok {
		return ServiceSpec{}, Errorf(ENOTFOUND, "unknown service %q", name)
	}
	return s, nil
}

// state returns the stored state of a service, or its zero state before the
// first deploy.
func (c *Controller) state(ctx context.Context, name string) (ServiceState, error) {
	st, err := c.store.GetService(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return ServiceState{Name: name}, nil
	}
	if err != nil {
		return ServiceState{}, fmt.Errorf("load state of %s: %w", name, err)
	}
	return st, nil
}

// newID returns a deployment id that sorts by creation time: a UTC
// timestamp with microseconds, kept strictly increasing within this
// process, plus random bits against collisions across restarts.
func (c *Controller) newID() string {
	c.mu.Lock()
	t := c.now().UTC().Truncate(time.Microsecond)
	if !t.After(c.lastID) {
		t = c.lastID.Add(time.Microsecond)
	}
	c.lastID = t
	c.mu.Unlock()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return t.Format("20060102T150405.000000Z") + "-" + hex.EncodeToString(b[:])
}

// Deploy validates req, records a queued deployment and runs it in the
// background. It returns at once with the recorded deployment. Errors:
// ENOTFOUND for an unknown service, EINVALID or EFORBIDDEN for a bad image,
// ECONFLICT (with DeploymentID) while another deployment of the service runs,
// EUNAVAILABLE while shutting down or when the Docker engine does not
// answer (then nothing is recorded).
func (c *Controller) Deploy(ctx context.Context, service string, req DeployRequest) (Deployment, error) {
	spec, err := c.spec(service)
	if err != nil {
		return Deployment{}, err
	}
	image, err := spec.resolveImage(req.Image)
	if err != nil {
		return Deployment{}, err
	}
	return c.launch(ctx, spec, KindDeploy, req.Trigger, func(st ServiceState) (Deployment, error) {
		return Deployment{Image: image, FromColor: st.ActiveColor, ToColor: st.ActiveColor.Other()}, nil
	})
}

// Rollback switches a service back to its standby color in the background.
// Errors as Deploy; ECONFLICT also when the service has no standby, and
// ESCHEMACHANGE when the rollback crosses a breaking schema change that
// req does not confirm (see SchemaChange).
func (c *Controller) Rollback(ctx context.Context, service string, req RollbackRequest) (Deployment, error) {
	spec, err := c.spec(service)
	if err != nil {
		return Deployment{}, err
	}
	return c.launch(ctx, spec, KindRollback, req.Trigger, func(st ServiceState) (Deployment, error) {
		d, err := rollbackPlan(st)
		if err != nil {
			return Deployment{}, err
		}
		if err := c.schemaGuard(ctx, spec, st, req.ConfirmSchemaChange, &d); err != nil {
			return Deployment{}, err
		}
		return d, nil
	})
}

// rollbackFrom starts a rollback only if the service is still in state
// seen: an automatic rollback decided on a color must never be applied
// after traffic moved, when "the standby" may be the color that died.
func (c *Controller) rollbackFrom(ctx context.Context, spec ServiceSpec, seen ServiceState, trigger Trigger) (Deployment, error) {
	return c.launch(ctx, spec, KindRollback, trigger, func(st ServiceState) (Deployment, error) {
		if st.ActiveColor != seen.ActiveColor || st.ActiveDeployment != seen.ActiveDeployment {
			return Deployment{}, fmt.Errorf("%w: %s is on %s, %s was judged unhealthy",
				errTrafficMoved, st.Name, st.ActiveColor, seen.ActiveColor)
		}
		d, err := rollbackPlan(st)
		if err != nil {
			return Deployment{}, err
		}
		// Never confirmed: crossing a breaking schema change is a
		// person's decision.
		if err := c.schemaGuard(ctx, spec, st, false, &d); err != nil {
			return Deployment{}, err
		}
		return d, nil
	})
}

// errTrafficMoved refuses an automatic rollback whose verdict is stale.
var errTrafficMoved = Errorf(ECONFLICT, "traffic moved since the verdict")

func rollbackPlan(st ServiceState) (Deployment, error) {
	if !st.StandbyColor.Valid() || st.StandbyImage == "" {
		return Deployment{}, Errorf(ECONFLICT, "service %s has no standby to roll back to", st.Name)
	}
	return Deployment{Image: st.StandbyImage, FromColor: st.ActiveColor, ToColor: st.StandbyColor}, nil
}

// launch takes the service's lock, records the deployment that plan
// describes and starts it.
func (c *Controller) launch(ctx context.Context, spec ServiceSpec, kind Kind, trigger Trigger,
	plan func(ServiceState) (Deployment, error)) (Deployment, error) {
	// A deploy that cannot reach Docker would only record a failure; the
	// caller learns at once, and the history stays free of them.
	if err := c.pingRuntime(ctx, spec.Name); err != nil {
		return Deployment{}, err
	}
	// The id exists before the lock is taken so that a request refused as a
	// conflict can always name the deployment holding the service, even
	// while its record is still being written.
	id := c.newID()
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return Deployment{}, Errorf(EUNAVAILABLE, "deployd is shutting down")
		}
		held, busy := c.leases[spec.Name]
		if !busy {
			break
		}
		if held.id != "" && !held.finishing {
			c.mu.Unlock()
			return Deployment{}, &Error{Code: ECONFLICT, DeploymentID: held.id,
				Message: fmt.Sprintf("service %s is busy with deployment %s", spec.Name, held.id)}
		}
		// A reconciler or retention pass holds the service for a moment,
		// or a deployment is writing its final record: the request waits
		// for the release rather than failing.
		c.mu.Unlock()
		select {
		case <-held.done:
		case <-ctx.Done():
			return Deployment{}, fmt.Errorf("wait for a maintenance pass on %s: %w", spec.Name, ctx.Err())
		}
		c.mu.Lock()
	}
	l := &lease{id: id, done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancelCause(c.runCtx)
	c.leases[spec.Name] = l
	// Added under the lock Close takes to set closed, so that Close waits
	// for every launch that got past the check above.
	c.wg.Add(1)
	c.mu.Unlock()

	d, err := c.record(ctx, id, spec, kind, trigger, plan)
	if err != nil {
		c.release(spec.Name, l)
		c.wg.Done()
		return Deployment{}, err
	}
	queued := Event{Time: d.CreatedAt, Type: EventStatus, Status: StatusQueued.String()}
	c.events.open(id).append(queued, false)
	c.publishDeployment(d, queued)

	go func() {
		defer c.wg.Done()
		defer c.release(spec.Name, l)
		c.execute(l, spec, d)
	}()
	return d, nil
}

func (c *Controller) record(ctx context.Context, id string, spec ServiceSpec, kind Kind, trigger Trigger,
	plan func(ServiceState) (Deployment, error)) (Deployment, error) {
	st, err := c.state(ctx, spec.Name)
	if err != nil {
		return Deployment{}, err
	}
	d, err := plan(st)
	if err != nil {
		return Deployment{}, err
	}
	d.ID = id
	d.Service = spec.Name
	d.Kind = kind
	d.Status = StatusQueued
	d.Trigger = trigger
	d.Steps = []Step{}
	d.CreatedAt = c.now().UTC()
	if err := c.store.PutDeployment(ctx, d); err != nil {
		return Deployment{}, fmt.Errorf("record deployment: %w", err)
	}
	return d, nil
}

// Wait blocks until the deployment with the given id is no longer running
// in this process or ctx is done, then returns its record.
func (c *Controller) Wait(ctx context.Context, id string) (Deployment, error) {
	c.mu.Lock()
	var done chan struct{}
	for _, l := range c.leases {
		if l.id == id {
			done = l.done
		}
	}
	c.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return Deployment{}, ctx.Err()
		}
	}
	return c.Deployment(ctx, id)
}

// Services returns every configured service, sorted by name.
func (c *Controller) Services(ctx context.Context) ([]ServiceView, error) {
	views := make([]ServiceView, 0, len(c.names))
	for _, name := range c.names {
		v, err := c.Service(ctx, name)
		if err != nil {
			return nil, err
		}
		views = append(views, v)
	}
	return views, nil
}

// Service returns a service's state joined with its containers.
func (c *Controller) Service(ctx context.Context, name string) (ServiceView, error) {
	spec, err := c.spec(name)
	if err != nil {
		return ServiceView{}, err
	}
	rec, err := c.records(ctx, name)
	if err != nil {
		return ServiceView{}, err
	}
	st := rec.state
	// From memory while the container feed is followed (FollowContainers).
	containers, err := c.containersOf(ctx, name)
	if err != nil {
		return ServiceView{}, err
	}
	v := ServiceView{
		Name:         name,
		ActiveColor:  st.ActiveColor,
		ActiveImage:  st.ActiveImage,
		StandbyColor: st.StandbyColor,
		StandbyImage: st.StandbyImage,
		Colors: map[Color]ColorView{
			Blue:  {Containers: []Container{}},
			Green: {Containers: []Container{}},
		},
		RepositoryURL:     spec.RepositoryURL,
		ActiveDeployment:  rec.active,
		StandbyDeployment: rec.standby,
		Deployment:        rec.last,
		LastFailure:       rec.lastFailure,
		LastSwitch:        rec.lastSwitch,
		RollbackSchema:    schemaChange(spec, st, rec.active, rec.standby),
	}
	for i, ct := range containers {
		if ct.Health == "" && ct.Running() {
			containers[i].Health = c.probeResults.get(ct.ID)
		}
	}
	for color, cv := range v.Colors {
		// A color may hold a running deploy's new containers beside the
		// standby's own: they are shown apart, never as the standby.
		own := members(containers, name, color, st.deploymentOf(color))
		cv.Containers = append(cv.Containers, own...)
		cv.Others = strays(containers, name, color, st.deploymentOf(color))
		if len(own) > 0 {
			cv.Image = own[len(own)-1].Image
		}
		v.Colors[color] = cv
	}
	// The store knows which image each color was deployed with even when
	// its containers are gone.
	for color, image := range map[Color]string{st.ActiveColor: st.ActiveImage, st.StandbyColor: st.StandbyImage} {
		if cv, ok := v.Colors[color]; ok {
			cv.Image = image
			v.Colors[color] = cv
		}
	}
	if sb, ok := v.Colors[st.StandbyColor]; ok && len(sb.Containers) > 0 {
		v.StandbyWarm = len(running(sb.Containers)) == len(sb.Containers)
	}
	if c.traffic != nil {
		v.Traffic = c.trafficView(ctx, name, rec.traffic)
	}
	return v, nil
}

// outcomeLookback bounds how far back recentOutcomes reads: a failure
// older than that many deployments of the service is no longer news.
const outcomeLookback = 50

// recentOutcomes reads name's recent deployments, newest first, for two
// things. failure is the newest deploy that failed or was interrupted
// after the last successful deploy, or nil: rollbacks neither raise nor
// clear it, only a deploy that succeeds does. lastSwitch is the newest
// deploy or rollback that moved traffic, or nil.
func (c *Controller) recentOutcomes(ctx context.Context, name string) (failure, lastSwitch *Deployment, err error) {
	ds, err := c.store.ListDeployments(ctx, name, outcomeLookback)
	if err != nil {
		return nil, nil, fmt.Errorf("recent deployments of %s: %w", name, err)
	}
	failureDone := false
	for i := range ds {
		d := &ds[i]
		if lastSwitch == nil && (d.Status == StatusSucceeded || d.Status == StatusRolledBack) {
			lastSwitch = d
		}
		if !failureDone && d.Kind == KindDeploy {
			switch d.Status {
			case StatusSucceeded:
				failureDone = true
			case StatusFailed, StatusInterrupted, StatusRolledBack:
				failure, failureDone = d, true
			}
		}
		if lastSwitch != nil && failureDone {
			break
		}
	}
	return failure, lastSwitch, nil
}

// Deployments lists deployments newest first, of one service or ("") all.
func (c *Controller) Deployments(ctx context.Context, service string, limit int) ([]Deployment, error) {
	if service != "" {
		if _, err := c.spec(service); err != nil {
			return nil, err
		}
	}
	ds, err := c.store.ListDeployments(ctx, service, limit)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	if ds == nil {
		ds = []Deployment{}
	}
	return ds, nil
}

// Deployment returns one deployment; ENOTFOUND when there is none.
func (c *Controller) Deployment(ctx context.Context, id string) (Deployment, error) {
	d, err := c.store.GetDeployment(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Deployment{}, Errorf(ENOTFOUND, "no deployment %q", id)
	}
	if err != nil {
		return Deployment{}, fmt.Errorf("load deployment %s: %w", id, err)
	}
	return d, nil
}

// unavailable turns an ErrUnavailable from a port into an error users see
// as 503, keeping the cause in the chain for the logs.
func unavailable(what string, err error) error {
	if errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %w", Errorf(EUNAVAILABLE, "%s: docker engine unavailable", what), err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// runtime is what runs the service's containers: the Swarm runtime for a
// service on RuntimeSwarm, the local engine's for every other (and for a
// name that is no service, which has no containers to find anyway).
func (c *Controller) runtime(service string) Runtime {
	if c.services[service].Runtime == RuntimeSwarm {
		return c.swarm
	}
	return c.rt
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/pkg/controller"
)

const (
	pingTimeout    = 5 * time.Second
	buildTimeout   = 5 * time.Minute
	cleanupTimeout = time.Minute
	sampleEvery    = 100 * time.Millisecond
)

// image tags the benchmark deploys; each bakes its version in.
var imageArgs = map[string]map[string]string{
	"v1": {"APP_VERSION": "v1"},
	"v2": {"APP_VERSION": "v2"},
}

// errUnavailable marks a missing Docker engine or nginx, which a test may
// skip on outside CI.
var errUnavailable = errors.New("unavailable")

// switchEvent is one switch of a phase, or one resilience event. Times
// are ns since the phase began.
type switchEvent struct {
	Label string `json:"label"` // deploy, rollback, recreate, reload, or a resilience event
	Call  int64  `json:"call_ns"`
	Start int64  `json:"start_ns"`
	End   int64  `json:"end_ns"`
	From  string `json:"from_color,omitempty"`
	To    string `json:"to_color,omitempty"`
	// Set for deployd's deployments.
	DeploymentID string `json:"deployment_id,omitempty"`
	TotalNs      int64  `json:"total_ns,omitempty"`
	HealthNs     int64  `json:"health_ns,omitempty"`
	DrainNs      int64  `json:"drain_ns,omitempty"`
	// StepsMs is each step's duration, by step name.
	StepsMs map[string]float64 `json:"steps_ms,omitempty"`
	// Set for recreate: when the new container first answered /health.
	Ready int64 `json:"ready_ns,omitempty"`
	// Set for resilience events: the pid of the process signalled and of
	// the one serving after (daemon or switchd); for a switch-mode
	// daemon's events also switchd's pid before and after, the same when
	// the daemon's restart left it alone.
	PIDBefore     int `json:"pid_before,omitempty"`
	PIDAfter      int `json:"pid_after,omitempty"`
	SwitchdBefore int `json:"switchd_pid_before,omitempty"`
	SwitchdAfter  int `json:"switchd_pid_after,omitempty"`
	// SwitchdParent is the parent of the switchd a switchd event acts on:
	// the daemon's pid when the daemon started it.
	SwitchdParent int `json:"switchd_parent_pid,omitempty"`
}

// phase is one strategy's run under one load.
type phase struct {
	Strategy  string
	Load      string
	Start     time.Time
	Duration  time.Duration
	Records   []record
	Switches  []switchEvent
	Footprint *footprint
	// LoadAvg is the machine's 1-minute load average as the phase began
	// and as it ended (-1 when unreadable), to see a disturbed run.
	LoadAvg [2]float64
}

// world is what the setup built and the teardown removes.
type world struct {
	opts    options
	log     logrus.FieldLogger
	cli     *client.Client
	ng      *lab.Nginx
	d       *daemon     // traffic.mode reload
	sw      *daemon     // traffic.mode switch; nil unless its strategy or resilience runs
	swData  string      // sw's data dir, set before sw starts: teardown stops its switchd
	bin     string      // the deployd binary
	svc     string      // d's service
	swSvc   string      // sw's service
	rcSvc   string      // the recreate strategy's upstream and container label
	smSvc   string      // the swarm strategy's service
	sm      *swarmSetup // the swarm strategy's; nil unless it runs
	rcPort  int
	rcID    string // the recreate container now running
	rcColor uint8
	tmp     string
}

// run does a whole benchmark: setup, each strategy in order, the report
// (table on out, JSON and SVG in opts.OutDir), teardown.
func run(ctx context.Context, opts options, log logrus.FieldLogger, out io.Writer) (*result, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	w := &world{opts: opts, log: log, svc: opts.Service}
	if w.svc == "" {
		h, err := randomHex(4)
		if err != nil {
			return nil, err
		}
		w.svc = "zb" + h
	}
	w.swSvc, w.rcSvc, w.smSvc = w.svc+"sw", w.svc+"rc", w.svc+"sm"
	defer w.teardown()
	if err := w.setup(ctx); err != nil {
		return nil, err
	}

	var phases []*phase
	for _, l := range opts.Loads {
		for _, s := range opts.Strategies {
			fields := logrus.Fields{"strategy": s, "load": l}
			log.WithFields(fields).Info("phase starts")
			ps, err := w.runStrategy(ctx, s, l)
			if err != nil {
				return nil, fmt.Errorf("strategy %s, load %s: %w", s, l, err)
			}
			for _, p := range ps {
				log.WithFields(fields).WithFields(logrus.Fields{"phase": p.Strategy, "requests": len(p.Records)}).Info("phase done")
			}
			phases = append(phases, ps...)
		}
	}

	res := analyze(opts, phases)
	res.Machine = machineFacts(ctx, w.cli)
	res.Created = time.Now().UTC()
	printTable(out, res)
	if err := writeResults(opts.OutDir, opts.Name, res, phases); err != nil {
		return res, err
	}
	return res, nil
}

func (w *world) setup(ctx context.Context) error {
	if _, err := lab.FindNginx(); err != nil {
		return fmt.Errorf("%w: %w", errUnavailable, err)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("%w: docker client: %w", errUnavailable, err)
	}
	w.cli = cli
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		return fmt.Errorf("%w: docker engine at %s does not answer: %w", errUnavailable, cli.DaemonHost(), err)
	}

	if w.tmp, err = os.MkdirTemp(w.opts.TempDir, "deployd-bench-"); err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	// Before any of the bench's containers start: a swarm init disturbs
	// running containers' networking.
	if w.opts.has(strategyDeploydSwarm) {
		if err := w.joinSwarm(ctx); err != nil {
			return err
		}
	}
	bctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	root, err := lab.ModuleRoot(bctx)
	if err != nil {
		return err
	}
	w.log.Info("building deployd and the demo images")
	var binErr, swarmErr error
	var wg sync.WaitGroup
	if w.opts.has(strategyDeployd) || w.opts.has(strategyDeploydSwitch) || w.opts.has(strategyResilience) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.bin, binErr = lab.BuildDeployd(bctx, root, w.tmp, w.opts.Race)
		}()
	}
	if w.sm != nil {
		// The swarm strategy's deployd image (its own static build) and
		// its registry.
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := filepath.Join(w.tmp, "deployd-image")
			if swarmErr = os.Mkdir(dir, 0o755); swarmErr != nil {
				return
			}
			if swarmErr = lab.BuildDeploydImage(bctx, root, dir, swarmDeploydImage); swarmErr == nil {
				swarmErr = w.startRegistry(bctx)
			}
		}()
	}
	app, err := lab.BuildDemoApp(bctx)
	if err == nil {
		for tag, args := range imageArgs {
			if err = app.BuildImage(bctx, cli, repository+":"+tag, args); err != nil {
				break
			}
		}
	}
	wg.Wait()
	if err = errors.Join(err, binErr, swarmErr); err != nil {
		return err
	}
	if w.sm != nil {
		if err := w.pushDemoImages(ctx); err != nil {
			return err
		}
	}

	prefix := filepath.Join(w.tmp, "nginx")
	if err := os.Mkdir(prefix, 0o755); err != nil {
		return fmt.Errorf("nginx prefix: %w", err)
	}
	// Every strategy's load goes through a /<service>/ location, so that
	// nginx's own work is the same for all of them.
	w.ng, err = lab.StartNginx(ctx, prefix, lab.NginxConfig{
		Services:          []string{w.svc, w.swSvc, w.rcSvc, w.smSvc},
		PrefixedOnly:      true,
		WorkerProcesses:   w.opts.NginxWorkers,
		WorkerConnections: 1024,
		HTTPExtra:         w.opts.NginxHTTPExtra,
		MainExtra:         w.opts.NginxMainExtra,
	})
	if err != nil {
		return err
	}

	// Every strategy but recreate sends its load to deployd's service, so
	// deployd always runs; it is idle outside its own phase.
	if w.bin == "" {
		if w.bin, err = lab.BuildDeployd(bctx, root, w.tmp, w.opts.Race); err != nil {
			return err
		}
	}
	if w.d, err = w.startDeployd(ctx, w.svc, config.TrafficModeReload); err != nil {
		return err
	}
	if w.opts.has(strategyDeploydSwitch) || w.opts.has(strategyResilience) {
		if w.sw, err = w.startDeployd(ctx, w.swSvc, config.TrafficModeSwitch); err != nil {
			return err
		}
	}
	if w.opts.has(strategyRecreate) {
		if err := w.startRecreate(ctx); err != nil {
			return err
		}
	}
	if w.sm != nil {
		if err := w.startSwarmDeployd(ctx); err != nil {
			return err
		}
	}
	return nil
}

// startDeployd starts a deployd in its own directory under w.tmp, serving
// svc in the given traffic mode, and deploys v1 (blue) through it. In
// switch mode it also waits for switchd's pid file.
func (w *world) startDeployd(ctx context.Context, svc, mode string) (*daemon, error) {
	dir := filepath.Join(w.tmp, "deployd-"+mode)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("deployd dir: %w", err)
	}
	spec := daemon{
		apiClient: apiClient{svc: svc}, logPath: filepath.Join(dir, "deployd.log"),
		bin: w.bin, dataDir: filepath.Join(dir, "data"), switchMode: mode == config.TrafficModeSwitch,
	}
	conf, err := writeDaemonConfig(dir, spec.dataDir, svc, w.ng, mode)
	if err != nil {
		return nil, err
	}
	spec.config = conf
	if spec.switchMode {
		// The daemon starts switchd detached, and it outlives the daemon:
		// from here on teardown stops it, whatever fails next.
		w.swData = spec.dataDir
	}
	d, err := startDaemon(ctx, spec)
	if err != nil {
		return nil, err
	}
	id, err := d.deploy(ctx, "v1")
	if err == nil {
		_, err = d.waitSucceeded(ctx, id)
	}
	if err == nil && d.switchMode {
		_, err = d.switchdPID(ctx, 0)
	}
	if err != nil {
		err = fmt.Errorf("first deploy (traffic.mode %s): %w\ndeployd log:\n%s", mode, err, d.logTail())
		if serr := d.Stop(); serr != nil {
			w.log.WithError(serr).Warn("stop deployd")
		}
		return nil, err
	}
	return d, nil
}

// teardown stops deployd and then its switchd (a daemon still running
// would start switchd again), removes every container of the run and stops
// nginx, each with its own deadline so one failure does not skip the rest.
func (w *world) teardown() {
	for _, d := range []*daemon{w.d, w.sw} {
		if d == nil {
			continue
		}
		if err := d.Stop(); err != nil {
			w.log.WithError(err).Warn("stop deployd")
		}
	}
	if w.swData != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*switchdStopLimit)
		if err := lab.StopSwitchd(ctx, w.swData, switchdStopLimit); err != nil {
			w.log.WithError(err).Warn("stop switchd")
		}
		cancel()
	}
	if w.cli != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		for _, s := range []string{w.svc, w.swSvc, w.rcSvc} {
			if err := removeServiceContainers(ctx, w.cli, s); err != nil {
				w.log.WithError(err).Warn("cleanup")
			}
		}
		cancel()
	}
	if w.sm != nil {
		w.teardownSwarm()
	}
	if w.ng != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := w.ng.Stop(ctx); err != nil {
			w.log.WithError(err).Warn("stop nginx")
		}
		cancel()
	}
	if w.cli != nil {
		_ = w.cli.Close()
	}
	if w.tmp != "" {
		_ = os.RemoveAll(w.tmp)
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// runStrategy runs one strategy's phases under one load: one phase, or
// two for resilience (one per traffic mode).
func (w *world) runStrategy(ctx context.Context, strategy, load string) ([]*phase, error) {
	one := func(run func() (*phase, error)) ([]*phase, error) {
		la0 := loadAverage()
		p, err := run()
		if err != nil {
			return nil, err
		}
		p.LoadAvg = [2]float64{la0, loadAverage()}
		return []*phase{p}, nil
	}
	switch strategy {
	case strategyDeployd:
		return one(func() (*phase, error) { return w.runDeployd(ctx, strategy, load, w.d) })
	case strategyDeploydSwitch:
		return one(func() (*phase, error) { return w.runDeployd(ctx, strategy, load, w.sw) })
	case strategyDeploydSwarm:
		return one(func() (*phase, error) { return w.runDeployd(ctx, strategy, load, w.sm.d) })
	case strategyRecreate:
		return one(func() (*phase, error) { return w.runRecreate(ctx, load) })
	case strategyReload:
		return one(func() (*phase, error) { return w.runReload(ctx, load) })
	case strategyResilience:
		sw, err := one(func() (*phase, error) { return w.runResilience(ctx, phaseResilienceSwitch, load, &w.sw, switchEvents) })
		if err != nil {
			return nil, err
		}
		rl, err := one(func() (*phase, error) { return w.runResilience(ctx, phaseResilienceReload, load, &w.d, reloadEvents) })
		if err != nil {
			return nil, err
		}
		return append(sw, rl...), nil
	}
	return nil, fmt.Errorf("unknown strategy %q", strategy)
}

// serviceURL is the nginx URL of svc's root.
func (w *world) serviceURL(svc string) string { return w.ng.URL + "/" + svc + "/" }

// runPhase keeps the load on target while it performs n actions (2K
// switches, or resilience events), at least opts.PerCycle apart, with a
// quiet PerCycle before the first and opts.Tail after the last.
func (w *world) runPhase(ctx context.Context, strategy, load, target string, n int, act func(ctx context.Context, i int, start time.Time) (switchEvent, error)) (*phase, error) {
	p := &phase{Strategy: strategy, Load: load, Start: time.Now()}
	ld, err := startLoad(ctx, loadConfig{Target: target, C: w.opts.C, Rate: w.opts.Rate, PostEvery: w.opts.postEvery(load), MaxRecords: w.opts.MaxRecords}, p.Start)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			ld.stop()
		}
	}()
	if err := sleepCtx(ctx, max(w.opts.PerCycle, time.Second)); err != nil {
		return nil, err
	}
	for i := range n {
		t0 := time.Now()
		ev, err := act(ctx, i, p.Start)
		if err != nil {
			return nil, err
		}
		p.Switches = append(p.Switches, ev)
		// At least Settle after the action, so that traffic is seen on
		// the new version before the next switch even when the action
		// itself took longer than a cycle.
		if err := sleepCtx(ctx, max(w.opts.PerCycle-time.Since(t0), w.opts.Settle)); err != nil {
			return nil, err
		}
	}
	if err := sleepCtx(ctx, w.opts.Tail); err != nil {
		return nil, err
	}
	p.Records = ld.stop()
	stopped = true
	p.Duration = time.Since(p.Start)
	return p, nil
}

func colorName(c controller.Color) string { return string(c) }

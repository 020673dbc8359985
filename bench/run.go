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

// switchEvent is one switch of a phase. Times are ns since the phase began.
type switchEvent struct {
	Label string `json:"label"` // deploy, rollback, recreate, reload
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
}

// phase is one strategy's run under load.
type phase struct {
	Strategy  string
	Start     time.Time
	Duration  time.Duration
	Records   []record
	Switches  []switchEvent
	Footprint *footprint
}

// footprint is deployd's own cost during its phase.
type footprint struct {
	IdleRSS     int64     `json:"idle_rss_bytes"`
	PeakRSS     int64     `json:"peak_rss_bytes"`
	CPUSeconds  float64   `json:"cpu_seconds"`
	Deployments int       `json:"deployments"`
	StatusLatMs []float64 `json:"-"`
	StatusErrs  int       `json:"status_errors"`
}

// world is what the setup built and the teardown removes.
type world struct {
	opts    options
	log     logrus.FieldLogger
	cli     *client.Client
	ng      *lab.Nginx
	d       *daemon
	svc     string // deployd's service
	rcSvc   string // the recreate strategy's upstream and container label
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
	w.rcSvc = w.svc + "rc"
	defer w.teardown()
	if err := w.setup(ctx); err != nil {
		return nil, err
	}

	var phases []*phase
	for _, s := range opts.Strategies {
		log.WithField("strategy", s).Info("phase starts")
		var p *phase
		var err error
		switch s {
		case strategyDeployd:
			p, err = w.runDeployd(ctx)
		case strategyRecreate:
			p, err = w.runRecreate(ctx)
		case strategyReload:
			p, err = w.runReload(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("strategy %s: %w", s, err)
		}
		log.WithFields(logrus.Fields{"strategy": s, "requests": len(p.Records)}).Info("phase done")
		phases = append(phases, p)
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

	if w.tmp, err = os.MkdirTemp("", "deployd-bench-"); err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	bctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	root, err := lab.ModuleRoot(bctx)
	if err != nil {
		return err
	}
	w.log.Info("building deployd and the demo images")
	var bin string
	var binErr error
	var wg sync.WaitGroup
	if w.opts.has(strategyDeployd) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bin, binErr = lab.BuildDeployd(bctx, root, w.tmp, w.opts.Race)
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
	if err = errors.Join(err, binErr); err != nil {
		return err
	}

	prefix := filepath.Join(w.tmp, "nginx")
	if err := os.Mkdir(prefix, 0o755); err != nil {
		return fmt.Errorf("nginx prefix: %w", err)
	}
	w.ng, err = lab.StartNginx(ctx, prefix, lab.NginxConfig{
		Services:          []string{w.svc, w.rcSvc},
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
	if bin == "" {
		if bin, err = lab.BuildDeployd(bctx, root, w.tmp, w.opts.Race); err != nil {
			return err
		}
	}
	conf, err := writeDaemonConfig(w.tmp, w.svc, w.ng)
	if err != nil {
		return err
	}
	if w.d, err = startDaemon(ctx, bin, conf, w.svc, filepath.Join(w.tmp, "deployd.log")); err != nil {
		return err
	}
	id, err := w.d.deploy(ctx, "v1")
	if err != nil {
		return fmt.Errorf("first deploy: %w", err)
	}
	if _, err := w.d.waitSucceeded(ctx, id); err != nil {
		return fmt.Errorf("first deploy: %w\ndeployd log:\n%s", err, w.d.logTail())
	}
	if w.opts.has(strategyRecreate) {
		if err := w.startRecreate(ctx); err != nil {
			return err
		}
	}
	return nil
}

// teardown stops deployd, removes every container of the run and stops
// nginx, each with its own deadline so one failure does not skip the rest.
func (w *world) teardown() {
	if w.d != nil {
		if err := w.d.Stop(); err != nil {
			w.log.WithError(err).Warn("stop deployd")
		}
	}
	if w.cli != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		for _, s := range []string{w.svc, w.rcSvc} {
			if err := removeServiceContainers(ctx, w.cli, s); err != nil {
				w.log.WithError(err).Warn("cleanup")
			}
		}
		cancel()
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

// runPhase keeps the load on target while it performs 2K switches, at
// least opts.PerCycle apart, with a quiet PerCycle before the first and
// opts.Tail after the last.
func (w *world) runPhase(ctx context.Context, strategy, target string, act func(ctx context.Context, i int, start time.Time) (switchEvent, error)) (*phase, error) {
	p := &phase{Strategy: strategy, Start: time.Now()}
	ld, err := startLoad(ctx, loadConfig{Target: target, C: w.opts.C, Rate: w.opts.Rate, PostEvery: w.opts.PostEvery, MaxRecords: w.opts.MaxRecords}, p.Start)
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
	for i := range 2 * w.opts.K {
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

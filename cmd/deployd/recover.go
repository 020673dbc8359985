package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/dockerx"
	"github.com/deployd/deployd/pkg/nginxconf"
	"github.com/deployd/deployd/pkg/store"
)

const recoverUsage = `usage: deployd recover [--config PATH] [--force]

Rebuilds the store from what runs: the Docker containers deployd labelled
and the nginx upstream files. The old store file is kept beside the new one
as deployd.db.corrupt-<UTC time>. Run it with the daemon stopped, when
deployd refuses to start because its store file is corrupted. --force
rebuilds a store that opens fine (its deployment history is set aside).
`

// recoverRuntime is what recover reads from Docker.
type recoverRuntime interface {
	Containers(ctx context.Context, service string) ([]controller.Container, error)
}

// recoverCmd is `deployd recover`, with its outside world replaceable in
// tests.
type recoverCmd struct {
	getenv func(string) string
	now    func() time.Time
	// connect returns the Docker runtime and a function that closes it.
	connect func(ctx context.Context, cfg *config.Config) (recoverRuntime, func() error, error)
	stdout  io.Writer
	stderr  io.Writer
}

func runRecover(args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := recoverCmd{getenv: os.Getenv, now: time.Now, connect: connectDocker(stderr), stdout: stdout, stderr: stderr}
	if err := cmd.run(ctx, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "deployd recover: %v\n", err)
		return 1
	}
	return 0
}

func connectDocker(stderr io.Writer) func(ctx context.Context, cfg *config.Config) (recoverRuntime, func() error, error) {
	return func(ctx context.Context, cfg *config.Config) (recoverRuntime, func() error, error) {
		log := logrus.New()
		log.Out = stderr
		log.SetLevel(logrus.WarnLevel)
		c, err := dockerx.New(ctx, dockerx.Options{
			Host:         cfg.Docker.Host,
			PublishPorts: publishPorts(cfg),
			Logger:       log,
		})
		if err != nil {
			return nil, nil, err
		}
		return c, c.Close, nil
	}
}

func (r recoverCmd) run(ctx context.Context, args []string) error {
	fset := flag.NewFlagSet("deployd recover", flag.ContinueOnError)
	fset.SetOutput(r.stderr)
	fset.Usage = func() { fmt.Fprint(r.stderr, recoverUsage) }
	configFlag := fset.String("config", "", "configuration file (default: $DEPLOYD_CONFIG)")
	force := fset.Bool("force", false, "rebuild even a store that opens fine")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fset.Arg(0))
	}
	path, err := config.Path(*configFlag, r.getenv)
	if err != nil {
		return err
	}
	cfg, err := config.Load(path, r.getenv)
	if err != nil {
		return err
	}
	dbPath := filepath.Join(cfg.DataDir, "deployd.db")

	// Opening first tells a running daemon (the file's lock) from a
	// corrupted file from a healthy one.
	if err := r.checkStore(ctx, dbPath, *force); err != nil {
		return err
	}

	// Read everything before touching the file: with Docker unreachable
	// the old file stays where it is.
	rt, closeRT, err := r.connect(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to docker: %w", err)
	}
	defer func() { _ = closeRT() }()
	found, err := rebuildStates(ctx, cfg.ServiceSpecs(), rt, cfg.Nginx.UpstreamDir, r.now())
	if err != nil {
		return err
	}

	moved, err := store.MoveAside(ctx, dbPath, r.now())
	if err != nil {
		return err
	}
	if moved != "" {
		fmt.Fprintf(r.stdout, "moved %s aside to %s\n", dbPath, moved)
	}
	fresh, err := store.Open(ctx, store.Options{Path: dbPath})
	if err != nil {
		return fmt.Errorf("create new store: %w", err)
	}
	for _, f := range found {
		if !f.State.ActiveColor.Valid() {
			continue
		}
		if err := fresh.PutService(ctx, f.State); err != nil {
			_ = fresh.Close()
			return fmt.Errorf("record %s: %w", f.State.Name, err)
		}
	}
	if err := fresh.Close(); err != nil {
		return err
	}
	for _, f := range found {
		fmt.Fprintln(r.stdout, f.summary())
	}
	fmt.Fprintf(r.stdout, "wrote %s; start deployd again\n", dbPath)
	return nil
}

// finding is what recover concluded about one service.
type finding struct {
	State controller.ServiceState
	// Note explains a service left without an active color.
	Note string
}

func (f finding) summary() string {
	st := f.State
	if !st.ActiveColor.Valid() {
		return fmt.Sprintf("%s: no active color (%s)", st.Name, f.Note)
	}
	s := fmt.Sprintf("%s: active %s (%s, deployment %s)", st.Name, st.ActiveColor, orDash(st.ActiveImage), orDash(st.ActiveDeployment))
	if st.StandbyColor.Valid() {
		s += fmt.Sprintf(", standby %s (%s, deployment %s)", st.StandbyColor, orDash(st.StandbyImage), orDash(st.StandbyDeployment))
	} else {
		s += ", no standby"
	}
	return s
}

// rebuildStates works out each service's state from its labelled
// containers and its upstream file: the active color is the one whose
// running containers, all of them or those of one deployment (a deploy
// runs its containers beside the standby's in one color), are exactly the
// upstream's servers; the standby is the other color when it has
// containers (running or not); images and deployments come from the
// containers' config and labels.
func rebuildStates(ctx context.Context, specs []controller.ServiceSpec, rt recoverRuntime, upstreamDir string, now time.Time) ([]finding, error) {
	var out []finding
	for _, spec := range specs {
		cs, err := rt.Containers(ctx, spec.Name)
		if err != nil {
			return nil, fmt.Errorf("list containers of %s: %w", spec.Name, err)
		}
		upstream, err := nginxconf.ReadAddrs(upstreamDir, spec.Name)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		out = append(out, rebuildState(spec.Name, cs, upstream, now.UTC()))
	}
	return out, nil
}

func rebuildState(name string, cs []controller.Container, upstream []string, now time.Time) finding {
	f := finding{State: controller.ServiceState{Name: name, UpdatedAt: now}}
	byColor := map[controller.Color][]controller.Container{}
	for _, c := range cs {
		if c.Color.Valid() {
			byColor[c.Color] = append(byColor[c.Color], c)
		}
	}
	if len(upstream) == 0 {
		f.Note = "the upstream is the placeholder or missing"
		return f
	}
	var active controller.Color
	var activeSet []controller.Container
	for _, color := range []controller.Color{controller.Blue, controller.Green} {
		sets := map[string][]controller.Container{"": byColor[color]}
		for _, c := range byColor[color] {
			sets[c.Deployment] = append(sets[c.Deployment], c)
		}
		// "" (the whole color) sorts first: one deployment's set that
		// matches wins over it.
		for _, dep := range slices.Sorted(maps.Keys(sets)) {
			set := sets[dep]
			var addrs []string
			for _, c := range set {
				if c.Running() && c.Address != "" {
					addrs = append(addrs, c.Address)
				}
			}
			slices.Sort(addrs)
			if slices.Equal(slices.Compact(addrs), upstream) {
				active, activeSet = color, set
			}
		}
	}
	if active == controller.NoColor {
		f.Note = fmt.Sprintf("the upstream's servers %v are not the running containers of either color", upstream)
		return f
	}
	f.State.ActiveColor = active
	f.State.ActiveImage, f.State.ActiveDeployment = imageAndDeployment(activeSet)
	if standby := active.Other(); len(byColor[standby]) > 0 {
		f.State.StandbyColor = standby
		f.State.StandbyImage, f.State.StandbyDeployment = imageAndDeployment(byColor[standby])
	}
	return f
}

// imageAndDeployment returns the image and deployment most of the
// containers carry; running ones first, so they win a tie.
func imageAndDeployment(cs []controller.Container) (string, string) {
	sorted := slices.Clone(cs)
	slices.SortStableFunc(sorted, func(a, b controller.Container) int {
		if a.Running() != b.Running() {
			if a.Running() {
				return -1
			}
			return 1
		}
		return 0
	})
	counts := map[[2]string]int{}
	var best [2]string
	for _, c := range sorted {
		k := [2]string{c.Image, c.Deployment}
		counts[k]++
		if counts[k] > counts[best] {
			best = k
		}
	}
	return best[0], best[1]
}

// checkStore refuses while a daemon holds the store and, without force,
// when the store is healthy. A missing store is simply rebuilt.
func (r recoverCmd) checkStore(ctx context.Context, dbPath string, force bool) error {
	if _, err := os.Stat(dbPath); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(r.stdout, "no store at %s yet\n", dbPath)
		return nil
	}
	existing, err := store.Open(ctx, store.Options{Path: dbPath, OpenTimeout: 500 * time.Millisecond})
	var corrupt *store.CorruptError
	switch {
	case errors.Is(err, store.ErrLocked):
		return fmt.Errorf("%s is in use: stop the running deployd first", dbPath)
	case errors.As(err, &corrupt):
		fmt.Fprintf(r.stdout, "store %s is corrupted: %v\n", dbPath, corrupt.Cause)
	case err != nil:
		return err
	default:
		if cerr := existing.Close(); cerr != nil {
			return cerr
		}
		if !force {
			return fmt.Errorf("store %s opens fine; nothing to recover (pass --force to rebuild it anyway)", dbPath)
		}
	}
	return nil
}

// withRecoverCommand completes a corrupted-store error from store.Open with
// the exact command to run, which only the command line knows: the store's
// message ends in "deployd recover".
func withRecoverCommand(err error, configPath string) error {
	if !errors.Is(err, store.ErrCorrupt) || configPath == "" {
		return err
	}
	return fmt.Errorf("%w --config %s", err, configPath)
}

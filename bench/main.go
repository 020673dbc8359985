// Command bench is deployd's zero-downtime benchmark: it sets up a private
// nginx, the demo app's images and a deployd subprocess on the real Docker
// engine, keeps a keep-alive load running through nginx, and compares four
// ways of switching versions under that same load:
//
//   - deployd: K deploys and K rollbacks through deployd's API (blue-green),
//     traffic.mode reload: nginx's upstream is rewritten and reloaded;
//   - deployd-switch: the same through a second deployd in traffic.mode
//     switch: nginx's upstream points at deployd's switch, which changes
//     its targets without a reload;
//   - deployd-swarm: the same as deployd-switch with the service on
//     runtime: swarm, the local engine made a single-node swarm, deployd
//     in a container on the service's overlay network (see swarm.go);
//   - recreate: stop, remove and start the app's one container on the same
//     port, like `docker compose up -d` of a new image;
//   - reload: no change at all, only `nginx -s reload` at the same cadence,
//     the floor any reload-based switch pays;
//   - resilience: no switch, but crashes and upgrades under the load:
//     kill -9 and restart, and graceful restart, of the switch mode's
//     deployd, in-place upgrade (SIGHUP) and kill -9 of its switchd, and
//     for contrast kill -9 and restart of the reload mode's deployd, each
//     -resilience-n times (default max(k, 3)).
//
// Each strategy runs under each load: mixed (1 in -post-every requests a
// POST) and post (every request a POST, the case a reload fails).
//
// It prints a table, and writes <out>/<name>.json (every figure, the
// configuration and the machine) and <out>/<name>.svg (the timeline).
//
//	go run ./bench -k 10 -c 16 -name full
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, opts, log, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// durationFlag accepts a Go duration or the names "short" and "full".
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}

func (f durationFlag) Set(s string) error {
	switch s {
	case "short":
		*f.d = shortCycle
		return nil
	case "full":
		*f.d = fullCycle
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("%q is neither a duration nor short/full", s)
	}
	*f.d = d
	return nil
}

const (
	shortCycle = 400 * time.Millisecond
	fullCycle  = 3 * time.Second
)

func parseFlags(args []string) (options, error) {
	o := defaultOptions()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.IntVar(&o.K, "k", o.K, "deploy+rollback cycles per strategy (2K switches each)")
	fs.IntVar(&o.C, "c", o.C, "concurrent keep-alive clients")
	fs.IntVar(&o.Rate, "rate", o.Rate, "fixed total request rate per second (0: as fast as the clients go)")
	fs.IntVar(&o.PostEvery, "post-every", o.PostEvery, "every Nth request of a client is a POST (0: GET only)")
	fs.Var(durationFlag{&o.PerCycle}, "duration-per-cycle", "least time between two switches: a duration, short ("+shortCycle.String()+") or full ("+fullCycle.String()+")")
	fs.DurationVar(&o.Settle, "settle", o.Settle, "least time after a switch ends before the next starts")
	fs.StringVar(&o.Name, "name", o.Name, "result name: writes <out>/<name>.json and <out>/<name>.svg")
	fs.StringVar(&o.OutDir, "out", o.OutDir, "result directory")
	strategies := fs.String("strategies", strings.Join(o.Strategies, ","), "comma-separated strategies to run, in order: deployd, deployd-switch, deployd-swarm, recreate, reload, resilience")
	fs.IntVar(&o.ResilienceN, "resilience-n", o.ResilienceN, "times the resilience strategy does each of its events per load (0: max(k, 3))")
	loads := fs.String("loads", strings.Join(o.Loads, ","), "comma-separated loads, each runs every strategy: mixed (1 in -post-every a POST), post (every request a POST)")
	fs.IntVar(&o.NginxWorkers, "nginx-workers", o.NginxWorkers, "nginx worker_processes")
	fs.StringVar(&o.NginxHTTPExtra, "nginx-extra", o.NginxHTTPExtra, "raw directives added to nginx's http block, e.g. 'keepalive_timeout 5s;'")
	fs.StringVar(&o.NginxMainExtra, "nginx-main-extra", o.NginxMainExtra, "raw directives added to nginx's main context, e.g. 'worker_shutdown_timeout 1s;'")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.Strategies, o.Loads = splitList(*strategies), splitList(*loads)
	return o, o.validate()
}

// splitList splits a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

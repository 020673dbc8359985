package main

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/internal/lab"
)

// TestBenchShort runs the whole benchmark, every strategy under both
// loads, with K=1, short cycles and each resilience event once, so the
// harness cannot rot. It asserts that the harness works, never on timings:
// setup succeeds, every phase records requests, every deployd reports its
// footprint (switchd's too in switch mode, and on swarm the app's tasks),
// nothing of the swarm strategy is left behind, every resilience event
// replaces the process it acts on (and a daemon's restart leaves switchd
// alone), no switchd outlives the run, the goals are evaluated, the JSON
// and SVG are written, and recreate and the kill -9 of switchd show
// failures (if they did not, the harness would be blind to downtime).
func TestBenchShort_HarnessRunsAndCatchesDowntime(t *testing.T) {
	opts := defaultOptions()
	opts.K = 1
	opts.C = 4
	opts.PerCycle = shortCycle
	opts.Tail = 500 * time.Millisecond
	opts.Name = "short"
	opts.OutDir = t.TempDir()
	opts.MaxRecords = 2_000_000
	opts.ResilienceN = 1
	svc, err := randomHex(4)
	if err != nil {
		t.Fatal(err)
	}
	opts.Service = "zt" + svc
	// Not t.TempDir: switchd's control socket under it would pass the
	// 108-byte limit of a Unix socket path.
	if opts.TempDir, err = os.MkdirTemp("", "zb"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		removeLeftovers(t, opts.Service, opts.TempDir)
		if err := os.RemoveAll(opts.TempDir); err != nil {
			t.Errorf("remove temp dir: %v", err)
		}
	})

	log, _ := logtest.NewNullLogger()
	log.SetLevel(logrus.WarnLevel)
	// The swarm strategy's setup (a static build of deployd, its image, a
	// registry and the pushes) and its Swarm services add a minute or so.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var table strings.Builder
	res, err := run(ctx, opts, log, &table)
	if errors.Is(err, errUnavailable) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true, so this is a failure, not a skip)", err)
		}
		t.Skipf("%v; skipping (with CI=true this fails)", err)
	}
	if left := switchdsUnder(opts.TempDir); len(left) > 0 {
		t.Errorf("switchd processes %v outlive the run (err %v): the bench must stop them", left, err)
	}
	if left := swarmLeftovers(t, opts.Service+"sm"); len(left) > 0 {
		t.Errorf("the swarm strategy left %v behind (err %v): the bench must remove them", left, err)
	}
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("table:\n%s", table.String())

	// Resilience runs two phases per load, one per traffic mode.
	if got, want := len(res.Strategies), (len(opts.Strategies)+1)*len(opts.Loads); got != want {
		t.Fatalf("phases = %d, want %d (strategies × loads, resilience twice)", got, want)
	}
	for _, s := range res.Strategies {
		if isResilience(s.Name) {
			if s.Requests == 0 {
				t.Errorf("%s (%s): requests = 0, want some", s.Name, s.Load)
			}
			for _, ev := range s.Switches {
				if ev.PIDBefore == 0 || ev.PIDAfter == 0 || ev.PIDBefore == ev.PIDAfter || ev.End <= ev.Start {
					t.Errorf("%s (%s): event %+v, want a process replaced by another after the signal", s.Name, s.Load, ev)
				}
				if ev.SwitchdBefore != ev.SwitchdAfter {
					t.Errorf("%s (%s): %s changed switchd's pid %d to %d, want the daemon's restart to leave it alone", s.Name, s.Load, ev.Label, ev.SwitchdBefore, ev.SwitchdAfter)
				}
			}
			continue
		}
		switchMode := s.Name == strategyDeploydSwitch || s.Name == strategyDeploydSwarm
		if switchMode && s.VsReloadPath == nil {
			t.Errorf("%s (%s): no comparison with the reload path", s.Name, s.Load)
		}
		if s.Requests == 0 {
			t.Errorf("%s: requests = 0, want some", s.Name)
		}
		if got, want := len(s.Switches), 2*opts.K; got != want {
			t.Errorf("%s: switches = %d, want %d", s.Name, got, want)
		}
		if s.Name == strategyRecreate && s.Failures.Total == 0 {
			t.Errorf("recreate: failed requests = 0, want some: the harness does not see downtime")
		}
		if (s.Name == strategyDeployd || switchMode) && s.Footprint == nil {
			t.Errorf("%s (%s): no footprint recorded", s.Name, s.Load)
		}
		if f := s.Footprint; switchMode && f != nil {
			if f.Switchd == nil || f.Switchd.PID == 0 || f.Switchd.CPUSeconds <= 0 || f.Switchd.PeakRSS == 0 {
				t.Errorf("%s (%s): switchd's footprint = %+v, want its pid, CPU time and RSS", s.Name, s.Load, f.Switchd)
			} else if f.CPUSeconds != f.Daemon.CPUSeconds+f.Switchd.CPUSeconds {
				t.Errorf("%s (%s): CPU %.2f s, want daemon %.2f + switchd %.2f", s.Name, s.Load, f.CPUSeconds, f.Daemon.CPUSeconds, f.Switchd.CPUSeconds)
			}
		}
		if f := s.Footprint; s.Name == strategyDeployd && f != nil && f.Switchd != nil {
			t.Errorf("%s (%s): a switchd footprint in reload mode", s.Name, s.Load)
		}
		if f := s.Footprint; s.Name == strategyDeploydSwarm && f != nil && f.AppTasks < 1 {
			t.Errorf("%s (%s): app tasks = %d, want the running ones counted", s.Name, s.Load, f.AppTasks)
		}
		if switchMode && s.FirstNew.N == 0 {
			t.Errorf("%s (%s): no switch → first new-color response measured", s.Name, s.Load)
		}
		if switchMode && s.Load == loadPOST && s.Failures.sum(s.Failures.GET) > 0 {
			t.Errorf("%s (%s): failed GETs in a POST-only load", s.Name, s.Load)
		}
	}
	wantEvents := map[string]int{}
	for _, l := range opts.Loads {
		for _, e := range switchEvents {
			wantEvents[l+" "+config.TrafficModeSwitch+" "+e] = 1
		}
		for _, e := range reloadEvents {
			wantEvents[l+" "+config.TrafficModeReload+" "+e] = 1
		}
	}
	gotEvents := map[string]int{}
	// A switchd started again within milliseconds may come back before
	// any of the few clients' requests hit the gap; across every kill
	// some must have, or the harness does not see the outage.
	kills, failedInKills := 0, 0
	for _, r := range res.Resilience {
		gotEvents[r.Load+" "+r.Mode+" "+r.Event] = r.N
		if r.Mode == config.TrafficModeSwitch && (r.Event == eventKillSwitchd || r.Event == eventKillSwitchdChild) {
			kills++
			failedInKills += r.FailedGET + r.FailedPOST
		}
	}
	if kills > 0 && failedInKills == 0 {
		t.Errorf("%d kills -9 of switchd failed no request, want some: the harness does not see their outage", kills)
	}
	if !maps.Equal(gotEvents, wantEvents) {
		t.Errorf("resilience events = %v, want %v", gotEvents, wantEvents)
	}
	// 5 of the switch, 5 of resilience in switch mode.
	if got, want := len(res.Goals), 10*len(opts.Loads); got != want {
		t.Errorf("goals = %d, want %d (10 per load)", got, want)
	}
	for _, ext := range []string{".json", ".svg"} {
		p := filepath.Join(opts.OutDir, opts.Name+ext)
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("result %s: %v", ext, err)
		} else if fi.Size() == 0 {
			t.Errorf("result %s is empty", p)
		}
	}
	for _, name := range []string{strategyRecreate, strategyDeploydSwitch, strategyDeploydSwarm, "load " + loadPOST, eventUpgradeSwitchd} {
		if !strings.Contains(table.String(), name) {
			t.Errorf("table does not name %q:\n%s", name, table.String())
		}
	}
}

// switchdsUnder lists the switchd processes whose command line names a
// path under dir.
func switchdsUnder(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(b), "\x00")
		if err == nil && len(args) > 2 && args[1] == "switchd" && strings.Contains(string(b), dir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeLeftovers stops the test's switchds and removes its containers
// even when run failed before its own teardown could.
func removeLeftovers(t *testing.T, svc, tmp string) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	// StopSwitchd stops every switchd whose command line names a path
	// under the data dir's parent: here, tmp.
	if err := lab.StopSwitchd(ctx, filepath.Join(tmp, "data"), switchdStopLimit); err != nil {
		t.Errorf("cleanup: stop switchd: %v", err)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return // no engine: nothing can be left over
	}
	defer cli.Close()
	for _, s := range []string{svc, svc + "sw", svc + "rc"} {
		if err := removeServiceContainers(ctx, cli, s); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// swarmLeftovers lists what of the swarm strategy's service svc is still
// there: swarm services and their task containers, deployd's container,
// its volume and its overlay network.
func swarmLeftovers(t *testing.T, svc string) []string {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil // no engine: nothing can be left over
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var left []string
	// A swarm the bench left is no error: then it has no services either.
	if list, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", "deployd.service="+svc))}); err == nil {
		for _, s := range list {
			left = append(left, "service "+s.Spec.Name)
		}
	}
	for _, label := range []string{"deployd.service=" + svc, swarmLabel + "=" + svc} {
		list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
		if err != nil {
			t.Errorf("list containers: %v", err)
		}
		for _, c := range list {
			left = append(left, "container "+strings.Join(c.Names, ","))
		}
	}
	vols, err := cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", swarmLabel+"="+svc))})
	if err != nil {
		t.Errorf("list volumes: %v", err)
	}
	for _, v := range vols.Volumes {
		left = append(left, "volume "+v.Name)
	}
	nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", swarmLabel+"="+svc))})
	if err != nil {
		t.Errorf("list networks: %v", err)
	}
	for _, n := range nets {
		left = append(left, "network "+n.Name)
	}
	return left
}

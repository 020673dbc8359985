package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

// trialsEnv sets how many episodes each ordering of the auto-rollback test
// goes through (default 2); raise it to measure.
const trialsEnv = "DEPLOYD_E2E_TRIALS"

func trials(t *testing.T) int {
	t.Helper()
	raw := os.Getenv(trialsEnv)
	if raw == "" {
		return 2
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		t.Fatalf("%s = %q, want a positive integer", trialsEnv, raw)
	}
	return n
}

// killColor SIGKILLs every container of color, as an operator's
// `docker kill` or the kernel's OOM killer would.
func (e *env) killColor(color string) {
	e.t.Helper()
	for _, c := range e.colorContainers(color) {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		err := e.cli.ContainerKill(ctx, c.Name, "SIGKILL")
		cancel()
		if err != nil {
			e.t.Fatalf("kill %s: %v", c.Name, err)
		}
	}
}

// removeColor force-removes every container of color.
func (e *env) removeColor(color string) {
	e.t.Helper()
	for _, c := range e.colorContainers(color) {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		err := e.cli.ContainerRemove(ctx, c.Name, container.RemoveOptions{Force: true})
		cancel()
		if err != nil {
			e.t.Fatalf("remove %s: %v", c.Name, err)
		}
	}
}

// waitServes polls nginx until it answers version and color and returns
// how long that took from since.
func (e *env) waitServes(since time.Time, limit time.Duration, version, color string) time.Duration {
	e.t.Helper()
	eventually(e.t, limit, fmt.Sprintf("nginx serving %s %s", version, color), func() error {
		got, err := e.viaNginx()
		if err != nil {
			return err
		}
		if got.Version != version || got.Color != color {
			return fmt.Errorf("nginx serves %s %s", got.Version, got.Color)
		}
		return nil
	})
	return time.Since(since)
}

// deployments lists the service's deployments, newest first.
func (d *daemon) deployments() []api.Deployment {
	d.e.t.Helper()
	status, b := d.request(http.MethodGet, "/api/v1/deployments?service="+d.e.svc+"&limit=200", nil, d.e.viewer)
	if status != http.StatusOK {
		d.e.t.Fatalf("GET deployments = %d %s", status, b)
	}
	return decode[struct {
		Deployments []api.Deployment `json:"deployments"`
	}](d.e.t, b).Deployments
}

func (d *daemon) rollbacks() []api.Deployment {
	var out []api.Deployment
	for _, dep := range d.deployments() {
		if dep.Kind == controller.KindRollback {
			out = append(out, dep)
		}
	}
	return out
}

// auditOf returns the audit entries of action.
func (d *daemon) auditOf(action string) []api.AuditEntry {
	d.e.t.Helper()
	status, b := d.request(http.MethodGet, "/api/v1/audit", nil, d.e.viewer)
	if status != http.StatusOK {
		d.e.t.Fatalf("GET audit = %d %s", status, b)
	}
	var out []api.AuditEntry
	for _, a := range decode[struct {
		Entries []api.AuditEntry `json:"entries"`
	}](d.e.t, b).Entries {
		if a.Action == action {
			out = append(out, a)
		}
	}
	return out
}

// episodeCase is one ordering of the noticers of a dead active color.
type episodeCase struct {
	name string
	// watch, threshold and reconcile are the settings; zero means the
	// shipped default (10s, 3, 30s).
	watch     time.Duration
	threshold int
	reconcile time.Duration
	// exits keeps the reconciler following container exits (the default).
	exits bool
	// actor is who must roll back; "" when either may.
	actor string
}

func (c episodeCase) watchRound() (time.Duration, int) {
	w, n := c.watch, c.threshold
	if w == 0 {
		w = 10 * time.Second
	}
	if n == 0 {
		n = 3
	}
	return w, n
}

// rollbackAllowance is what the rollback itself may take once it started
// (one probe of the warm standby, an nginx reload, the drain), on a busy
// 2-CPU machine running the other tests under the race detector.
const rollbackAllowance = 5 * time.Second

func TestFault_DeadActiveColorRolledBackOnceWhoeverNotices(t *testing.T) {
	t.Parallel()
	cases := []episodeCase{
		{name: "watchdog first", watch: 200 * time.Millisecond, threshold: 2, actor: "watchdog"},
		{name: "reconciler first", reconcile: 300 * time.Millisecond, actor: "reconciler"},
		// The settings under which the watchdog never rolled back once
		// the reconciler had noticed first.
		{name: "both, watch 500ms x3, reconcile 1.5s", watch: 500 * time.Millisecond, threshold: 3, reconcile: 1500 * time.Millisecond},
		// Both notice within the same half second, in either order.
		{name: "both, watch 250ms x2, reconcile 500ms", watch: 250 * time.Millisecond, threshold: 2, reconcile: 500 * time.Millisecond},
		{name: "exit feed first, shipped intervals", exits: true, actor: "reconciler"},
		{name: "shipped defaults, no exit feed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runEpisodes(t, tc)
		})
	}
}

func runEpisodes(t *testing.T, tc episodeCase) {
	e := newEnv(t, "v1", "v2")
	rcv, url := startReceiver(t)
	e.notifyURL = url
	cfg := defaultSvc()
	cfg.AutoRollback = true
	cfg.Notify = true
	cfg.IgnoreExits = !tc.exits
	cfg.ReconcileInterval = tc.reconcile
	if tc.watch > 0 {
		cfg.WatchInterval, cfg.UnhealthyThreshold = tc.watch, tc.threshold
	}
	d := e.startDaemon("first", e.writeConfig("deployd.yml", cfg))
	round, threshold := tc.watchRound()
	reconcilePeriod := tc.reconcile
	if reconcilePeriod == 0 {
		reconcilePeriod = 30 * time.Second
	}
	bound := round*time.Duration(threshold) + round
	n := trials(t)

	d.mustSucceed("v1")
	var took []time.Duration
	byActor := map[string]int{}
	for trial := 1; trial <= n; trial++ {
		d.mustSucceed("v2")
		if sv := d.service(); !sv.StandbyWarm {
			t.Fatalf("trial %d: standby is not warm: %+v", trial, sv)
		}
		// Each episode ends with a rollback that the trial loop follows at
		// once, which would lock every kill to the same moment of the
		// reconciler's period; spreading the kills over the period lets
		// either noticer come first where both may.
		if tc.actor == "" {
			time.Sleep(time.Duration(trial-1) * reconcilePeriod / time.Duration(n))
		}
		before := len(d.rollbacks())
		killed := time.Now()
		e.killColor("green")

		took = append(took, e.waitServes(killed, bound+rollbackAllowance, "v1", "blue"))
		rbs := d.rollbacks()
		if len(rbs) != before+1 {
			t.Fatalf("trial %d: rollbacks = %d, want %d", trial, len(rbs), before+1)
		}
		rb := d.waitDeployment(rbs[0].ID)
		if rb.Status != controller.StatusSucceeded {
			t.Fatalf("trial %d: rollback %s ended %s: %s", trial, rb.ID, rb.Status, rb.Error)
		}
		if tc.actor != "" && rb.Trigger.Actor != tc.actor {
			t.Fatalf("trial %d: rolled back by %q, want %q", trial, rb.Trigger.Actor, tc.actor)
		}
		byActor[rb.Trigger.Actor]++
	}
	// A late second rollback of an episode would come within a round of
	// the first.
	time.Sleep(min(round, 2*time.Second))
	if got := len(d.rollbacks()); got != n {
		t.Fatalf("rollbacks = %d after %d episodes, want one each", got, n)
	}
	audited := d.auditOf("rollback")
	if len(audited) != n {
		t.Errorf("rollback audit entries = %d after %d episodes, want one each: %+v", len(audited), n, audited)
	}
	eventually(t, faultTimeout, "one service_unhealthy notification per episode", func() error {
		if got := len(rcv.ofKind(controller.NotifyServiceUnhealthy)); got != n {
			return fmt.Errorf("%d service_unhealthy notifications after %d episodes", got, n)
		}
		return nil
	})
	slices.Sort(took)
	t.Logf("%s: %d of %d episodes rolled back once, by %v; kill to v1 served: min %s, max %s (bound %s + %s)",
		tc.name, n, n, byActor, took[0].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond),
		bound, rollbackAllowance)
}

func TestFault_DeadActiveColorWithoutWarmStandbyIsRestarted(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		exits  bool
		remove bool
	}{
		{name: "killed, exit feed", exits: true},
		{name: "removed, exit feed", exits: true, remove: true},
		{name: "killed, reconciler round"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "v1", "v2")
			rcv, url := startReceiver(t)
			e.notifyURL = url
			cfg := defaultSvc()
			cfg.AutoRollback = true // but the standby is cold: nothing to roll back to at once
			cfg.Standby = "stopped"
			cfg.Notify = true
			cfg.IgnoreExits = !tc.exits
			cfg.ReconcileInterval = 500 * time.Millisecond
			if tc.exits {
				cfg.ReconcileInterval = 0 // the shipped 30s: the exit must be what triggers the pass
			}
			d := e.startDaemon("first", e.writeConfig("deployd.yml", cfg))
			d.mustSucceed("v1")
			v2 := d.mustSucceed("v2")

			killed := time.Now()
			if tc.remove {
				e.removeColor("green")
			} else {
				e.killColor("green")
			}
			took := e.waitServes(killed, faultTimeout, "v2", "green")
			t.Logf("%s: v2 served again %s after its containers died", tc.name, took.Round(time.Millisecond))

			e.assertUpstreamIs(e.assertRunning("green", cfg.Replicas, v2.ID))
			sv := d.service()
			if sv.ActiveColor != "green" || sv.ActiveImage != repository+":v2" {
				t.Errorf("service = %s %s, want green %s:v2 still active", sv.ActiveColor, sv.ActiveImage, repository)
			}
			if rbs := d.rollbacks(); len(rbs) != 0 {
				t.Errorf("rollbacks = %d, want none: the standby was cold", len(rbs))
			}
			if got := d.auditOf("repair"); len(got) != 1 || got[0].Actor != "reconciler" || got[0].Result != "ok" {
				t.Errorf("repair audit entries = %+v, want one ok by the reconciler", got)
			}
			eventually(t, faultTimeout, "a repair notification and metric", func() error {
				if got := rcv.ofKind(controller.NotifyRepair); len(got) != 1 {
					return fmt.Errorf("%d repair notifications", len(got))
				}
				v, err := d.metricValue("deployd_reconciler_repairs_total", `kind="`+controller.RepairActiveRestarted+`"`)
				if err != nil || v != 1 {
					return fmt.Errorf("repairs metric = %v, %v", v, err)
				}
				return nil
			})
		})
	}
}

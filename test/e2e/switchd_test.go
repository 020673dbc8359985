package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/pkg/controller"
)

// switchdPID waits for the env's switchd to be up with a pid other than
// not (0: any) and returns it.
func (e *env) switchdPID(not int) int {
	e.t.Helper()
	var pid int
	eventually(e.t, faultTimeout, "a switchd pid other than "+fmt.Sprint(not), func() error {
		p, err := lab.SwitchdPID(e.dataDir)
		if err != nil {
			return err
		}
		if p == 0 || p == not {
			return fmt.Errorf("switchd pid %d", p)
		}
		pid = p
		return nil
	})
	return pid
}

// The daemon is not in the request path: under 16 keep-alive clients
// sending POSTs through nginx, a kill -9 of deployd and its restart, a
// graceful restart, and an in-place upgrade of switchd (SIGHUP: the
// listeners pass to the new process) fail none of them.
func TestSwitchd_DaemonKillRestartAndSwitchdUpgradeLoseNoRequest(t *testing.T) {
	t.Parallel()
	const clients = 16
	e := newEnv(t, "v1", "v2")
	cfg := defaultSvc()
	cfg.Traffic = config.TrafficModeSwitch
	path := e.writeConfig("deployd.yml", cfg)
	d := e.startDaemon("first", path)
	d.mustSucceed("v1")
	first := e.switchdPID(0)

	stopLoad := e.startPOSTClients(clients)
	// Not a wait for a condition: the load runs on between the steps.
	settle := func() { time.Sleep(500 * time.Millisecond) }

	settle()
	start := time.Now()
	d.kill9()
	settle()
	d = e.startDaemon("after-kill", path)
	t.Logf("kill -9 of deployd to a ready daemon: %s", time.Since(start).Round(time.Millisecond))
	if got := e.switchdPID(0); got != first {
		t.Fatalf("switchd pid %d after the daemon's restart, want the same process %d", got, first)
	}
	d.mustSucceed("v2")
	e.assertServes("v2", "green")

	settle()
	start = time.Now()
	d.stop()
	d = e.startDaemon("after-stop", path)
	t.Logf("graceful restart of deployd: %s", time.Since(start).Round(time.Millisecond))

	settle()
	start = time.Now()
	if err := syscall.Kill(first, syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP switchd: %v", err)
	}
	upgraded := e.switchdPID(first)
	t.Logf("switchd upgrade %d -> %d: %s", first, upgraded, time.Since(start).Round(time.Millisecond))
	settle()
	// The new process routes: a rollback moves traffic through it.
	rb := d.rollback()
	if got := d.waitDeployment(rb.ID); got.Status != controller.StatusSucceeded {
		t.Fatalf("rollback after the upgrade: %s (%s)", got.Status, stepSummary(got))
	}
	e.assertServes("v1", "blue")
	settle()

	load := stopLoad()
	t.Logf("%d POSTs answered, %d failed; by version: %v", load.ok, load.failed, load.versions)
	if load.failed > 0 {
		t.Fatalf("%d of %d POSTs failed; first: %v", load.failed, load.ok+load.failed, load.firstErr)
	}
	if load.ok < 100 {
		t.Fatalf("only %d POSTs answered: the load did not run", load.ok)
	}
}

// switchd itself killed with -9: the daemon starts it again at once, both
// when it started that switchd itself (its child) and when an earlier
// daemon did (the daemon holds a wait call open on switchd and sees it
// end), and switchd restores its routing from its state file. Requests
// fail meanwhile (nginx finds nothing listening); the test counts them and
// bounds the outage.
func TestSwitchd_KillNineIsRestartedWithItsRouting(t *testing.T) {
	t.Parallel()
	const clients = 16
	e := newEnv(t, "v1")
	cfg := defaultSvc()
	cfg.Traffic = config.TrafficModeSwitch
	path := e.writeConfig("deployd.yml", cfg)
	d := e.startDaemon("first", path)
	d.mustSucceed("v1")

	for round, whose := range []string{"the daemon's child", "an earlier daemon's"} {
		if round == 1 {
			d.stop()
			d = e.startDaemon("second", path)
		}
		pid := e.switchdPID(0)
		stopLoad := e.startPOSTClients(clients)
		time.Sleep(500 * time.Millisecond) // the load runs before the kill
		killed := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 switchd: %v", err)
		}
		restarted := e.switchdPID(pid)
		var back time.Duration
		eventually(t, faultTimeout, "the site answering again", func() error {
			a, err := e.viaNginx()
			if err != nil {
				return err
			}
			if a.Version != "v1" || a.Color != "blue" {
				return fmt.Errorf("answered by %s/%s", a.Version, a.Color)
			}
			back = time.Since(killed)
			return nil
		})
		load := stopLoad()
		t.Logf("switchd %d (%s) killed, %d answering; site back after %s; %d POSTs answered, %d failed",
			pid, whose, restarted, back.Round(time.Millisecond), load.ok, load.failed)
		if back > 5*time.Second {
			t.Fatalf("the site took %s to answer again, want under 5s", back)
		}
		// The daemon counts the restart once it has seen the new switchd
		// answer, which may be a moment after nginx has.
		eventually(t, faultTimeout, "deployd_switchd_restarts_total at 1", func() error {
			if n, err := d.metricValue("deployd_switchd_restarts_total"); err != nil || n != 1 {
				return fmt.Errorf("deployd_switchd_restarts_total = %v (%v)", n, err)
			}
			return nil
		})
		if status, _ := d.request(http.MethodGet, "/readyz", nil, ""); status != http.StatusOK {
			t.Fatalf("/readyz = %d after switchd is back, want 200", status)
		}
	}
}

// trafficDefault in svcConfig.Traffic writes no traffic section at all.
const trafficDefault = "default"

// A configuration that says nothing about traffic gets switch mode, each
// service on a unix socket next to its upstream file: nginx's upstream
// names the socket, and deploys and a rollback under 16 keep-alive POST
// clients fail none of them and never reload nginx.
// (A short name: the socket lives under the test's temporary directory, and
// a unix socket path holds about 100 bytes.)
func TestSwitch_DefaultUnixSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2")
	cfg := defaultSvc()
	cfg.Traffic = trafficDefault
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	d.mustSucceed("v1")
	e.assertServes("v1", "blue")
	if !strings.HasPrefix(e.switchAddr, "unix:"+e.ng.UpstreamDir+"/") {
		t.Fatalf("the default switch address is %q, want a socket in %s", e.switchAddr, e.ng.UpstreamDir)
	}
	e.assertUpstreamIs(nil)
	workers := e.nginxWorkers()

	stopLoad := e.startPOSTClients(16)
	d.mustSucceed("v2")
	e.assertServes("v2", "green")
	rb := d.rollback()
	if got := d.waitDeployment(rb.ID); got.Status != controller.StatusSucceeded {
		t.Fatalf("rollback: %s (%s)", got.Status, stepSummary(got))
	}
	e.assertServes("v1", "blue")
	load := stopLoad()
	t.Logf("%d POSTs answered, %d failed; by version: %v", load.ok, load.failed, load.versions)
	if load.failed > 0 || load.ok == 0 {
		t.Fatalf("%d of %d POSTs failed; first: %v", load.failed, load.ok+load.failed, load.firstErr)
	}
	if got := e.nginxWorkers(); !slices.Equal(got, workers) {
		t.Fatalf("nginx workers %v became %v: nginx was reloaded", workers, got)
	}
}

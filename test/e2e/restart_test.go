package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/deployd/deployd/internal/testenv"
	"github.com/deployd/deployd/pkg/controller"
)

func TestRestart_KeepsState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2")
	cfgPath := e.writeConfig("deployd.yml", defaultSvc())
	d := e.startDaemon("first", cfgPath)
	d.mustSucceed("v1")
	v2 := d.mustSucceed("v2")
	before := d.service()
	d.stop()
	if code := d.waitExit(0); code != 0 {
		t.Fatalf("first daemon exit code = %d, want 0", code)
	}

	d = e.startDaemon("second", cfgPath)
	after := d.service()
	if after.ActiveColor != before.ActiveColor || after.ActiveImage != before.ActiveImage ||
		after.StandbyColor != before.StandbyColor || after.StandbyImage != before.StandbyImage {
		t.Fatalf("after restart active/standby = %s %s / %s %s, want %s %s / %s %s",
			after.ActiveColor, after.ActiveImage, after.StandbyColor, after.StandbyImage,
			before.ActiveColor, before.ActiveImage, before.StandbyColor, before.StandbyImage)
	}
	if after.Deployment == nil || after.Deployment.ID != v2.ID {
		t.Fatalf("last deployment after restart = %v, want %s", after.Deployment, v2.ID)
	}
	e.assertServes("v2", "green")

	rb := d.waitDeployment(d.rollback().ID)
	if rb.Status != controller.StatusSucceeded {
		t.Fatalf("rollback after restart: status = %s (%s), want succeeded", rb.Status, rb.Error)
	}
	e.assertServes("v1", "blue")
}

func TestKill9_MidDeployRecoversToRunningColor(t *testing.T) {
	t.Parallel()
	eachTrafficMode(t, testKill9MidDeployRecoversToRunningColor)
}

func testKill9MidDeployRecoversToRunningColor(t *testing.T, mode string) {
	e := newEnv(t, "v1", "v2", "v2-slow")
	cfg := defaultSvc()
	cfg.Drain = 5 * time.Second
	cfg.Traffic = mode
	cfgPath := e.writeConfig("deployd.yml", cfg)
	d := e.startDaemon("first", cfgPath)
	v1 := d.mustSucceed("v1")

	// Kill point 1: while the new color is being health-checked.
	slow := d.deploy("v2-slow")
	d.waitStep(slow.ID, controller.StepHealth)
	if n := len(e.ofDeployment(slow.ID)); n != 1 {
		t.Fatalf("containers of the slow deployment before the kill = %d, want 1", n)
	}
	d.kill9()

	d = e.startDaemon("after-health-kill", cfgPath)
	got := d.deployment(slow.ID)
	if got.Status != controller.StatusInterrupted || !strings.Contains(got.Error, "step "+controller.StepHealth) {
		t.Fatalf("killed deployment: status %s error %q, want interrupted naming step health", got.Status, got.Error)
	}
	if left := e.ofDeployment(slow.ID); len(left) != 0 {
		t.Fatalf("containers of the interrupted deployment left: %v", left)
	}
	blue := e.assertRunning("blue", 1, v1.ID)
	e.assertUpstreamIs(blue)
	e.assertServes("v1", "blue")

	// Kill point 2: after the switch, while the old color drains. The
	// switch drains only what is in flight: a long request keeps blue
	// draining. Its own answer is lost with deployd (in switch mode nginx
	// has no route while deployd is dead), so it is not checked.
	if e.switchMode {
		e.startLongRequest(15 * time.Second)
		d.waitInFlight("blue")
	}
	v2 := d.deploy("v2")
	d.waitStep(v2.ID, controller.StepDrain)
	d.kill9()

	d = e.startDaemon("after-drain-kill", cfgPath)
	got = d.deployment(v2.ID)
	if got.Status != controller.StatusInterrupted || !strings.Contains(got.Error, "step "+controller.StepDrain) {
		t.Fatalf("deployment killed in drain: status %s error %q, want interrupted naming step drain", got.Status, got.Error)
	}
	if s := findStep(got, controller.StepSwitch); s == nil || s.Status != controller.StepSucceeded {
		t.Fatalf("steps = %s, want the switch recorded as succeeded", stepSummary(got))
	}
	sv := d.service()
	if sv.ActiveColor != controller.Green || !strings.HasSuffix(sv.ActiveImage, ":v2") {
		t.Fatalf("active after drain kill = %s %s, want green ...:v2", sv.ActiveColor, sv.ActiveImage)
	}
	green := e.assertRunning("green", 1, v2.ID) // active: kept
	e.assertUpstreamIs(green)
	e.assertServes("v2", "green")
	e.assertRunning("blue", 1, v1.ID)
}

func TestSecondDaemonOnSameDataDirRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfgPath := e.writeConfig("deployd.yml", defaultSvc())
	e.startDaemon("first", cfgPath)

	start := time.Now()
	second := e.launch("second", cfgPath)
	code := second.waitExit(10 * time.Second)
	elapsedUnder(t, "refusing to start", time.Since(start), 5*time.Second)
	if code == 0 {
		t.Fatalf("second daemon exit code = 0, want non-zero")
	}
	if log := second.stderr.String(); !strings.Contains(log, "in use by another deployd") {
		t.Fatalf("second daemon log lacks %q:\n%s", "in use by another deployd", log)
	}
}

func TestSIGTERM_DuringDeployExitsCleanly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2-slow")
	cfgPath := e.writeConfig("deployd.yml", defaultSvc())
	d := e.startDaemon("first", cfgPath)
	v1 := d.mustSucceed("v1")

	slow := d.deploy("v2-slow")
	d.waitStep(slow.ID, controller.StepHealth)
	start := time.Now()
	d.stop()
	code := d.waitExit(0)
	took := time.Since(start)
	t.Logf("SIGTERM during the health step: exited with %d after %s", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	elapsedUnder(t, "shutdown", took, 10*time.Second) // the configured shutdown_timeout

	d = e.startDaemon("second", cfgPath)
	got := d.deployment(slow.ID)
	if got.Status != controller.StatusInterrupted {
		t.Fatalf("deployment after SIGTERM: status %s error %q, want interrupted", got.Status, got.Error)
	}
	if left := e.ofDeployment(slow.ID); len(left) != 0 {
		t.Fatalf("containers of the interrupted deployment left: %v", left)
	}
	blue := e.assertRunning("blue", 1, v1.ID)
	e.assertUpstreamIs(blue)
	e.assertServes("v1", "blue")
}

func TestKill9_DuringFirstDeployLeavesPlaceholder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v2-slow")
	cfgPath := e.writeConfig("deployd.yml", defaultSvc())
	d := e.startDaemon("first", cfgPath)

	slow := d.deploy("v2-slow")
	d.waitStep(slow.ID, controller.StepHealth)
	d.kill9()

	d = e.startDaemon("second", cfgPath)
	got := d.deployment(slow.ID)
	if got.Status != controller.StatusInterrupted || !strings.Contains(got.Error, "step "+controller.StepHealth) {
		t.Fatalf("killed first deployment: status %s error %q, want interrupted naming step health", got.Status, got.Error)
	}
	if all := e.containers(); len(all) != 0 {
		t.Fatalf("containers after recovery = %v, want none", all)
	}
	if sv := d.service(); sv.ActiveColor != controller.NoColor {
		t.Fatalf("active color = %q, want none before a successful deploy", sv.ActiveColor)
	}
	// Only the placeholder's down server may remain: nginx must not point
	// at the removed containers.
	e.assertUpstreamIs([]ctr{{Address: "127.0.0.1:1"}})
	if up := string(e.upstream()); !strings.Contains(up, "server 127.0.0.1:1 down;") {
		t.Fatalf("upstream after recovery is not a placeholder:\n%s", up)
	}
	status, body, err := testenv.Get(context.Background(), e.ng.URL+"/")
	if err != nil || status != http.StatusBadGateway {
		t.Fatalf("GET / through nginx = %d %q (%v), want 502 from the placeholder", status, body, err)
	}
}

func TestRestart_StartsStoppedActiveContainers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1")
	cfgPath := e.writeConfig("deployd.yml", defaultSvc())
	d := e.startDaemon("first", cfgPath)
	v1 := d.mustSucceed("v1")
	d.stop()

	// The host rebooted without restarting the containers, say.
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	timeout := 5
	if err := e.cli.ContainerStop(ctx, e.replicaName("blue", v1.ID, 1), container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatalf("stop blue-1: %v", err)
	}
	if _, err := e.viaNginx(); err == nil {
		t.Fatal("nginx still answers with the active container stopped")
	}

	e.startDaemon("second", cfgPath)
	blue := e.assertRunning("blue", 1, v1.ID)
	// A restarted container gets a new ephemeral port: the upstream must
	// follow it.
	e.assertUpstreamIs(blue)
	e.assertServes("v1", "blue")
}

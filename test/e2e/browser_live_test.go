package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/pkg/controller"
)

// pageCatchUp is how long the page may take to show what happened without
// a reload: the "within 1 s".
const pageCatchUp = time.Second

// TestBrowser_PageFollowsTheSystemStreamAndSaysWhenItLostDeployd drives the
// page as on-call does while others act: a deploy started through the API
// (as the CLI and CI do) and a container killed by hand both show within a
// second; with deployd killed the page says since when it is disconnected
// and turns its buttons off; with deployd back it is live again.
func TestBrowser_PageFollowsTheSystemStreamAndSaysWhenItLostDeployd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2")
	port, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	path := e.writeConfig("deployd.yml", defaultSvc())
	d := e.startDaemonAt("first", path, listen)
	d.mustSucceed("v1")

	b := newBrowser(t)
	b.login(d, e.token)
	b.waitTrue("the page to be live", `document.querySelector('#freshness')?.dataset.state === 'live'`, pageTimeout)
	if got := b.text("#freshness"); got != "live" {
		t.Errorf("#freshness = %q, want live", got)
	}

	// A deploy nobody started from the page: the card shows a deployment it
	// did not show before, and it is this one.
	deployments := jsString(card(e.svc, "[data-deployment]"))
	known := eval[[]string](b, fmt.Sprintf(`Array.from(document.querySelectorAll(%s)).map(el => el.dataset.deployment)`, deployments))
	knownJSON, err := json.Marshal(known)
	if err != nil {
		t.Fatal(err)
	}
	b.stampWhen("new deployment", fmt.Sprintf(`Array.from(document.querySelectorAll(%s)).some(el => !%s.includes(el.dataset.deployment))`,
		deployments, knownJSON))
	status, body := d.request(http.MethodPost, "/api/v1/services/"+e.svc+"/deployments", map[string]string{"image": "v2"}, e.token)
	if status != http.StatusAccepted {
		t.Fatalf("deploy v2: status = %d, want %d; body %s", status, http.StatusAccepted, body)
	}
	asked := time.Now()
	dep := decode[api.Deployment](t, body)
	took := b.stampedAt("new deployment", pageTimeout).Sub(asked)
	b.waitTrue("the deploy on the card", fmt.Sprintf(`!!document.querySelector(%s)`,
		jsString(card(e.svc, fmt.Sprintf(`[data-deployment=%q]`, dep.ID)))), pageTimeout)
	t.Logf("the deploy started through the API showed on the page after %s", took.Round(time.Millisecond))
	if took > pageCatchUp {
		t.Errorf("the deploy started through the API showed on the page after %s, want within %s", took.Round(time.Millisecond), pageCatchUp)
	}
	if got := d.waitDeployment(dep.ID); got.Status != controller.StatusSucceeded {
		t.Fatalf("deploy v2: %s (%s), want succeeded", got.Status, got.Error)
	}
	b.waitTrue("green active on the card", colorIs(card(e.svc, ".active-color"), "green"), pageTimeout)

	// A container killed by hand: its row changes (state or start time).
	rows := fmt.Sprintf(`Array.from(document.querySelectorAll(%s)).map(r =>
		r.dataset.state + '@' + (r.querySelector('time.uptime')?.getAttribute('datetime') || '')).join(',')`,
		jsString(card(e.svc, `table.containers[data-color="green"] tr.container`)))
	before := eval[string](b, rows)
	green := e.colorContainers("green")
	if len(green) == 0 {
		t.Fatal("no green container to kill")
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	b.stampWhen("killed container's row", fmt.Sprintf(`(%s) !== %s`, rows, jsString(before)))
	if err := e.cli.ContainerKill(ctx, green[0].Name, "SIGKILL"); err != nil {
		t.Fatalf("kill %s: %v", green[0].Name, err)
	}
	killed := time.Now()
	took = b.stampedAt("killed container's row", pageTimeout).Sub(killed)
	t.Logf("the killed container showed on the page after %s", took.Round(time.Millisecond))
	if took > pageCatchUp {
		t.Errorf("the killed container showed on the page after %s, want within %s", took.Round(time.Millisecond), pageCatchUp)
	}

	// deployd gone: a banner that says since when, and no button that
	// would only fail.
	b.waitTrue("the rollback button enabled", fmt.Sprintf(`document.querySelector(%s)?.disabled === false`,
		jsString(card(e.svc, "button.rollback"))), pageTimeout)
	d.kill9()
	b.waitTrue("the disconnected banner", `!!document.querySelector('#disconnected')`, 10*time.Second)
	if got := b.text("#disconnected"); !strings.Contains(got, "Disconnected from deployd since") || !strings.Contains(got, "buttons are off") {
		t.Errorf("banner = %q, want it to say since when deployd is gone and that the buttons are off", got)
	}
	if on := eval[int](b, fmt.Sprintf(`Array.from(document.querySelectorAll(%s)).filter(b => !b.disabled).length`,
		jsString("main button.rollback, main button.redeploy, main button.cancel"))); on != 0 {
		t.Errorf("%d action buttons still enabled while deployd is gone", on)
	}
	if state := eval[string](b, `document.querySelector('#freshness').dataset.state`); state != "offline" {
		t.Errorf("#freshness state = %q, want offline", state)
	}
	b.screenshot("disconnected")

	// deployd back on the same address: live again, buttons back.
	e.startDaemonAt("second", path, listen)
	b.waitTrue("the banner to go", `!document.querySelector('#disconnected')`, 15*time.Second)
	b.waitTrue("the page to be live again", `document.querySelector('#freshness').dataset.state === 'live'`, pageTimeout)
	b.waitTrue("the rollback button enabled again", fmt.Sprintf(`document.querySelector(%s)?.disabled === false`,
		jsString(card(e.svc, "button.rollback"))), pageTimeout)
	b.screenshot("reconnected")
}

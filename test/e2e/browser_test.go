package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

const (
	sessionCookie = "deployd_session"
	csrfHeader    = "X-CSRF-Token"
	// liveTimeout bounds how long the page may take to show by itself
	// what the daemon did: a warm rollback plus the page's refresh.
	liveTimeout = 30 * time.Second

	// updateScreenshotEnv=1 also writes the README's picture; a normal run
	// never modifies the repository.
	updateScreenshotEnv = "DEPLOYD_UPDATE_SCREENSHOT"
	readmeScreenshot    = "../../docs/status-page.png"
	maxReadmeScreenshot = 300 << 10
)

const (
	// repositoryURL and the commits make the page link the active commit.
	repositoryURL = "https://git.example.com/shop/web"
	v1Commit      = "3f2c1e9a7b5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b"
	v2Commit      = "9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"
	// v1Deployer and v2Deployer are who the deploys claim to act for (the
	// trigger's on_behalf_of, shown beside the token's name and marked as
	// claimed), different so the card shows whose image is active.
	v1Deployer = "octocat"
	v2Deployer = "hubot"

	// readmeService is the service name in the README's picture; any
	// other run uses a unique name.
	readmeService = "web"
)

// greenOverWarmBlue starts a daemon whose service has v1 on blue and then
// v2 on green (each with a commit and an actor), so blue is a warm standby
// a rollback can return to. readme names the service "web" when the run
// updates the README's picture.
func greenOverWarmBlue(t *testing.T, readme bool) (*env, *daemon) {
	t.Helper()
	var e *env
	if readme && os.Getenv(updateScreenshotEnv) == "1" {
		e = newNamedEnv(t, readmeService, "v1", "v2")
	} else {
		e = newEnv(t, "v1", "v2")
	}
	cfg := defaultSvc()
	cfg.RepositoryURL = repositoryURL
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	for _, v := range []struct{ image, commit, actor string }{{"v1", v1Commit, v1Deployer}, {"v2", v2Commit, v2Deployer}} {
		status, b := d.request(http.MethodPost, "/api/v1/services/"+e.svc+"/deployments",
			map[string]string{"image": v.image, "commit": v.commit, "on_behalf_of": v.actor}, e.token)
		if status != http.StatusAccepted {
			t.Fatalf("deploy %s: status = %d, want %d; body %s", v.image, status, http.StatusAccepted, b)
		}
		if dep := d.waitDeployment(decode[api.Deployment](t, b).ID); dep.Status != controller.StatusSucceeded {
			t.Fatalf("deploy %s: %s (%s), want succeeded; steps %s", v.image, dep.Status, dep.Error, stepSummary(dep))
		}
	}
	e.assertServes("v2", "green")
	return e, d
}

// phoneFits checks the page does not scroll sideways at phone width: wide
// tables may scroll inside their own box, the page itself must not.
func (b *browser) phoneFits(what string) {
	b.t.Helper()
	b.do("resize to phone", chromedp.EmulateViewport(phone.width, phone.height))
	defer b.do("resize to desktop", chromedp.EmulateViewport(desktop.width, desktop.height))
	if w := eval[int](b, "document.documentElement.scrollWidth"); w > int(phone.width) {
		// Name what sticks out of the page itself, not what scrolls
		// inside a box of its own (an absolutely positioned element can
		// escape such a box).
		wide := eval[string](b, `(() => {
			const inScroller = el => { for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
				if (getComputedStyle(p).overflowX !== 'visible') return true; } return false; };
			return Array.from(document.querySelectorAll('body *'))
				.filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 1 &&
					(!inScroller(el) || getComputedStyle(el).position === 'absolute'))
				.slice(0, 5).map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : '')).join(', ');
		})()`)
		b.t.Errorf("%s is %d px wide at %d px: it scrolls sideways on a phone (sticking out: %s)", what, w, phone.width, wide)
	}
}

// login signs in through the login form and waits for the status page.
func (b *browser) login(d *daemon, token string) {
	b.t.Helper()
	b.do("open the login page",
		chromedp.Navigate(d.url+"/"), // unauthenticated: redirected to /login
		chromedp.WaitVisible(chromedp.CSS("#login-form #token")),
	)
	if loc := run(b, "location", chromedp.Location()); !strings.HasPrefix(loc, d.url+"/login") {
		b.t.Fatalf("unauthenticated / landed on %q, want %s/login", loc, d.url)
	}
	b.do("type the token", chromedp.SendKeys(chromedp.CSS("#token"), token))
	// The form's response (after the redirect), so that a refused login
	// fails with the page's words rather than a timeout.
	ctx, cancel := context.WithTimeout(b.ctx, pageTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS("#login-submit")))
	if err != nil {
		b.t.Fatalf("browser: submit the login form: %v", err)
	}
	if resp.Status != http.StatusOK {
		body := eval[string](b, "document.body ? document.body.innerText : ''")
		b.t.Fatalf("login answered %d at %s: %.300s", resp.Status, resp.URL, body)
	}
	b.do("wait for the status page", chromedp.WaitVisible(chromedp.CSS("section.service")))
	if loc := run(b, "location", chromedp.Location()); loc != d.url+"/" {
		b.t.Fatalf("after login the page is %q, want %q", loc, d.url+"/")
	}
}

// card returns the CSS selector of the service's card, or of sel in it.
func card(svc string, sel ...string) string {
	return strings.TrimSpace("#service-" + svc + " " + strings.Join(sel, " "))
}

// colorIs is a JavaScript predicate: the badge at sel says color both in
// data-color and in its text (the page never shows a color alone).
func colorIs(sel, color string) string {
	return fmt.Sprintf(`(() => { const el = document.querySelector(%s);
		return !!el && el.dataset.color === %s && el.textContent.includes(%s); })()`,
		jsString(sel), jsString(color), jsString(strings.ToUpper(color)))
}

// sessionCookieOf returns the browser's session cookie for the daemon.
func (b *browser) sessionCookieOf(d *daemon) *network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, pageTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{d.url + "/"}})
	if err != nil {
		b.t.Fatalf("browser cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == sessionCookie {
			return c
		}
	}
	b.t.Fatalf("no %s cookie for %s after login", sessionCookie, d.url)
	return nil
}

// postWithCookie POSTs to the daemon as a non-browser client carrying the
// session cookie and, when csrf is not empty, the CSRF header.
func postWithCookie(t *testing.T, d *daemon, path string, cookie *network.Cookie, csrf string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url+path, nil)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	if csrf != "" {
		req.Header.Set(csrfHeader, csrf)
	}
	resp, err := d.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

func TestBrowser_RollbackFromThePageMovesTrafficLive(t *testing.T) {
	t.Parallel()
	e, d := greenOverWarmBlue(t, true)
	sv := d.service()
	b := newBrowser(t)
	b.login(d, e.token)

	if role := eval[string](b, "document.body.dataset.role"); role != "operator" {
		t.Fatalf("body data-role = %q, want operator", role)
	}
	b.waitTrue("active GREEN", colorIs(card(e.svc, ".active-color"), "green"), pageTimeout)
	b.waitTrue("standby BLUE", colorIs(card(e.svc, ".standby-color"), "blue"), pageTimeout)
	for sel, want := range map[string]string{
		".active-image":  sv.ActiveImage,
		".standby-image": sv.StandbyImage,
		".standby-state": "warm",
		".active-by":     "e2e on behalf of " + v2Deployer + " (claimed)",
	} {
		if got := b.text(card(e.svc, sel)); got != want {
			t.Errorf("%s = %q, want %q", sel, got, want)
		}
	}
	link := eval[string](b, fmt.Sprintf(`(() => { const a = document.querySelector(%s);
		return a && a.tagName === 'A' ? a.href : ''; })()`, jsString(card(e.svc, ".active-commit"))))
	if want := repositoryURL + "/commit/" + v2Commit; link != want {
		t.Errorf(".active-commit links to %q, want a link to %q", link, want)
	}
	if dt := b.attr(card(e.svc, "time.active-when"), "datetime"); !isRFC3339(dt) {
		t.Errorf(".active-when datetime = %q, want an RFC 3339 time", dt)
	}
	if n := b.count(card(e.svc, `table.containers[data-color="green"] tbody tr`)); n != 1 {
		t.Errorf("rows in the green containers table = %d, want 1", n)
	}
	if n := b.count(`#history tr.deployment`); n < 2 {
		t.Errorf("history rows = %d, want at least the 2 deploys", n)
	}
	if got, want := b.text(card(e.svc, ".state-sentence")), "LIVE green · "+sv.ActiveImage+" @"+v2Commit[:12]; !strings.HasPrefix(got, want) || !strings.HasSuffix(got, " · deployed by e2e") {
		t.Errorf(".state-sentence = %q, want %q … deployed by e2e", got, want)
	}
	if got, want := b.text(card(e.svc, "button.rollback")), "Roll back to BLUE: "+sv.StandbyImage+" @"+v1Commit[:12]; got != want {
		t.Errorf("rollback label = %q, want %q", got, want)
	}
	compare := eval[string](b, fmt.Sprintf(`(() => { const a = document.querySelector(%s); return a ? a.href : ''; })()`, jsString(card(e.svc, "a.compare"))))
	if want := repositoryURL + "/compare/" + v1Commit + "..." + v2Commit; compare != want {
		t.Errorf("compare link = %q, want %q", compare, want)
	}
	b.screenshot("before-rollback")
	b.phoneFits("the status page")

	// A page that reloads loses this mark; the switch must happen in place.
	eval[bool](b, "window.deploydNoReload = true")
	rollback := fmt.Sprintf(`button.rollback[data-service="%s"]`, e.svc)
	wantConfirm := fmt.Sprintf("Switch %s from green (%s) back to blue (%s)? Blue is warm: traffic moves in about a second.",
		e.svc, sv.ActiveImage, sv.StandbyImage)
	if got := b.attr(rollback, "data-confirm"); got != wantConfirm {
		t.Errorf("rollback data-confirm = %q, want %q", got, wantConfirm)
	}
	b.click("click Rollback", rollback)
	b.do("wait for the dialog", chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")))
	if got := b.text("#confirm-message"); got != wantConfirm {
		t.Fatalf("confirmation = %q, want %q", got, wantConfirm)
	}
	if focused := eval[string](b, "document.activeElement && document.activeElement.id"); focused != "confirm-no" {
		t.Errorf("focus in the dialog is on %q, want the safe button confirm-no", focused)
	}
	if ids := d.deploymentIDs(); len(ids) != 2 {
		t.Fatalf("deployments before confirming = %d, want 2 (opening the dialog must not act)", len(ids))
	}

	start := time.Now()
	b.do("confirm", chromedp.Click(chromedp.CSS("#confirm-yes")), chromedp.WaitNotVisible(chromedp.CSS("#confirm-dialog")))
	b.waitTrue("active BLUE without reload", colorIs(card(e.svc, ".active-color"), "blue"), liveTimeout)
	t.Logf("the page showed BLUE %s after the confirmation", time.Since(start).Round(time.Millisecond))
	e.assertServes("v1", "blue") // traffic moved, not just the page
	b.waitTrue("standby GREEN", colorIs(card(e.svc, ".standby-color"), "green"), liveTimeout)
	if !eval[bool](b, "window.deploydNoReload === true") {
		t.Fatalf("the page reloaded; the switch must show in place")
	}
	if got := b.text(card(e.svc, ".active-image")); got != sv.StandbyImage {
		t.Errorf(".active-image after rollback = %q, want %q", got, sv.StandbyImage)
	}

	// The API agrees, and the rollback is the session's token's.
	after := d.service()
	if after.ActiveColor != controller.Blue || after.StandbyColor != controller.Green {
		t.Fatalf("service active/standby = %q/%q, want blue/green", after.ActiveColor, after.StandbyColor)
	}
	var audited bool
	for _, a := range d.audit() {
		if a.Action == "rollback" && a.Target == e.svc && a.Status == http.StatusAccepted && a.Actor == "e2e" {
			audited = true
			if dep := d.waitDeployment(a.DeploymentID); dep.Status != controller.StatusSucceeded || dep.Kind != controller.KindRollback {
				t.Errorf("the page's rollback %s: kind %s status %s (%s), want a succeeded rollback", dep.ID, dep.Kind, dep.Status, dep.Error)
			}
		}
	}
	if !audited {
		t.Errorf("audit trail has no accepted rollback of %s by e2e", e.svc)
	}
	b.waitTrue("the rollback in the history", `document.querySelectorAll("#history tr.deployment").length >= 3`, liveTimeout)

	if got, want := b.text(card(e.svc, ".active-by")), "e2e on behalf of "+v1Deployer+" (claimed)"; got != want {
		t.Errorf(".active-by after rollback = %q, want %q (who deployed v1)", got, want)
	}
	b.waitTrue("the sentence names the rollback", fmt.Sprintf(`document.querySelector(%s).textContent.endsWith("rolled back by e2e")`,
		jsString(card(e.svc, ".state-sentence"))), liveTimeout)
	if got, want := b.text(card(e.svc, ".state-sentence")), "LIVE blue · "+sv.StandbyImage+" @"+v1Commit[:12]; !strings.HasPrefix(got, want) {
		t.Errorf(".state-sentence after rollback = %q, want it to start with %q", got, want)
	}
	paths := b.screenshot("after-rollback")
	updateReadmeScreenshot(t, paths[desktop.name])
}

// A rollback during a deploy would be refused with 409: the page disables
// the button and says why, and enables it again once the deploy is done.
// Meanwhile the standby is described as the one that was there, never as
// the deploy's new containers beside it.
func TestBrowser_MidDeployRollbackIsDisabledAndStandbyIsTheOldOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2", "v2-slow")
	d := e.startDaemon("main", e.writeConfig("deployd.yml", defaultSvc()))
	d.mustSucceed("v1")
	d.mustSucceed("v2")
	b := newBrowser(t)
	b.login(d, e.token)
	rollback := card(e.svc, "button.rollback")
	b.waitTrue("rollback enabled", fmt.Sprintf(`!document.querySelector(%s).disabled`, jsString(rollback)), pageTimeout)

	slow := d.deploy("v2-slow")
	b.do("reload mid-deploy", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(card(e.svc, ".rollback-busy"))))
	if !eval[bool](b, fmt.Sprintf(`document.querySelector(%s).disabled`, jsString(rollback))) {
		t.Errorf("rollback button is enabled while a deploy runs")
	}
	busy := b.text(card(e.svc, ".rollback-busy"))
	for _, want := range []string{"busy: deploy of " + slow.Image, "started", "by e2e"} {
		if !strings.Contains(busy, want) {
			t.Errorf(".rollback-busy = %q, want it to contain %q", busy, want)
		}
	}
	b.screenshot("rollback-busy")

	// Once the new containers run beside the standby, the standby is still
	// described as the one that was there.
	eventually(t, pageTimeout, "the new container beside the standby", func() error {
		if n := len(d.service().Colors.Blue.Others); n != 1 {
			return fmt.Errorf("blue others = %d, want 1", n)
		}
		return nil
	})
	b.do("reload beside the standby", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(card(e.svc, "tr.other"))))
	standby := b.text(card(e.svc, ".standby"))
	for _, want := range []string{"BLUE", repository + ":v1", "warm", "beside it: 1 new container of the deploy of " + slow.Image + ", not the standby"} {
		if !strings.Contains(standby, want) {
			t.Errorf(".standby mid-deploy = %q, want it to contain %q", standby, want)
		}
	}
	b.screenshot("standby-beside-new")

	if dep := d.waitDeployment(slow.ID); dep.Status != controller.StatusSucceeded {
		t.Fatalf("deploy of v2-slow: %s (%s), want succeeded", dep.Status, dep.Error)
	}
	b.do("reload after the deploy", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(rollback)))
	b.waitTrue("rollback enabled again", fmt.Sprintf(`!document.querySelector(%s).disabled`, jsString(rollback)), pageTimeout)
	if n := b.count(card(e.svc, ".rollback-busy")); n != 0 {
		t.Errorf(".rollback-busy after the deploy = %d, want 0", n)
	}
}

func TestBrowser_ViewerSeesNoRollbackButton(t *testing.T) {
	t.Parallel()
	e, d := greenOverWarmBlue(t, false)
	b := newBrowser(t)
	b.login(d, e.viewer)

	if role := eval[string](b, "document.body.dataset.role"); role != "viewer" {
		t.Fatalf("body data-role = %q, want viewer", role)
	}
	b.waitTrue("active GREEN", colorIs(card(e.svc, ".active-color"), "green"), pageTimeout)
	b.waitTrue("standby BLUE", colorIs(card(e.svc, ".standby-color"), "blue"), pageTimeout)
	if n := b.count(`#history tr.deployment`); n < 2 {
		t.Errorf("history rows = %d, want at least the 2 deploys", n)
	}
	for _, sel := range []string{"button.rollback", "button.cancel", "button.redeploy"} {
		if n := b.count(sel); n != 0 {
			t.Errorf("%s buttons on a viewer's page = %d, want 0", sel, n)
		}
	}
	b.screenshot("viewer")

	// The server refuses anyway, even with the page's own CSRF token.
	status := eval[int](b, fmt.Sprintf(`fetch('/api/v1/services/%s/rollback', {method: 'POST', credentials: 'same-origin',
		headers: {'X-CSRF-Token': document.querySelector('meta[name="csrf-token"]').content}}).then(r => r.status)`, e.svc))
	if status != http.StatusForbidden {
		t.Fatalf("viewer's rollback from the page: status = %d, want %d", status, http.StatusForbidden)
	}
	if ids := d.deploymentIDs(); len(ids) != 2 {
		t.Fatalf("deployments = %d, want 2 (the viewer's rollback must not start one)", len(ids))
	}
	e.assertServes("v2", "green")
}

func TestBrowser_ForgedCrossSitePOSTIsRefused(t *testing.T) {
	t.Parallel()
	e, d := greenOverWarmBlue(t, false)
	b := newBrowser(t)
	b.login(d, e.token)

	cookie := b.sessionCookieOf(d)
	if !cookie.HTTPOnly || cookie.SameSite != network.CookieSameSiteStrict || cookie.Path != "/" {
		t.Errorf("session cookie HttpOnly=%v SameSite=%q Path=%q, want HttpOnly, Strict, /", cookie.HTTPOnly, cookie.SameSite, cookie.Path)
	}
	if eval[bool](b, fmt.Sprintf("document.cookie.includes(%s)", jsString(sessionCookie))) {
		t.Errorf("the page's script can read the session cookie")
	}
	csrf := run(b, "the page's CSRF token", chromedp.AttributeValue(chromedp.CSS(`meta[name="csrf-token"]`), "content")).Value
	if csrf == "" {
		t.Fatalf("the page has no CSRF token")
	}

	// The attacker's page: another origin (same host, another port, which
	// browsers count as the same site, so the Strict cookie goes along and
	// only deployd's own checks stand in the way).
	target := d.url + "/api/v1/services/" + e.svc + "/rollback"
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>free prizes</title>
<form id="f" method="post" action="%s"><input type="hidden" name="csrf_token" value="guess"></form>
<script>document.getElementById('f').submit()</script>`, target)
	}))
	t.Cleanup(evil.Close)

	ctx, cancel := context.WithTimeout(b.ctx, pageTimeout)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.WaitEvent(network.ResponseReceived,
		func(ev network.EventResponseReceived) bool { return ev.Response.URL == target },
		chromedp.Navigate(evil.URL)))
	if err != nil {
		t.Fatalf("browser: the forged form's response: %v", err)
	}
	if resp.Response.Status != http.StatusForbidden {
		t.Fatalf("forged cross-site POST: status = %d, want %d", resp.Response.Status, http.StatusForbidden)
	}

	// A non-browser client with the stolen cookie but without the token.
	if status, body := postWithCookie(t, d, "/api/v1/services/"+e.svc+"/rollback", cookie, ""); status != http.StatusForbidden {
		t.Fatalf("POST with the session cookie and no CSRF token: status = %d, want %d; body %s", status, http.StatusForbidden, body)
	}
	if status, body := postWithCookie(t, d, "/api/v1/services/"+e.svc+"/rollback", cookie, "not-"+csrf); status != http.StatusForbidden {
		t.Fatalf("POST with the session cookie and a wrong CSRF token: status = %d, want %d; body %s", status, http.StatusForbidden, body)
	}

	if ids := d.deploymentIDs(); len(ids) != 2 {
		t.Fatalf("deployments = %d (%v), want 2: a refused request must not start a rollback", len(ids), ids)
	}
	e.assertServes("v2", "green")
	var refused int
	for _, a := range d.audit() {
		if a.Action == "rollback" && a.Target == e.svc {
			if a.Status != http.StatusForbidden {
				t.Errorf("audited rollback by %s: status %d (%s), want %d", a.Actor, a.Status, a.Result, http.StatusForbidden)
			}
			refused++
		}
	}
	if refused != 3 {
		t.Errorf("refused rollbacks in the audit trail = %d, want 3", refused)
	}

	// The same cookie with the right token works: the refusals above were
	// about the forgery, not a dead session.
	status, body := postWithCookie(t, d, "/api/v1/services/"+e.svc+"/rollback", cookie, csrf)
	if status != http.StatusAccepted {
		t.Fatalf("POST with the session cookie and its CSRF token: status = %d, want %d; body %s", status, http.StatusAccepted, body)
	}
	dep := d.waitDeployment(decode[api.Deployment](t, []byte(body)).ID)
	if dep.Status != controller.StatusSucceeded {
		t.Fatalf("rollback with the right token: %s (%s), want succeeded", dep.Status, dep.Error)
	}
	e.assertServes("v1", "blue")
}

func TestBrowser_PageShowsFailedDeployError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2-fail")
	cfg := defaultSvc()
	cfg.StartTimeout = failFastStartTimeout
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	good := d.mustSucceed("v1")
	failed := d.waitDeployment(d.deploy("v2-fail").ID)
	if failed.Status != controller.StatusFailed || failed.Error == "" {
		t.Fatalf("deploy of v2-fail: %s (%q), want failed with an error", failed.Status, failed.Error)
	}

	b := newBrowser(t)
	b.login(d, e.token)
	row := fmt.Sprintf(`#history tr.deployment[data-id="%s"]`, failed.ID)
	if got := b.text(row + " .status"); !strings.Contains(strings.ToLower(got), "failed") {
		t.Errorf("history status of the failed deploy = %q, want failed", got)
	}
	// Its row offers a retry; the good deploy's row a redeploy.
	if got := b.text(row + " button.redeploy"); got != "Retry" {
		t.Errorf("failed row's button = %q, want Retry", got)
	}
	if got := b.text(fmt.Sprintf(`#history tr.deployment[data-id="%s"] button.redeploy`, good.ID)); got != "Redeploy" {
		t.Errorf("good row's button = %q, want Redeploy", got)
	}
	b.waitTrue("active still BLUE", colorIs(card(e.svc, ".active-color"), "blue"), pageTimeout)
	e.assertServes("v1", "blue")

	// The failure stays on the card, from the store, across a reload.
	b.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(card(e.svc, ".last-failure"))))
	failure := b.text(card(e.svc, ".last-failure"))
	for _, want := range []string{"last deploy failed:", failed.Error, "by " + failed.Trigger.Actor} {
		if !strings.Contains(failure, want) {
			t.Errorf("card's .last-failure = %q, want it to contain %q", failure, want)
		}
	}
	b.screenshot("failed-deploy-card")

	b.click("open the details", row+" a.details")
	b.do("wait for the details", chromedp.WaitVisible(chromedp.CSS(".deployment-error")))
	if loc := run(b, "location", chromedp.Location()); loc != d.url+"/deployments/"+failed.ID {
		t.Errorf("details page = %q, want %q", loc, d.url+"/deployments/"+failed.ID)
	}
	// Traffic never moved: no arrow from BLUE to GREEN.
	if got, want := b.text(".traffic"), "stayed on BLUE (GREEN was the target)"; got != want {
		t.Errorf(".traffic = %q, want %q", got, want)
	}
	if got := b.text(".deployment-error"); !strings.Contains(got, failed.Error) {
		t.Errorf(".deployment-error = %q, want it to contain %q", got, failed.Error)
	}
	var names []string
	for _, s := range failed.Steps {
		names = append(names, s.Name)
	}
	got := eval[[]string](b, `Array.from(document.querySelectorAll('li.step')).map(li => li.dataset.step)`)
	if !slices.Equal(got, names) {
		t.Errorf("steps on the details page = %v, want %v", got, names)
	}
	b.screenshot("failed-deploy")
}

// updateReadmeScreenshot recompresses the PNG at src into the README's
// picture, only when DEPLOYD_UPDATE_SCREENSHOT=1.
func updateReadmeScreenshot(t *testing.T, src string) {
	t.Helper()
	if os.Getenv(updateScreenshotEnv) != "1" {
		return
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("read screenshot: %v", err)
	}
	img, _, err := image.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("decode screenshot: %v", err)
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, img); err != nil {
		t.Fatalf("encode screenshot: %v", err)
	}
	if buf.Len() > maxReadmeScreenshot {
		t.Fatalf("README screenshot is %d bytes, want at most %d", buf.Len(), maxReadmeScreenshot)
	}
	if err := os.MkdirAll(filepath.Dir(readmeScreenshot), 0o755); err != nil {
		t.Fatalf("docs folder: %v", err)
	}
	if err := os.WriteFile(readmeScreenshot, buf.Bytes(), 0o644); err != nil {
		t.Fatalf("write README screenshot: %v", err)
	}
	t.Logf("README screenshot updated: %s (%d bytes)", readmeScreenshot, buf.Len())
}

func isRFC3339(s string) bool {
	_, err := time.Parse(time.RFC3339, s)
	return err == nil
}

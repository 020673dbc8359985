package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/deployd/deployd/internal/config"
)

// bannerShown is a JavaScript predicate: the card of svc shows the
// traffic banner of state (paused, maintenance).
func bannerShown(svc, state string) string {
	return fmt.Sprintf(`(() => { const el = document.querySelector(%s);
		return !!el && el.offsetParent !== null; })()`, jsString(card(svc, fmt.Sprintf(`.traffic-banner[data-state=%q]`, state))))
}

// bannerGone is a JavaScript predicate: the card of svc shows no banner
// of state.
func bannerGone(svc, state string) string {
	return fmt.Sprintf(`document.querySelectorAll(%s).length === 0`, jsString(card(svc, fmt.Sprintf(`.traffic-banner[data-state=%q]`, state))))
}

// pressConfirmed clicks the card's button of class, checks the
// confirmation names the service, types message into the dialog's field
// when it is not empty, and confirms.
func (b *browser) pressConfirmed(svc, class, message string) {
	b.t.Helper()
	btn := card(svc, fmt.Sprintf(`button.%s[data-service=%q]`, class, svc))
	b.click("click "+class, btn)
	b.do("wait for the dialog", chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")))
	if got := b.text("#confirm-message"); !strings.Contains(got, svc) {
		b.t.Errorf("%s confirmation = %q, want it to name %s", class, got, svc)
	}
	if message != "" {
		if focused := eval[string](b, "document.activeElement && document.activeElement.id"); focused != "confirm-input" {
			b.t.Errorf("focus in the %s dialog is on %q, want the message field", class, focused)
		}
		b.do("type the message", chromedp.SendKeys(chromedp.CSS("#confirm-input"), message))
	}
	b.do("confirm "+class, chromedp.Click(chromedp.CSS("#confirm-yes")), chromedp.WaitNotVisible(chromedp.CSS("#confirm-dialog")))
}

// logout leaves the page and drops the browser's cookies, the session's
// among them.
func (b *browser) logout() {
	b.t.Helper()
	// Leave the page first: its script follows deployd's events and, its
	// session gone, would send the browser to /login while the test does.
	b.do("leave the page", chromedp.Navigate("about:blank"))
	ctx, cancel := context.WithTimeout(b.ctx, pageTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
		b.t.Fatalf("browser: clear cookies: %v", err)
	}
}

// In switch mode an operator pauses and resumes, and turns maintenance on
// with a message and off, from the status page; the banners come and go
// in place and traffic through nginx follows. A viewer sees the banners
// but no button.
func TestBrowser_OperatorPausesAndMaintainsFromThePageViewerOnlySees(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1")
	cfg := defaultSvc()
	cfg.Traffic = config.TrafficModeSwitch
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	d.mustSucceed("v1")
	b := newBrowser(t)
	b.login(d, e.token)
	eval[bool](b, "window.deploydNoReload = true")

	b.pressConfirmed(e.svc, "pause", "")
	b.waitTrue("the PAUSED banner", bannerShown(e.svc, "paused"), liveTimeout)
	if got := b.text(card(e.svc, `.traffic-banner[data-state="paused"]`)); !strings.HasPrefix(got, "PAUSED") {
		t.Errorf("paused banner = %q, want it to start with PAUSED", got)
	}
	if tr := d.traffic(); !tr.Paused {
		t.Fatalf("after Pause on the page the service view's traffic = %+v, want paused", tr)
	}
	b.waitTrue("the Resume button", fmt.Sprintf("!!document.querySelector(%s)", jsString(card(e.svc, "button.resume"))), liveTimeout)
	b.screenshot("paused")
	b.phoneFits("the page with the PAUSED banner")
	b.pressConfirmed(e.svc, "resume", "")
	b.waitTrue("the PAUSED banner gone", bannerGone(e.svc, "paused"), liveTimeout)
	if tr := d.traffic(); tr.Paused {
		t.Fatalf("after Resume on the page the traffic = %+v, want not paused", tr)
	}
	e.assertServes("v1", "blue")

	const msg = "Back at 18:00 UTC: database upgrade"
	b.pressConfirmed(e.svc, "maintenance-on", msg)
	b.waitTrue("the MAINTENANCE banner", bannerShown(e.svc, "maintenance"), liveTimeout)
	if got := b.text(card(e.svc, ".maintenance-message")); got != msg {
		t.Errorf("maintenance banner message = %q, want %q", got, msg)
	}
	if a := e.visit(); a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, msg) {
		t.Fatalf("nginx during maintenance from the page: %d %q (%v), want 503 with the message", a.status, a.body, a.err)
	}
	b.screenshot("maintenance")
	b.pressConfirmed(e.svc, "maintenance-off", "")
	b.waitTrue("the MAINTENANCE banner gone", bannerGone(e.svc, "maintenance"), liveTimeout)
	e.assertServes("v1", "blue")
	if !eval[bool](b, "window.deploydNoReload === true") {
		t.Fatalf("the page reloaded; the banners must change in place")
	}
	want := []string{"pause 200", "resume 200", "maintenance_on 200", "maintenance_off 200"}
	if got := d.auditTrail(); !equal(got, want) {
		t.Fatalf("audit trail = %v, want %v", got, want)
	}

	// A viewer, with both on.
	d.mustTraffic("pause", nil)
	d.mustTraffic("maintenance", map[string]any{"on": true, "message": msg})
	b.logout()
	b.login(d, e.viewer)
	if role := eval[string](b, "document.body.dataset.role"); role != "viewer" {
		t.Fatalf("body data-role = %q, want viewer", role)
	}
	b.waitTrue("the PAUSED banner", bannerShown(e.svc, "paused"), pageTimeout)
	b.waitTrue("the MAINTENANCE banner", bannerShown(e.svc, "maintenance"), pageTimeout)
	if got := b.text(card(e.svc, ".maintenance-message")); got != msg {
		t.Errorf("maintenance banner message = %q, want %q", got, msg)
	}
	for _, sel := range []string{"button.pause", "button.resume", "button.maintenance-on", "button.maintenance-off", ".traffic-actions"} {
		if n := b.count(sel); n != 0 {
			t.Errorf("%s on a viewer's page = %d, want 0", sel, n)
		}
	}
	b.screenshot("viewer-paused-maintenance")
}

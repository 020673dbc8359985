package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
)

// httptest.NewRequest's Host; a browser on our own page sends it as Origin.
const (
	testHost   = "example.com"
	testOrigin = "http://example.com"
)

// cookieRequest describes a request as the status page's browser, or a
// forger's, would send it.
type cookieRequest struct {
	method, path, body string
	session            string // cookie value; "" sends none
	csrf               string // X-CSRF-Token; "" sends none
	origin, fetchSite  string
	forwardedHost      string // X-Forwarded-Host
	bearer             string
}

func (h *harness) sendAs(t *testing.T, r cookieRequest) *http.Response {
	t.Helper()
	req := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.session != "" {
		req.AddCookie(&http.Cookie{Name: auth.CookieName, Value: r.session})
	}
	for k, v := range map[string]string{
		auth.CSRFHeader: r.csrf, "Origin": r.origin, "Sec-Fetch-Site": r.fetchSite, "X-Forwarded-Host": r.forwardedHost,
	} {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	if r.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	resp, err := h.srv.App().Test(req, 5000)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (h *harness) login(role auth.Role) auth.Session {
	names := map[auth.Role]string{auth.RoleViewer: "ci-viewer", auth.RoleDeployer: "ci-deployer", auth.RoleOperator: "ops"}
	s, err := h.sessions.Create(context.Background(), auth.Identity{Name: names[role], Role: role})
	if err != nil {
		panic(err) // a memory-only store does not fail
	}
	return s
}

func TestSession_CookieAuthenticatesReads(t *testing.T) {
	paths := []string{"/api/v1/services", "/api/v1/services/web", "/api/v1/deployments", "/api/v1/deployments/d-42", "/api/v1/deployments/d-42/events", "/api/v1/audit"}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			h := newHarness(t)
			sess := h.login(auth.RoleViewer)
			// A read needs no CSRF token, and EventSource sends none.
			resp := h.sendAs(t, cookieRequest{method: "GET", path: path, session: sess.ID, fetchSite: "same-origin"})
			wantStatus(t, resp, fiber.StatusOK)
			if n := len(h.ctl.Calls()); n != 1 {
				t.Errorf("controller calls = %d, want 1", n)
			}
		})
	}
}

func TestSession_StateChangeNeedsCSRFTokenAndSameOrigin(t *testing.T) {
	tests := []struct {
		name              string
		csrf              string // "ok" means the session's token
		origin, fetchSite string
		want              int
		wantMsg           string
	}{
		{"no CSRF token", "", testOrigin, "same-origin", 403, "missing or wrong CSRF token"},
		{"wrong CSRF token", "not-the-token", testOrigin, "same-origin", 403, "missing or wrong CSRF token"},
		{"CSRF token but cross-site", "ok", "", "cross-site", 403, "cross-site request refused"},
		{"CSRF token but same-site sibling", "ok", "", "same-site", 403, "cross-site request refused"},
		{"CSRF token but Origin of another host", "ok", "http://evil.example", "", 403, "cross-site request refused"},
		{"CSRF token but null Origin", "ok", "null", "", 403, "cross-site request refused"},
		{"CSRF token and same origin", "ok", testOrigin, "same-origin", 202, ""},
		{"CSRF token, no origin headers (not a browser)", "ok", "", "", 202, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			sess := h.login(auth.RoleOperator)
			csrf := tt.csrf
			if csrf == "ok" {
				csrf = sess.CSRF
			}
			resp := h.sendAs(t, cookieRequest{
				method: "POST", path: "/api/v1/services/web/rollback", session: sess.ID,
				csrf: csrf, origin: tt.origin, fetchSite: tt.fetchSite,
				// The page's rule and the API's are one: neither trusts it.
				forwardedHost: strings.TrimPrefix(tt.origin, "http://"),
			})
			wantStatus(t, resp, tt.want)
			calls := h.ctl.Calls()
			if tt.want != 202 {
				body := decodeJSON[errorBody](t, resp)
				if body.Code != "forbidden" || body.Error != tt.wantMsg {
					t.Errorf("body = %+v, want code forbidden and %q", body, tt.wantMsg)
				}
				if len(calls) != 0 {
					t.Errorf("controller called %+v, want no call", calls)
				}
				return
			}
			if len(calls) != 1 || calls[0].method != "Rollback" || calls[0].trigger.Actor != "ops" {
				t.Errorf("calls = %+v, want one Rollback by ops", calls)
			}
		})
	}
}

func TestSession_EveryMutatingRouteChecksCSRF(t *testing.T) {
	routes := []struct{ path, body string }{
		{"/api/v1/services/web/deployments", `{"image":"demoapp:v2"}`},
		{"/api/v1/services/web/rollback", ""},
		{"/api/v1/deployments/d-42/cancel", ""},
	}
	for _, r := range routes {
		t.Run(r.path, func(t *testing.T) {
			h := newHarness(t)
			sess := h.login(auth.RoleOperator)
			resp := h.sendAs(t, cookieRequest{method: "POST", path: r.path, body: r.body, session: sess.ID, origin: testOrigin})
			wantStatus(t, resp, fiber.StatusForbidden)
			resp = h.sendAs(t, cookieRequest{method: "POST", path: r.path, body: r.body, session: sess.ID, csrf: sess.CSRF, origin: testOrigin})
			wantStatus(t, resp, fiber.StatusAccepted)
		})
	}
}

func TestSession_DeployByCookieIsTriggeredByTheTokenName(t *testing.T) {
	h := newHarness(t)
	sess := h.login(auth.RoleDeployer)
	resp := h.sendAs(t, cookieRequest{
		method: "POST", path: "/api/v1/services/web/deployments", body: `{"image":"demoapp:v2"}`,
		session: sess.ID, csrf: sess.CSRF, origin: testOrigin, fetchSite: "same-origin",
	})
	wantStatus(t, resp, fiber.StatusAccepted)
	calls := h.ctl.Calls()
	if len(calls) != 1 || calls[0].req.Trigger.Actor != "ci-deployer" {
		t.Errorf("calls = %+v, want one Deploy by ci-deployer", calls)
	}
	audit := h.ctl.AuditEntries()
	if len(audit) != 1 || audit[0].Actor != "ci-deployer" || audit[0].Result != "ok" {
		t.Errorf("audit = %+v, want one ok entry by ci-deployer", audit)
	}
}

func TestSession_RoleStillApplies(t *testing.T) {
	h := newHarness(t)
	sess := h.login(auth.RoleViewer)
	resp := h.sendAs(t, cookieRequest{method: "POST", path: "/api/v1/services/web/rollback", session: sess.ID, csrf: sess.CSRF, origin: testOrigin})
	wantStatus(t, resp, fiber.StatusForbidden)
	if got := decodeJSON[errorBody](t, resp).Error; !strings.Contains(got, "role viewer") {
		t.Errorf("error = %q, want it to name the role", got)
	}
	if calls := h.ctl.Calls(); len(calls) != 0 {
		t.Errorf("controller called %+v, want no call", calls)
	}
}

func TestSession_BearerRequestsNeedNoCSRF(t *testing.T) {
	h := newHarness(t)
	// Browsers cannot attach an Authorization header to a cross-site
	// request without a CORS preflight we never grant, so origin headers
	// do not matter to bearer requests.
	resp := h.sendAs(t, cookieRequest{method: "POST", path: "/api/v1/services/web/rollback", bearer: operatorSecret, origin: "http://evil.example", fetchSite: "cross-site"})
	wantStatus(t, resp, fiber.StatusAccepted)
	resp = h.sendAs(t, cookieRequest{method: "POST", path: "/api/v1/deployments/d-42/cancel", bearer: operatorSecret})
	wantStatus(t, resp, fiber.StatusAccepted)
}

func TestSession_AuthorizationHeaderDecidesOverCookie(t *testing.T) {
	h := newHarness(t)
	sess := h.login(auth.RoleOperator)
	resp := h.sendAs(t, cookieRequest{method: "GET", path: "/api/v1/services", session: sess.ID, bearer: "not-a-token"})
	wantStatus(t, resp, fiber.StatusUnauthorized)
	// A viewer's bearer token with an operator's cookie acts as the viewer.
	resp = h.sendAs(t, cookieRequest{method: "POST", path: "/api/v1/services/web/rollback", session: sess.ID, csrf: sess.CSRF, bearer: viewerSecret})
	wantStatus(t, resp, fiber.StatusForbidden)
}

func TestSession_EndedSessionsAreUnauthorized(t *testing.T) {
	tests := []struct {
		name string
		end  func(h *harness, s auth.Session)
	}{
		{"expired", func(h *harness, _ auth.Session) { h.clock.Advance(sessionTTL) }},
		{"revoked", func(h *harness, s auth.Session) { _ = h.sessions.Revoke(context.Background(), s.ID) }},
		{"never issued", func(h *harness, s auth.Session) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			sess := h.login(auth.RoleOperator)
			if tt.name == "never issued" {
				sess.ID = "made-up-session-id"
			}
			tt.end(h, sess)
			for _, r := range []cookieRequest{
				{method: "GET", path: "/api/v1/services", session: sess.ID},
				{method: "POST", path: "/api/v1/services/web/rollback", session: sess.ID, csrf: sess.CSRF, origin: testOrigin},
			} {
				resp := h.sendAs(t, r)
				wantStatus(t, resp, fiber.StatusUnauthorized)
				if got := decodeJSON[errorBody](t, resp).Code; got != "unauthorized" {
					t.Errorf("%s %s: code = %q, want unauthorized", r.method, r.path, got)
				}
			}
			if calls := h.ctl.Calls(); len(calls) != 0 {
				t.Errorf("controller called %+v, want no call", calls)
			}
		})
	}
}

func TestSession_CookieIgnoredWithoutSessionStore(t *testing.T) {
	h := newHarness(t)
	sess := h.login(auth.RoleOperator)
	srv := New(Options{Controller: h.ctl, Tokens: testTokens, Logger: h.srv.log})
	req := httptest.NewRequest("GET", "/api/v1/services", nil)
	req.AddCookie(&http.Cookie{Name: auth.CookieName, Value: sess.ID})
	resp, err := srv.App().Test(req, 5000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wantStatus(t, resp, fiber.StatusUnauthorized)
}

func TestSession_ForgedCrossSitePostIsAuditedAsRefused(t *testing.T) {
	h := newHarness(t)
	sess := h.login(auth.RoleOperator)
	// What a hostile page's auto-submitting form makes the browser send:
	// the victim's cookie, no CSRF token, cross-site headers.
	resp := h.sendAs(t, cookieRequest{
		method: "POST", path: "/api/v1/services/web/rollback", session: sess.ID,
		origin: "http://evil.example", fetchSite: "cross-site",
	})
	wantStatus(t, resp, fiber.StatusForbidden)
	if calls := h.ctl.Calls(); len(calls) != 0 {
		t.Errorf("controller called %+v, want no call", calls)
	}
	audit := h.ctl.AuditEntries()
	if len(audit) != 1 {
		t.Fatalf("audit = %+v, want one entry", audit)
	}
	got := audit[0]
	want := controller.AuditEntry{Actor: "ops", Action: "rollback", Target: "web", Result: "forbidden", Status: 403}
	got.Time, got.Address, got.RequestID = want.Time, "", ""
	if got != want {
		t.Errorf("entry = %+v\nwant    %+v", got, want)
	}
	warned := false
	for _, e := range h.hook.AllEntries() {
		if e.Message == "cross-site request with a session cookie refused" && e.Data["origin"] == "http://evil.example" {
			warned = true
		}
		if line, _ := e.String(); strings.Contains(line, sess.ID) || strings.Contains(line, sess.CSRF) {
			t.Errorf("log line contains the session id or CSRF token: %s", line)
		}
		// The request did not count as the token's.
		if e.Message == "request" && e.Data["token"] != nil {
			t.Errorf("refused request logged with token %v", e.Data["token"])
		}
	}
	if !warned {
		t.Error("no warning about the cross-site request")
	}
}

func TestPages_RoutesAreServedWithTheServersMiddleware(t *testing.T) {
	h := newHarness(t)
	resp := h.sendAs(t, cookieRequest{method: "GET", path: "/login"})
	wantStatus(t, resp, fiber.StatusOK)
	wantSecurityHeaders(t, resp, true)
	if id := resp.Header.Get("X-Request-Id"); !validRequestID(id) {
		t.Errorf("X-Request-Id = %q, want an id", id)
	}

	resp = h.sendAs(t, cookieRequest{method: "GET", path: "/"})
	wantStatus(t, resp, fiber.StatusSeeOther)
	if got := resp.Header.Get("Location"); got != "/login" {
		t.Errorf("Location = %q, want /login", got)
	}
	sess := h.login(auth.RoleViewer)
	resp = h.sendAs(t, cookieRequest{method: "GET", path: "/", session: sess.ID})
	wantStatus(t, resp, fiber.StatusOK)
	wantSecurityHeaders(t, resp, true)

	// The pages come after the API: an API path is never a page.
	resp = h.sendAs(t, cookieRequest{method: "GET", path: "/api/v1/nope"})
	wantStatus(t, resp, fiber.StatusNotFound)
}

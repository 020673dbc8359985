package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/pkg/auth"
)

// concretePath fills a route's parameters with plausible values.
func concretePath(p string) string {
	p = strings.ReplaceAll(p, ":name", "web")
	return strings.ReplaceAll(p, ":id", "d-42")
}

// isAPIPath tells the API's routes from the status page's.
func isAPIPath(p string) bool {
	return p == "/healthz" || p == "/readyz" || p == "/metrics" || hasPathPrefix(p, "/api") || hasPathPrefix(p, "/hooks")
}

func TestAuth_EveryRouteButHealthzAndReadyzNeedsATokenOrIsAPage(t *testing.T) {
	h := newHarness(t)
	routes := h.srv.App().GetRoutes(true)
	if len(routes) == 0 {
		t.Fatal("no routes registered")
	}
	seenAPI, seenPages := 0, 0
	for _, r := range routes {
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			path := strings.ReplaceAll(concretePath(r.Path), "*", "app.css")
			resp := h.do(t, r.Method, path, "", "")
			if r.Path == "/healthz" || r.Path == "/readyz" {
				wantStatus(t, resp, fiber.StatusOK)
				return
			}
			if !isAPIPath(r.Path) {
				// Pages are public (login, assets) or send the browser to
				// the login page; they never answer with data.
				seenPages++
				switch resp.StatusCode {
				case fiber.StatusOK:
				case fiber.StatusSeeOther:
					if got := resp.Header.Get("Location"); got != "/login" {
						t.Errorf("Location = %q, want /login", got)
					}
				default:
					t.Errorf("status = %d, want 200 or 303 to /login", resp.StatusCode)
				}
				return
			}
			seenAPI++
			// The webhook answers its own 401: no signature.
			wantChallenge := "Bearer"
			if r.Path == "/hooks/deploy" {
				wantChallenge = `HMAC-SHA256 header="X-Hub-Signature-256"`
			}
			wantStatus(t, resp, fiber.StatusUnauthorized)
			if got := resp.Header.Get("WWW-Authenticate"); got != wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, wantChallenge)
			}
			if r.Method == fiber.MethodHead {
				return // no body on HEAD
			}
			body := decodeJSON[errorBody](t, resp)
			if body.Code != "unauthorized" || body.Error == "" {
				t.Errorf("body = %+v, want code unauthorized and a message", body)
			}
		})
	}
	if seenAPI < 12 {
		t.Errorf("walked %d API routes besides /healthz and /readyz, want at least 12 (with /metrics)", seenAPI)
	}
	if seenPages < 3 {
		t.Errorf("walked %d page routes, want at least 3 (/, /login, /static/*)", seenPages)
	}
	if calls := h.ctl.Calls(); len(calls) != 0 {
		t.Errorf("controller called %d times without credentials, want 0: %+v", len(calls), calls)
	}
}

func TestAuth_BadCredentialsAreUnauthorized(t *testing.T) {
	tests := []struct {
		name   string
		header string
	}{
		{"no header", ""},
		{"unknown token", "Bearer not-a-token"},
		{"basic scheme", "Basic " + viewerSecret},
		{"no scheme", viewerSecret},
		{"empty bearer", "Bearer "},
		{"token with space", "Bearer " + viewerSecret + " extra"},
		{"prefix of a token", "Bearer " + viewerSecret[:len(viewerSecret)-1]},
		{"token plus a byte", "Bearer " + viewerSecret + "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			req := httptest.NewRequest(http.MethodGet, "/api/v1/services", nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp := h.send(t, req)
			wantStatus(t, resp, fiber.StatusUnauthorized)
			if got := decodeJSON[errorBody](t, resp).Code; got != "unauthorized" {
				t.Errorf("code = %q, want unauthorized", got)
			}
			if n := len(h.ctl.Calls()); n != 0 {
				t.Errorf("controller called %d times, want 0", n)
			}
		})
	}
}

func TestAuth_SchemeIsCaseInsensitive(t *testing.T) {
	h := newHarness(t)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/services", nil)
	req.Header.Set("Authorization", "bearer "+viewerSecret)
	resp, err := h.srv.App().Test(req, 5000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wantStatus(t, resp, fiber.StatusOK)
}

func TestAuth_RoleMatrix(t *testing.T) {
	endpoints := []struct {
		name, method, path, body, wantCall string
		minRole                            auth.Role
		okStatus                           int
	}{
		{"list services", "GET", "/api/v1/services", "", "Services", auth.RoleViewer, 200},
		{"get service", "GET", "/api/v1/services/web", "", "Service", auth.RoleViewer, 200},
		{"list deployments", "GET", "/api/v1/deployments", "", "Deployments", auth.RoleViewer, 200},
		{"get deployment", "GET", "/api/v1/deployments/d-42", "", "Deployment", auth.RoleViewer, 200},
		{"deploy", "POST", "/api/v1/services/web/deployments", `{"image":"demoapp:v2"}`, "Deploy", auth.RoleDeployer, 202},
		{"rollback", "POST", "/api/v1/services/web/rollback", "", "Rollback", auth.RoleOperator, 202},
		{"deployment events", "GET", "/api/v1/deployments/d-42/events", "", "Events", auth.RoleViewer, 200},
		{"cancel", "POST", "/api/v1/deployments/d-42/cancel", "", "Cancel", auth.RoleOperator, 202},
		{"audit", "GET", "/api/v1/audit", "", "Audit", auth.RoleViewer, 200},
		{"openapi", "GET", "/api/v1/openapi.yaml", "", "", auth.RoleViewer, 200},
	}
	tokens := []struct {
		role   auth.Role
		secret string
	}{{auth.RoleViewer, viewerSecret}, {auth.RoleDeployer, deployerSecret}, {auth.RoleOperator, operatorSecret}}

	for _, e := range endpoints {
		for _, tok := range tokens {
			t.Run(e.name+" as "+tok.role.String(), func(t *testing.T) {
				h := newHarness(t)
				resp := h.do(t, e.method, e.path, tok.secret, e.body)
				calls := h.ctl.Calls()
				if tok.role < e.minRole {
					wantStatus(t, resp, fiber.StatusForbidden)
					if got := decodeJSON[errorBody](t, resp).Code; got != "forbidden" {
						t.Errorf("code = %q, want forbidden", got)
					}
					if len(calls) != 0 {
						t.Errorf("controller called %+v, want no call", calls)
					}
					return
				}
				wantStatus(t, resp, e.okStatus)
				if e.wantCall == "" {
					if len(calls) != 0 {
						t.Errorf("calls = %+v, want none", calls)
					}
					return
				}
				if len(calls) != 1 || calls[0].method != e.wantCall {
					t.Errorf("calls = %+v, want one %s", calls, e.wantCall)
				}
			})
		}
	}
}

func TestAuth_ZeroRoleTokenCanDoNothing(t *testing.T) {
	logger, _ := logtest.NewNullLogger()
	ctl := &fakeController{}
	srv := New(Options{Controller: ctl, Tokens: []auth.Token{{Name: "norole", Secret: "s3cret-value"}}, Logger: logger})
	req := httptest.NewRequest(http.MethodGet, "/api/v1/services", nil)
	req.Header.Set("Authorization", "Bearer s3cret-value")
	resp, err := srv.App().Test(req, 5000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wantStatus(t, resp, fiber.StatusForbidden)
}

func TestAuth_EmptySecretNeverAuthenticates(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	ctl := &fakeController{}
	srv := New(Options{Controller: ctl, Tokens: []auth.Token{{Name: "blank", Role: auth.RoleOperator}}, Logger: logger})
	for _, header := range []string{"Bearer ", "Bearer", ""} {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/services", nil)
		req.Header.Set("Authorization", header)
		resp, err := srv.App().Test(req, 5000)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != fiber.StatusUnauthorized {
			t.Errorf("Authorization %q: status = %d, want 401", header, resp.StatusCode)
		}
	}
	warned := false
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel && e.Data["token"] == "blank" {
			warned = true
		}
	}
	if !warned {
		t.Error("no warning about the token with an empty secret")
	}
}

func TestAuth_TokenNameIsLoggedAndSecretNever(t *testing.T) {
	h := newHarness(t)
	resp := h.do(t, "GET", "/api/v1/services", viewerSecret, "")
	wantStatus(t, resp, fiber.StatusOK)
	resp = h.do(t, "GET", "/api/v1/services", "wrong-secret-value", "")
	wantStatus(t, resp, fiber.StatusUnauthorized)

	var found bool
	for _, e := range h.hook.AllEntries() {
		line, err := e.String()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(line, viewerSecret) || strings.Contains(line, "wrong-secret-value") {
			t.Errorf("log line contains a secret: %s", line)
		}
		if e.Message == "request" && e.Data["token"] == "ci-viewer" && e.Data["status"] == 200 {
			found = true
		}
	}
	if !found {
		t.Errorf("no request log line with token ci-viewer and status 200 in %d entries", len(h.hook.AllEntries()))
	}
}

func TestAuth_WebhookSecretIsNotAToken(t *testing.T) {
	tests := []struct {
		name   string
		tokens []auth.Token
	}{
		{"no token has it", testTokens},
		{"a token configured with it is ignored", append([]auth.Token{{Name: "leaky", Role: auth.RoleOperator, Secret: webhookSecret}}, testTokens...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, hook := logtest.NewNullLogger()
			ctl := &fakeController{}
			srv := New(Options{Controller: ctl, Tokens: tt.tokens, WebhookSecret: []byte(webhookSecret), Logger: logger})
			req := httptest.NewRequest(http.MethodGet, "/api/v1/services", nil)
			req.Header.Set("Authorization", "Bearer "+webhookSecret)
			resp, err := srv.App().Test(req, 5000)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			wantStatus(t, resp, fiber.StatusUnauthorized)
			if n := len(ctl.Calls()); n != 0 {
				t.Errorf("controller called %d times, want 0", n)
			}
			for _, e := range hook.AllEntries() {
				if s, _ := e.String(); strings.Contains(s, webhookSecret) {
					t.Errorf("log line contains the webhook secret: %s", s)
				}
			}
		})
	}
}

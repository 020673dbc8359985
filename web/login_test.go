package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/auth"
)

func sessionCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == auth.CookieName {
			return c
		}
	}
	t.Fatalf("no %s cookie in %q", auth.CookieName, resp.Header.Values("Set-Cookie"))
	return nil
}

func TestLogin_SuccessSetsStrictHttpOnlySessionCookie(t *testing.T) {
	tests := []struct {
		name       string
		opts       []fixtureOption
		tls        bool
		wantSecure bool
	}{
		{name: "plain http", wantSecure: false},
		{name: "secure cookies configured", opts: []fixtureOption{withSecureCookies}, wantSecure: true},
		{name: "request came over TLS", tls: true, wantSecure: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.opts...)
			req := postForm("/login", url.Values{"token": {operatorSecret}}, nil)
			if tt.tls {
				// What a TLS-terminating proxy in front says; fiber's
				// Secure() also covers a direct TLS connection.
				req.Header.Set("X-Forwarded-Proto", "https")
			}
			resp, body := f.do(t, req)
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("status = %d, want %d\n%s", resp.StatusCode, http.StatusSeeOther, body)
			}
			if got := resp.Header.Get("Location"); got != "/" {
				t.Errorf("Location = %q, want /", got)
			}
			raw := strings.Join(resp.Header.Values("Set-Cookie"), "\n")
			c := sessionCookie(t, resp)
			if !c.HttpOnly {
				t.Errorf("cookie not HttpOnly: %s", raw)
			}
			if c.SameSite != http.SameSiteStrictMode {
				t.Errorf("cookie SameSite = %v, want Strict: %s", c.SameSite, raw)
			}
			if c.Path != "/" {
				t.Errorf("cookie Path = %q, want /", c.Path)
			}
			if want := 12 * 3600; c.MaxAge != want {
				t.Errorf("cookie Max-Age = %d, want %d", c.MaxAge, want)
			}
			if c.Secure != tt.wantSecure {
				t.Errorf("cookie Secure = %v, want %v: %s", c.Secure, tt.wantSecure, raw)
			}

			s := &auth.Session{ID: c.Value}
			body = f.page(t, "/", s, http.StatusOK)
			toks := tokenize(t, body)
			if got := one(t, toks, "body").attrs["data-role"]; got != "operator" {
				t.Errorf("body data-role = %q, want operator", got)
			}
		})
	}
}

func TestLogin_WrongTokenRendersErrorWith401(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, postForm("/login", url.Values{"token": {"not-a-token"}}, nil))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d, want %d", resp.StatusCode, http.StatusUnauthorized)
	}
	if len(resp.Cookies()) != 0 {
		t.Errorf("cookies = %v, want none", resp.Header.Values("Set-Cookie"))
	}
	toks := tokenize(t, body)
	p := one(t, toks, "p", "error")
	if p.attrs["role"] != "alert" {
		t.Errorf(".error role = %q, want alert", p.attrs["role"])
	}
	one(t, toks, "form")
	if strings.Contains(body, "not-a-token") {
		t.Error("the page echoes the wrong token")
	}
	for _, e := range f.hook.AllEntries() {
		if s, err := e.String(); err == nil && strings.Contains(s, "not-a-token") {
			t.Errorf("log line holds the submitted token: %s", s)
		}
	}
}

func TestLogin_EleventhFailureIs429EvenWithTheRightToken(t *testing.T) {
	f := newFixture(t)
	for i := 1; i <= 10; i++ {
		resp, _ := f.do(t, postForm("/login", url.Values{"token": {"wrong"}}, nil))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: status = %d, want %d", i, resp.StatusCode, http.StatusUnauthorized)
		}
	}
	resp, body := f.do(t, postForm("/login", url.Values{"token": {"wrong"}}, nil))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("attempt 11: status = %d, want %d", resp.StatusCode, http.StatusTooManyRequests)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	one(t, tokenize(t, body), "p", "error")

	resp, _ = f.do(t, postForm("/login", url.Values{"token": {operatorSecret}}, nil))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("right token while blocked: status = %d, want %d", resp.StatusCode, http.StatusTooManyRequests)
	}
	if len(resp.Cookies()) != 0 {
		t.Errorf("blocked login set cookies %v", resp.Header.Values("Set-Cookie"))
	}
}

func TestLogin_CrossSitePostIsRefused(t *testing.T) {
	tests := []struct {
		name, origin, site string
	}{
		{"cross-site fetch metadata", testOrigin, "cross-site"},
		{"foreign origin", "https://evil.example", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			req := postForm("/login", url.Values{"token": {operatorSecret}}, nil)
			req.Header.Set("Origin", tt.origin)
			req.Header.Set("Sec-Fetch-Site", tt.site)
			resp, _ := f.do(t, req)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status = %d, want %d", resp.StatusCode, http.StatusForbidden)
			}
			if len(resp.Cookies()) != 0 {
				t.Errorf("refused login set cookies %v", resp.Header.Values("Set-Cookie"))
			}
		})
	}
}

func TestLogin_PageRedirectsWhenAlreadyLoggedIn(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleViewer)
	resp, _ := f.do(t, getReq("/login", &s))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("GET /login with a session: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestLogout_RevokesSessionServerSide(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleOperator)
	f.page(t, "/", &s, http.StatusOK)

	resp, _ := f.do(t, postForm("/logout", url.Values{auth.CSRFField: {s.CSRF}}, &s))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("logout: %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c := sessionCookie(t, resp); c.Value != "" || !c.Expires.Before(testNow) {
		t.Errorf("logout cookie = %q (expires %v), want cleared", c.Value, c.Expires)
	}
	// The old cookie, replayed, no longer works.
	resp, _ = f.do(t, getReq("/", &s))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("GET / with the revoked cookie: %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestLogout_WithoutCSRFTokenOrCrossSiteKeepsSession(t *testing.T) {
	tests := []struct {
		name  string
		token string
		site  string
	}{
		{name: "missing token", token: ""},
		{name: "wrong token", token: "nope"},
		{name: "cross-site", token: "<right>", site: "cross-site"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			s := f.session(auth.RoleOperator)
			token := tt.token
			if token == "<right>" {
				token = s.CSRF
			}
			req := postForm("/logout", url.Values{auth.CSRFField: {token}}, &s)
			if tt.site != "" {
				req.Header.Set("Sec-Fetch-Site", tt.site)
			}
			resp, _ := f.do(t, req)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status = %d, want %d", resp.StatusCode, http.StatusForbidden)
			}
			f.page(t, "/", &s, http.StatusOK)
		})
	}
}

func TestPages_WithoutSessionRedirectOrRefuse(t *testing.T) {
	f := newFixture(t)
	expired := &auth.Session{ID: "no-such-session"}
	tests := []struct {
		path   string
		s      *auth.Session
		status int
	}{
		{"/", nil, http.StatusSeeOther},
		{"/", expired, http.StatusSeeOther},
		{"/deployments/dep-2", nil, http.StatusSeeOther},
		{"/partials/services/web", nil, http.StatusUnauthorized},
		{"/partials/history", expired, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		resp, body := f.do(t, getReq(tt.path, tt.s))
		if resp.StatusCode != tt.status {
			t.Errorf("GET %s: status = %d, want %d", tt.path, resp.StatusCode, tt.status)
		}
		if tt.status == http.StatusSeeOther && resp.Header.Get("Location") != "/login" {
			t.Errorf("GET %s: Location = %q, want /login", tt.path, resp.Header.Get("Location"))
		}
		if strings.Contains(body, "alice") {
			t.Errorf("GET %s without a session shows data: %s", tt.path, body)
		}
	}
	// The login page itself is public.
	body := f.page(t, "/login", nil, http.StatusOK)
	toks := tokenize(t, body)
	form := one(t, toks, "form")
	if form.attrs["id"] != "login-form" || form.attrs["method"] != "post" || form.attrs["action"] != "/login" {
		t.Errorf("login form = %v", form.attrs)
	}
	in := one(t, toks, "input")
	if in.attrs["id"] != "token" || in.attrs["name"] != "token" || in.attrs["type"] != "password" {
		t.Errorf("token input = %v", in.attrs)
	}
	if got := one(t, toks, "button").attrs["id"]; got != "login-submit" {
		t.Errorf("login button id = %q, want login-submit", got)
	}
}

func TestLogin_SameOriginWithPortIsAccepted(t *testing.T) {
	f := newFixture(t)
	req := postForm("/login", url.Values{"token": {viewerSecret}}, nil)
	req.Host = "127.0.0.1:8080"
	req.Header.Set("Origin", "http://127.0.0.1:8080")
	resp, body := f.do(t, req)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("status = %d, want %d\n%s", resp.StatusCode, http.StatusSeeOther, body)
	}
	sessionCookie(t, resp)

	req = postForm("/login", url.Values{"token": {viewerSecret}}, nil)
	req.Host = "127.0.0.1:8080"
	req.Header.Set("Origin", "http://127.0.0.1:9090")
	if resp, _ := f.do(t, req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("other port: status = %d, want %d", resp.StatusCode, http.StatusForbidden)
	}
}

// A token in the query string lands in proxies' access logs; login reads
// it from the posted form only.
func TestLogin_TokenInQueryStringIsIgnored(t *testing.T) {
	f := newFixture(t)
	resp, _ := f.do(t, postForm("/login?token="+url.QueryEscape(operatorSecret), url.Values{}, nil))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d, want %d", resp.StatusCode, http.StatusUnauthorized)
	}
	if len(resp.Cookies()) != 0 {
		t.Errorf("login from the query string set cookies %v", resp.Header.Values("Set-Cookie"))
	}
}

func TestLogin_SuccessesArePerTokenLimitedAndAudited(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.LoginSuccesses = auth.NewLimiter(3, time.Minute, 100, func() time.Time { return testNow })
	})
	for i := 1; i <= 3; i++ {
		if resp, body := f.do(t, postForm("/login", url.Values{"token": {operatorSecret}}, nil)); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login %d: status = %d, want %d\n%s", i, resp.StatusCode, http.StatusSeeOther, body)
		}
	}
	resp, body := f.do(t, postForm("/login", url.Values{"token": {operatorSecret}}, nil))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("login 4: status = %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if len(resp.Cookies()) != 0 {
		t.Errorf("refused login set cookies %v", resp.Header.Values("Set-Cookie"))
	}
	one(t, tokenize(t, body), "p", "error")
	// Another token is not held back by the first one's logins.
	if resp, _ := f.do(t, postForm("/login", url.Values{"token": {viewerSecret}}, nil)); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("viewer login: status = %d, want %d", resp.StatusCode, http.StatusSeeOther)
	}

	var got []string
	for _, e := range f.ctl.recordedAudit() {
		got = append(got, e.Actor+" "+e.Action+" "+e.Result)
	}
	want := []string{"ops login ok", "ops login ok", "ops login ok", "ops login rate_limited", "view login ok"}
	if !slices.Equal(got, want) {
		t.Errorf("audit entries = %q, want %q", got, want)
	}
}

// Logout ends the caller's session and no other: not another browser of
// the same token, and not another token's.
func TestLogout_EndsOnlyTheCallersSession(t *testing.T) {
	f := newFixture(t)
	mine, sibling := f.session(auth.RoleOperator), f.session(auth.RoleOperator)
	other := f.session(auth.RoleViewer)

	resp, _ := f.do(t, postForm("/logout", url.Values{auth.CSRFField: {mine.CSRF}}, &mine))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: status = %d, want %d", resp.StatusCode, http.StatusSeeOther)
	}
	f.page(t, "/", &sibling, http.StatusOK)
	f.page(t, "/", &other, http.StatusOK)
	if resp, _ := f.do(t, getReq("/", &mine)); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the logged-out session still opens the page: %d", resp.StatusCode)
	}
	rec := f.ctl.recordedAudit()
	if len(rec) != 1 || rec[0].Action != "logout" || rec[0].Actor != "ops" || rec[0].Result != "ok" {
		t.Errorf("audit entries = %+v, want one logout by ops", rec)
	}
}

// The page and the API compare Origin with the same host: the request's
// own Host. An attacker's page cannot move that host to its own origin with
// X-Forwarded-Host; a proxy that passes Host through keeps logins working.
func TestLogin_OriginIsJudgedByHostNotXForwardedHost(t *testing.T) {
	tests := []struct {
		name, host, forwardedHost, origin string
		want                              int
	}{
		{"forged X-Forwarded-Host matching a foreign Origin", "deployd.example", "evil.example", "https://evil.example", http.StatusForbidden},
		{"X-Forwarded-Host of another host with our own Origin", "deployd.example", "other.example", "http://deployd.example", http.StatusSeeOther},
		{"no X-Forwarded-Host", "deployd.example", "", "http://deployd.example", http.StatusSeeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			req := postForm("/login", url.Values{"token": {viewerSecret}}, nil)
			req.Host = tt.host
			req.Header.Set("Origin", tt.origin)
			if tt.forwardedHost != "" {
				req.Header.Set("X-Forwarded-Host", tt.forwardedHost)
			}
			resp, body := f.do(t, req)
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d\n%s", resp.StatusCode, tt.want, body)
			}
		})
	}
}

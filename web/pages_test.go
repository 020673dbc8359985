package web

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
)

func TestDashboard_FollowsTheDOMContract(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleViewer)
	toks := tokenize(t, f.page(t, "/", &s, http.StatusOK))

	var csrf, after string
	for _, i := range elements(toks, "meta") {
		switch toks[i].attrs["name"] {
		case "csrf-token":
			csrf = toks[i].attrs["content"]
		case "events-after":
			after = toks[i].attrs["content"]
		}
	}
	if csrf != s.CSRF {
		t.Errorf("meta csrf-token = %q, want the session's", csrf)
	}
	// The script's event stream starts where the page's data was read.
	if want := fakeFeedPosition.String(); after != want {
		t.Errorf("meta events-after = %q, want %q", after, want)
	}
	if got := one(t, toks, "body").attrs["data-role"]; got != "viewer" {
		t.Errorf("body data-role = %q, want viewer", got)
	}

	sections := elements(toks, "section", "service")
	if len(sections) != 2 {
		t.Fatalf("service sections = %d, want 2", len(sections))
	}
	web := toks[sections[0]]
	if web.attrs["id"] != "service-web" || web.attrs["data-service"] != "web" {
		t.Errorf("first card = %v, want id service-web, data-service web", web.attrs)
	}
	card := cardTokens(t, toks, "web")

	badge := one(t, card, "", "active-color")
	if badge.attrs["data-color"] != "green" {
		t.Errorf(".active-color data-color = %q, want green", badge.attrs["data-color"])
	}
	checks := []struct {
		class, want string
	}{
		{"active-color", "GREEN"},
		{"active-image", "app:v2"},
		{"active-commit", "0123456789ab"},
		{"active-by", "alice"},
		{"active-when", "12 min ago"},
		{"standby-color", "BLUE"},
		{"standby-image", "app:v1"},
		{"standby-state", "warm"},
	}
	for _, c := range checks {
		if got := oneText(t, card, "", c.class); got != c.want {
			t.Errorf(".%s = %q, want %q", c.class, got, c.want)
		}
	}
	commit := one(t, card, "a", "active-commit")
	if want := "https://git.example.com/acme/web/commit/0123456789abcdef0123"; commit.attrs["href"] != want {
		t.Errorf("commit href = %q, want %q", commit.attrs["href"], want)
	}
	when := one(t, card, "time", "active-when")
	if when.attrs["datetime"] != "2025-05-01T11:48:00Z" || when.attrs["title"] == "" {
		t.Errorf("active-when = %v, want datetime 2025-05-01T11:48:00Z and a title", when.attrs)
	}

	tables := elements(card, "table", "containers")
	if len(tables) != 2 || card[tables[0]].attrs["data-color"] != "blue" || card[tables[1]].attrs["data-color"] != "green" {
		t.Fatalf("container tables = %d, want blue and green", len(tables))
	}
	blue := innerText(card, tables[0])
	for _, want := range []string{"web-blue-1", "running", "healthy", "3 h 0 min"} {
		if !strings.Contains(blue, want) {
			t.Errorf("blue containers table %q lacks %q", blue, want)
		}
	}

	// The running deploy of api is live on its card.
	api := cardTokens(t, toks, "api")
	live := one(t, api, "div", "deployment-live")
	if live.attrs["data-deployment"] != "dep-run" {
		t.Errorf("deployment-live data-deployment = %q, want dep-run", live.attrs["data-deployment"])
	}
	one(t, api, "ol", "steps")
	one(t, api, "pre", "log")
	steps := elements(api, "li", "step")
	if len(steps) != 2 {
		t.Fatalf("steps = %d, want 2", len(steps))
	}
	if got := api[steps[0]].attrs; got["data-step"] != "pull" || got["data-status"] != "succeeded" {
		t.Errorf("first step = %v, want pull succeeded", got)
	}
	if got := strings.Join(strings.Fields(innerText(api, steps[0])), " "); got != "pull succeeded 1.2 s" {
		t.Errorf("first step text = %q, want %q", got, "pull succeeded 1.2 s")
	}
	if got := api[steps[1]].attrs; got["data-step"] != "start" || got["data-status"] != "running" {
		t.Errorf("second step = %v, want start running", got)
	}
	if got := oneText(t, api, "", "standby-state"); got != "none" {
		t.Errorf("api standby-state = %q, want none", got)
	}
	if got := oneText(t, api, "", "active-commit"); got != "—" {
		t.Errorf("api commit without an active deployment = %q, want —", got)
	}

	rows := elements(toks, "tr", "deployment")
	if len(rows) != 3 {
		t.Fatalf("history rows = %d, want 3", len(rows))
	}
	var history, audit bool
	for _, i := range elements(toks, "table") {
		history = history || toks[i].attrs["id"] == "history"
		audit = audit || toks[i].attrs["id"] == "audit"
	}
	if !history || !audit {
		t.Errorf("table#history %v, table#audit %v, want both", history, audit)
	}
	failRow := rowTokens(t, toks, "dep-fail")
	if got := oneText(t, failRow, "", "status"); got != "failed" {
		t.Errorf("failed row .status = %q, want failed", got)
	}
	if got := one(t, failRow, "a", "details").attrs["href"]; got != "/deployments/dep-fail" {
		t.Errorf("details link = %q, want /deployments/dep-fail", got)
	}
	if got := oneText(t, failRow, "", "duration"); got != "1 min 2 s" {
		t.Errorf("failed row duration = %q, want 1 min 2 s", got)
	}

	flash := false
	for _, i := range elements(toks, "p") {
		a := toks[i].attrs
		flash = flash || (a["id"] == "flash" && a["role"] == "status" && a["aria-live"] == "polite")
	}
	if !flash {
		t.Error(`no <p id="flash" role="status" aria-live="polite">`)
	}
	for _, id := range []string{"confirm-dialog", "confirm-message", "confirm-yes", "confirm-no", "logout-form"} {
		if !hasID(toks, id) {
			t.Errorf("no element #%s", id)
		}
	}
}

func hasID(toks []token, id string) bool {
	for _, tok := range toks {
		if tok.kind == tokStart && tok.attrs["id"] == id {
			return true
		}
	}
	return false
}

// subtree returns the tokens of the element starting at toks[i].
func subtree(toks []token, i int) []token {
	depth := 0
	for j := i + 1; j < len(toks); j++ {
		switch toks[j].kind {
		case tokStart:
			if !voidElements[toks[j].name] {
				depth++
			}
		case tokEnd:
			if depth == 0 {
				return toks[i : j+1]
			}
			depth--
		}
	}
	return toks[i:]
}

func cardTokens(t *testing.T, toks []token, service string) []token {
	t.Helper()
	for _, i := range elements(toks, "section", "service") {
		if toks[i].attrs["data-service"] == service {
			return subtree(toks, i)
		}
	}
	t.Fatalf("no card for %s", service)
	return nil
}

func rowTokens(t *testing.T, toks []token, id string) []token {
	t.Helper()
	for _, i := range elements(toks, "tr", "deployment") {
		if toks[i].attrs["data-id"] == id {
			return subtree(toks, i)
		}
	}
	t.Fatalf("no history row for %s", id)
	return nil
}

func TestDashboard_MissingValuesAreMutedDashesAndHealthIsSpelledOut(t *testing.T) {
	f := newFixture(t)
	svc := &f.ctl.services[0]
	svc.ActiveDeployment = nil
	svc.StandbyImage = ""
	svc.Colors[controller.Green] = controller.ColorView{Image: "app:v2", Containers: []controller.Container{
		{Name: "web-green-1", State: "running", Health: "healthy", StartedAt: testNow.Add(-time.Minute)},
		{Name: "web-green-2", State: "running", Health: "unhealthy", StartedAt: testNow.Add(-time.Minute)},
		{Name: "web-green-3", State: "running", Health: "", StartedAt: testNow.Add(-time.Minute)},
		{Name: "web-green-4", State: "exited", Health: ""},
	}}
	s := f.session(auth.RoleViewer)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")

	for _, class := range []string{"active-commit", "active-by", "active-when", "standby-image"} {
		idx := elements(card, "", class)
		if len(idx) != 1 {
			t.Fatalf(".%s elements = %d, want 1", class, len(idx))
		}
		if got := strings.TrimSpace(innerText(card, idx[0])); got != "—" {
			t.Errorf(".%s = %q, want —", class, got)
		}
		if len(elements(subtree(card, idx[0]), "", "missing")) != 1 {
			t.Errorf(".%s is not marked .missing (muted)", class)
		}
	}

	rows := elements(card, "tr", "container")
	tests := []struct {
		name, health, uptime string
		muted                bool
	}{
		{"web-green-1", "healthy", "1 min", false},
		{"web-green-2", "unhealthy", "1 min", false},
		{"web-green-3", "—", "1 min", true},
		{"web-green-4", "—", "—", true},
	}
	if len(rows) != 1+len(tests) { // web-blue-1 comes first
		t.Fatalf("container rows = %d, want %d", len(rows), 1+len(tests))
	}
	for i, tt := range tests {
		row := subtree(card, rows[i+1])
		if got := oneText(t, row, "td", "c-name"); got != tt.name {
			t.Fatalf("row %d name = %q, want %q", i+1, got, tt.name)
		}
		health := elements(row, "td", "c-health")
		if got := strings.TrimSpace(innerText(row, health[0])); got != tt.health {
			t.Errorf("%s health = %q, want %q", tt.name, got, tt.health)
		}
		if got := row[health[0]].attrs["data-health"]; got != strings.Trim(tt.health, "—") {
			t.Errorf("%s data-health = %q, want %q (the CSS colors healthy and unhealthy by it)", tt.name, got, strings.Trim(tt.health, "—"))
		}
		if muted := len(elements(subtree(row, health[0]), "span", "missing")) == 1; muted != tt.muted {
			t.Errorf("%s health muted = %v, want %v", tt.name, muted, tt.muted)
		}
		if got := strings.TrimSpace(oneText(t, row, "td", "c-uptime")); got != tt.uptime {
			t.Errorf("%s uptime = %q, want %q", tt.name, got, tt.uptime)
		}
	}
}

func TestDashboard_ViewerSeesNoActionButtons(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleViewer)
	toks := tokenize(t, f.page(t, "/", &s, http.StatusOK))
	for _, cls := range []string{"rollback", "cancel", "redeploy"} {
		if n := len(elements(toks, "button", cls)); n != 0 {
			t.Errorf("viewer sees %d button.%s, want 0", n, cls)
		}
	}
}

func TestDashboard_ButtonsFollowRoles(t *testing.T) {
	tests := []struct {
		role                       auth.Role
		rollback, cancel, redeploy int
	}{
		{auth.RoleViewer, 0, 0, 0},
		// History holds two finished deployments and one running one.
		{auth.RoleDeployer, 0, 0, 2},
		// api has no standby: its rollback button is there, disabled.
		{auth.RoleOperator, 2, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.role.String(), func(t *testing.T) {
			f := newFixture(t)
			s := f.session(tt.role)
			toks := tokenize(t, f.page(t, "/", &s, http.StatusOK))
			got := []int{len(elements(toks, "button", "rollback")), len(elements(toks, "button", "cancel")), len(elements(toks, "button", "redeploy"))}
			want := []int{tt.rollback, tt.cancel, tt.redeploy}
			for i, cls := range []string{"rollback", "cancel", "redeploy"} {
				if got[i] != want[i] {
					t.Errorf("button.%s = %d, want %d", cls, got[i], want[i])
				}
			}
		})
	}
}

func TestDashboard_OperatorRollbackButtonSaysExactlyWhatHappens(t *testing.T) {
	tests := []struct {
		name string
		warm bool
		want string
	}{
		{"warm standby", true, "Switch web from green (app:v2) back to blue (app:v1)? Blue is warm: traffic moves in about a second."},
		{"cold standby", false, "Switch web from green (app:v2) back to blue (app:v1)? Blue is cold: its containers are started and checked first, which takes longer."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.ctl.services[0].StandbyWarm = tt.warm
			s := f.session(auth.RoleOperator)
			toks := tokenize(t, f.page(t, "/", &s, http.StatusOK))

			btn := one(t, cardTokens(t, toks, "web"), "button", "rollback")
			if btn.attrs["data-service"] != "web" {
				t.Errorf("rollback data-service = %q, want web", btn.attrs["data-service"])
			}
			if got := btn.attrs["data-confirm"]; got != tt.want {
				t.Errorf("data-confirm = %q\nwant          %q", got, tt.want)
			}
			// api has no standby: nothing to roll back to, so no dialog.
			if _, ok := one(t, cardTokens(t, toks, "api"), "button", "rollback").attrs["data-confirm"]; ok {
				t.Errorf("api (no standby) rollback button has a confirmation")
			}
			cancel := one(t, cardTokens(t, toks, "api"), "button", "cancel")
			if cancel.attrs["data-deployment"] != "dep-run" || cancel.attrs["data-confirm"] == "" {
				t.Errorf("cancel button = %v, want data-deployment dep-run and a confirm text", cancel.attrs)
			}
			redeploy := one(t, rowTokens(t, toks, "dep-2"), "button", "redeploy")
			if redeploy.attrs["data-service"] != "web" || redeploy.attrs["data-image"] != "app:v2" || redeploy.attrs["data-confirm"] == "" {
				t.Errorf("redeploy button = %v", redeploy.attrs)
			}
		})
	}
}

// hostileFixture puts script-shaped values everywhere a deploy request,
// webhook or config can put text.
func hostileFixture(f *fixture) {
	const (
		actor  = "<script>alert(1)</script>"
		commit = "javascript:alert(1)"
		image  = `x"><img src=x onerror=alert(1)>`
		errMsg = "boom</pre><script>alert(2)</script>"
	)
	svc := &f.ctl.services[0]
	svc.ActiveImage = image
	svc.StandbyImage = image
	svc.ActiveDeployment.Trigger = controller.Trigger{Source: "api", Actor: actor, Commit: commit}
	svc.Colors[controller.Green] = controller.ColorView{Image: image, Containers: []controller.Container{
		{Name: actor, Node: image, State: image, Health: errMsg, StartedAt: testNow.Add(-time.Minute)},
	}}
	// A second node, so the per-node summary shows the hostile one too.
	svc.Colors[controller.Blue].Containers[0].Node = actor
	f.ctl.services[1].RepositoryURL = "javascript:alert(1)//"
	f.ctl.services[1].ActiveDeployment = &controller.Deployment{Trigger: controller.Trigger{Actor: actor, Commit: commit}, CreatedAt: testNow}
	run := f.ctl.services[1].Deployment
	run.Image = image
	run.Steps = append(run.Steps, controller.Step{Name: actor, Status: controller.StepFailed, StartedAt: testNow, Message: errMsg})
	for i := range f.ctl.deployments {
		d := &f.ctl.deployments[i]
		d.Image = image
		d.Trigger.Actor = actor
		d.Trigger.Commit = commit
		d.Trigger.Ref = errMsg
		d.Error = errMsg
		for j := range d.Steps {
			d.Steps[j].Output = errMsg + "\n" + actor
			d.Steps[j].Message = errMsg
		}
	}
	f.ctl.audit = append(f.ctl.audit, controller.AuditEntry{ID: "a2", Time: testNow, Actor: actor, Action: image, Target: errMsg, Address: actor, Result: errMsg})
}

func TestPages_HostileValuesAreEscapedAndInert(t *testing.T) {
	f := newFixture(t)
	hostileFixture(f)
	s := f.session(auth.RoleOperator)
	for _, path := range []string{"/", "/deployments/dep-fail", "/deployments/dep-run", "/partials/services/web", "/partials/services/api", "/partials/history"} {
		t.Run(path, func(t *testing.T) {
			body := f.page(t, path, &s, http.StatusOK)
			assertInert(t, path, body)
			if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img") || strings.Contains(body, "</pre><script>") {
				t.Errorf("raw hostile markup in %s", path)
			}
		})
	}

	toks := tokenize(t, f.page(t, "/", &s, http.StatusOK))
	web := cardTokens(t, toks, "web")
	if got := oneText(t, web, "", "active-by"); got != "<script>alert(1)</script>" {
		t.Errorf("actor shown as %q, want the literal text", got)
	}
	if got := oneText(t, web, "", "active-image"); got != `x"><img src=x onerror=alert(1)>` {
		t.Errorf("image shown as %q, want the literal text", got)
	}
	// The commit link stays inside the repository however odd the commit.
	link := one(t, web, "a", "active-commit")
	if !strings.HasPrefix(link.attrs["href"], "https://git.example.com/acme/web/commit/") {
		t.Errorf("commit href = %q, want inside the repository", link.attrs["href"])
	}
	// A repository URL that is not http(s) is never linked.
	api := cardTokens(t, toks, "api")
	if n := len(elements(api, "a", "active-commit")); n != 0 {
		t.Errorf("api commit links = %d, want 0 for a javascript: repository URL", n)
	}
	if got := oneText(t, api, "", "active-commit"); got != "javascript:a" {
		t.Errorf("api commit text = %q, want the plain short form", got)
	}

	dtoks := tokenize(t, f.page(t, "/deployments/dep-fail", &s, http.StatusOK))
	if got := oneText(t, dtoks, "p", "deployment-error"); got != "boom</pre><script>alert(2)</script>" {
		t.Errorf(".deployment-error = %q, want the literal error text", got)
	}
}

func TestPages_NoInlineScriptStyleOrEventHandlers(t *testing.T) {
	f := newFixture(t)
	pages := []struct {
		path   string
		role   auth.Role
		status int
	}{
		{"/login", 0, http.StatusOK},
		{"/", auth.RoleOperator, http.StatusOK},
		{"/", auth.RoleViewer, http.StatusOK},
		{"/deployments/dep-fail", auth.RoleOperator, http.StatusOK},
		{"/deployments/dep-run", auth.RoleOperator, http.StatusOK},
		{"/deployments/dep-2", auth.RoleViewer, http.StatusOK},
		{"/deployments/nope", auth.RoleViewer, http.StatusNotFound},
		{"/partials/services/web", auth.RoleOperator, http.StatusOK},
		{"/partials/services/api", auth.RoleOperator, http.StatusOK},
		{"/partials/history", auth.RoleDeployer, http.StatusOK},
	}
	for _, p := range pages {
		var s *auth.Session
		if p.role != 0 {
			sess := f.session(p.role)
			s = &sess
		}
		body := f.page(t, p.path, s, p.status)
		assertInert(t, p.path, body)
		if strings.Contains(body, "style=") {
			t.Errorf("%s contains style=", p.path)
		}
	}
}

func TestPages_AreNotCached(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleViewer)
	for _, path := range []string{"/", "/login", "/deployments/dep-2", "/partials/history", "/partials/services/web"} {
		resp, _ := f.do(t, getReq(path, &s))
		if got := resp.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("GET %s: Cache-Control = %q, want no-store", path, got)
		}
	}
}

func TestPartials_ServiceRendersOneCard(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleOperator)
	body := f.page(t, "/partials/services/web", &s, http.StatusOK)
	if strings.Contains(body, "<html") || strings.Contains(body, "<body") {
		t.Error("partial holds a whole page")
	}
	toks := tokenize(t, body)
	var first token
	for _, tok := range toks {
		if tok.kind == tokStart {
			first = tok
			break
		}
	}
	if first.name != "section" || !first.hasClass("service") || first.attrs["id"] != "service-web" {
		t.Fatalf("partial starts with <%s %v>, want section.service#service-web", first.name, first.attrs)
	}
	if n := len(elements(toks, "section", "service")); n != 1 {
		t.Errorf("cards = %d, want 1", n)
	}
	one(t, toks, "button", "rollback")

	f.page(t, "/partials/services/nope", &s, http.StatusNotFound)
	f.page(t, "/partials/services/NOT..valid", &s, http.StatusNotFound)

	htoks := tokenize(t, f.page(t, "/partials/history", &s, http.StatusOK))
	if n := len(elements(htoks, "tr", "deployment")); n != 3 {
		t.Errorf("history partial rows = %d, want 3", n)
	}
}

func TestDeploymentPage_ShowsStepsErrorAndLog(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleViewer)
	toks := tokenize(t, f.page(t, "/deployments/dep-fail", &s, http.StatusOK))

	if got := oneText(t, toks, "p", "deployment-error"); got != "health check failed: 500 from /health" {
		t.Errorf(".deployment-error = %q", got)
	}
	steps := elements(toks, "li", "step")
	if len(steps) != 2 || toks[steps[1]].attrs["data-step"] != "health" || toks[steps[1]].attrs["data-status"] != "failed" {
		t.Fatalf("steps = %d, want pre_deploy and a failed health", len(steps))
	}
	log := oneText(t, toks, "pre", "log")
	for _, want := range []string{"[pre_deploy] migrated 3", "[health] failed: 500 from /health", "failed: health check failed: 500 from /health"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// A finished deployment is not streamed.
	if n := len(elements(toks, "", "deployment-live")); n != 0 {
		t.Errorf("finished deployment has %d .deployment-live, want 0", n)
	}

	// A running one is, and its log comes from the stream only.
	rtoks := tokenize(t, f.page(t, "/deployments/dep-run", &s, http.StatusOK))
	live := one(t, rtoks, "div", "deployment-live")
	if live.attrs["data-deployment"] != "dep-run" {
		t.Errorf("live data-deployment = %q, want dep-run", live.attrs["data-deployment"])
	}
	if got := oneText(t, rtoks, "pre", "log"); got != "" {
		t.Errorf("running deployment's rendered log = %q, want empty", got)
	}
	if n := len(elements(rtoks, "button", "cancel")); n != 0 {
		t.Errorf("viewer sees %d cancel buttons", n)
	}
	if n := len(elements(rtoks, "p", "deployment-error")); n != 0 {
		t.Errorf("running deployment shows %d errors", n)
	}

	body := f.page(t, "/deployments/nope", &s, http.StatusNotFound)
	if !strings.Contains(body, `no deployment &#34;nope&#34;`) {
		t.Errorf("404 page lacks the message:\n%s", body)
	}
}

func TestStatic_ServesEmbeddedAssetsWithTypeAndShortMaxAge(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		path, ctype string
	}{
		{"/static/app.js", "text/javascript"},
		{"/static/app.css", "text/css"},
		{"/static/favicon.svg", "image/svg+xml"},
	}
	for _, tt := range tests {
		resp, body := f.do(t, getReq(tt.path, nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status = %d, want 200", tt.path, resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, tt.ctype) {
			t.Errorf("GET %s: Content-Type = %q, want %s", tt.path, got, tt.ctype)
		}
		if got := resp.Header.Get("Cache-Control"); got != "public, max-age=300" {
			t.Errorf("GET %s: Cache-Control = %q", tt.path, got)
		}
		if len(body) < 50 {
			t.Errorf("GET %s: body of %d bytes", tt.path, len(body))
		}
	}
	for _, path := range []string{"/static/nope.js", "/static/", "/static/../web.go", "/static/%2e%2e/web.go"} {
		resp, _ := f.do(t, getReq(path, nil))
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status = %d, want 404", path, resp.StatusCode)
		}
	}
}

// A deploy body's claim about who asked is never shown as the actor: the
// token's name is, and the claim sits beside it, marked as claimed, on the
// card, the history and the deployment's page.
func TestPages_ClaimIsShownBesideTheTokenNameAndMarked(t *testing.T) {
	f := newFixture(t)
	claimed := controller.Trigger{Source: "api", Actor: "ci", OnBehalfOf: "admin (alice)", Commit: "0123456789abcdef0123"}
	f.ctl.services[0].ActiveDeployment.Trigger = claimed
	for i := range f.ctl.deployments {
		if f.ctl.deployments[i].ID == "dep-2" {
			f.ctl.deployments[i].Trigger = claimed
		}
	}
	s := f.session(auth.RoleViewer)
	const wantClaim = "on behalf of admin (alice) (claimed)"

	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
	if got := oneText(t, card, "", "active-by"); got != "ci "+wantClaim {
		t.Errorf("card's deployed-by = %q, want %q", got, "ci "+wantClaim)
	}
	if got := oneText(t, card, "span", "claimed"); got != wantClaim {
		t.Errorf("card's claim = %q, want %q", got, wantClaim)
	}
	for _, path := range []string{"/deployments/dep-2", "/partials/history"} {
		toks := tokenize(t, f.page(t, path, &s, http.StatusOK))
		var found bool
		for _, i := range elements(toks, "", "actor") {
			got := strings.TrimSpace(innerText(toks, i))
			if strings.HasPrefix(got, "ci ") && strings.HasSuffix(got, wantClaim) {
				found = true
			}
			if strings.HasPrefix(got, "admin") {
				t.Errorf("%s shows the claim %q as the actor", path, got)
			}
		}
		if !found {
			t.Errorf("%s: no actor cell reads %q", path, "ci "+wantClaim)
		}
	}
}

// Mid-deploy the standby's color also holds the deploy's new containers:
// they get rows of their own that say so, and the standby's rows stay the
// standby's.
func TestDashboard_NewContainersBesideTheStandbyAreMarkedAsTheDeploys(t *testing.T) {
	f := newFixture(t)
	svc := &f.ctl.services[0]
	running := fixtureRunning()
	running.Service, running.Image = "web", "app:v3"
	svc.Deployment = &running
	blue := svc.Colors[controller.Blue]
	blue.Others = []controller.Container{{Name: "web-blue-9f3a1c-1", Color: controller.Blue, State: "running", Deployment: running.ID, StartedAt: testNow.Add(-10 * time.Second)}}
	svc.Colors[controller.Blue] = blue
	s := f.session(auth.RoleViewer)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")

	others := elements(card, "tr", "other")
	if len(others) != 1 {
		t.Fatalf("rows of other containers = %d, want 1", len(others))
	}
	row := subtree(card, others[0])
	if got, want := oneText(t, row, "td", "c-name"), "web-blue-9f3a1c-1 (new: deploy of app:v3, not the standby)"; got != want {
		t.Errorf("name cell = %q, want %q", got, want)
	}
	if n := len(elements(card, "tr", "container")); n != 3 {
		t.Errorf("container rows = %d, want 3 (green, the blue standby, the new one)", n)
	}
	// The standby is still the one that was there, and it says what runs
	// beside it.
	if got, want := strings.Join(strings.Fields(oneText(t, card, "dd", "standby")), " "), "BLUE app:v1 warm (beside it: 1 new container of the deploy of app:v3, not the standby)"; got != want {
		t.Errorf("standby = %q, want %q", got, want)
	}
}

// A failed deploy stays on its card, with its reason, time and actor,
// for as long as the controller reports it.
func TestDashboard_LastFailureStaysOnTheCard(t *testing.T) {
	f := newFixture(t)
	failed := fixtureDeployments()[1]
	f.ctl.services[0].LastFailure = &failed
	s := f.session(auth.RoleViewer)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")

	got := oneText(t, card, "p", "last-failure")
	want := "last deploy failed: health check failed: 500 from /health, 4 min ago · 11:56:02 UTC, by bob · details of app:v3"
	if got != want {
		t.Errorf(".last-failure = %q, want %q", got, want)
	}
	if at := one(t, card, "time", "failure-when").attrs["datetime"]; at != rfc3339(*failed.FinishedAt) {
		t.Errorf("failure time = %q, want the deploy's end %s", at, rfc3339(*failed.FinishedAt))
	}

	f.ctl.services[0].LastFailure = nil
	card = cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
	if n := len(elements(card, "p", "last-failure")); n != 0 {
		t.Errorf("card without a failure shows %d .last-failure", n)
	}
}

// While a deploy runs, a rollback would be refused with 409: the button is
// disabled and says why, and a cold standby's promise carries the time its
// own deploy took to start and pass health.
func TestDashboard_RollbackIsDisabledWhileBusyAndPromisesTheRealState(t *testing.T) {
	f := newFixture(t)
	svc := &f.ctl.services[0]
	running := fixtureRunning()
	running.Service, running.Image = "web", "app:v3"
	running.CreatedAt = testNow.Add(-40 * time.Second)
	svc.Deployment = &running
	s := f.session(auth.RoleOperator)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")

	btn := one(t, card, "button", "rollback")
	if _, disabled := btn.attrs["disabled"]; !disabled {
		t.Errorf("rollback button during a deploy = %v, want disabled", btn.attrs)
	}
	if got, want := btn.attrs["aria-describedby"], "rollback-busy-web"; got != want {
		t.Errorf("aria-describedby = %q, want %q", got, want)
	}
	if got, want := oneText(t, card, "p", "rollback-busy"), "busy: deploy of app:v3 running, started 40 s ago by ci"; got != want {
		t.Errorf(".rollback-busy = %q, want %q", got, want)
	}

	// Idle, cold, with the standby's deploy on record: 2 s start + 9.5 s health.
	svc.Deployment = nil
	svc.StandbyWarm = false
	svc.StandbyDeployment = &controller.Deployment{ID: "dep-1", Service: "web", Kind: controller.KindDeploy, Image: "app:v1", Steps: []controller.Step{
		{Name: controller.StepPull, StartedAt: testNow.Add(-time.Hour), FinishedAt: ptime(testNow.Add(-time.Hour + 30*time.Second))},
		{Name: controller.StepStart, StartedAt: testNow.Add(-time.Hour), FinishedAt: ptime(testNow.Add(-time.Hour + 2*time.Second))},
		{Name: controller.StepHealth, StartedAt: testNow.Add(-time.Hour), FinishedAt: ptime(testNow.Add(-time.Hour + 9500*time.Millisecond))},
	}}
	card = cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
	btn = one(t, card, "button", "rollback")
	if _, disabled := btn.attrs["disabled"]; disabled {
		t.Errorf("rollback button of an idle service is disabled")
	}
	if n := len(elements(card, "p", "rollback-busy")); n != 0 {
		t.Errorf("idle card shows %d .rollback-busy", n)
	}
	want := "Switch web from green (app:v2) back to blue (app:v1)? Blue is cold: its containers are started and checked first, about 11.5 s (as when it was deployed)."
	if got := btn.attrs["data-confirm"]; got != want {
		t.Errorf("data-confirm = %q\nwant          %q", got, want)
	}
}

// Each card states in one sentence what serves, since when and who made
// it so; a rollback names who rolled back.
func TestDashboard_CardSaysItsStateInOneSentence(t *testing.T) {
	deploy := controller.Deployment{ID: "dep-2", Service: "web", Kind: controller.KindDeploy, Image: "app:v2",
		Status: controller.StatusSucceeded, Trigger: controller.Trigger{Actor: "alice"},
		CreatedAt: testNow.Add(-12 * time.Minute), FinishedAt: ptime(testNow.Add(-11 * time.Minute))}
	rollback := controller.Deployment{ID: "rb-1", Service: "web", Kind: controller.KindRollback, Image: "app:v2",
		Status: controller.StatusSucceeded, Trigger: controller.Trigger{Actor: "oncall-admin"},
		CreatedAt: testNow.Add(-2 * time.Minute), FinishedAt: ptime(testNow.Add(-2 * time.Minute))}
	tests := []struct {
		name string
		last *controller.Deployment
		want string
	}{
		{"deployed", &deploy, "LIVE green · app:v2 @0123456789ab · since " + clockUTC(*deploy.FinishedAt) + " · deployed by alice"},
		{"rolled back", &rollback, "LIVE green · app:v2 @0123456789ab · since " + clockUTC(*rollback.FinishedAt) + " · rolled back by oncall-admin"},
		{"no record", nil, "LIVE green · app:v2 @0123456789ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.ctl.services[0].LastSwitch = tt.last
			s := f.session(auth.RoleViewer)
			card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
			if got := oneText(t, card, "p", "state-sentence"); got != tt.want {
				t.Errorf(".state-sentence = %q\nwant            %q", got, tt.want)
			}
		})
	}
}

// The Rollback button names the image and commit it goes back to, and the
// standby links to the changes between its commit and the active one.
func TestDashboard_RollbackLabelNamesImageAndCommitWithACompareLink(t *testing.T) {
	f := newFixture(t)
	f.ctl.services[0].StandbyDeployment = &controller.Deployment{ID: "dep-1", Service: "web", Kind: controller.KindDeploy, Image: "app:v1",
		Trigger: controller.Trigger{Commit: "3f2c1e9a7b5d4c3b2a1f"}}
	s := f.session(auth.RoleOperator)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")

	if got, want := oneText(t, card, "button", "rollback"), "Roll back to BLUE: app:v1 @3f2c1e9a7b5d"; got != want {
		t.Errorf("rollback label = %q, want %q", got, want)
	}
	link := one(t, card, "a", "compare")
	if got, want := link.attrs["href"], "https://git.example.com/acme/web/compare/3f2c1e9a7b5d4c3b2a1f...0123456789abcdef0123"; got != want {
		t.Errorf("compare href = %q, want %q", got, want)
	}

	// Without a repository there is nothing to link to; the label stays.
	f.ctl.services[0].RepositoryURL = ""
	card = cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
	if n := len(elements(card, "a", "compare")); n != 0 {
		t.Errorf("compare links without a repository = %d, want 0", n)
	}
	if got, want := oneText(t, card, "button", "rollback"), "Roll back to BLUE: app:v1 @3f2c1e9a7b5d"; got != want {
		t.Errorf("rollback label = %q, want %q", got, want)
	}
}

// A failed deploy's row offers to retry it, and its details page does not
// draw traffic moving that never moved.
func TestFailedDeploy_RowOffersRetryAndDetailsSayTrafficStayed(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleDeployer)
	toks := tokenize(t, f.page(t, "/", &s, http.StatusOK))
	for id, want := range map[string]string{"dep-fail": "Retry", "dep-2": "Redeploy"} {
		row := rowTokens(t, toks, id)
		if got := oneText(t, row, "button", "redeploy"); got != want {
			t.Errorf("%s button = %q, want %q", id, got, want)
		}
	}
	if got := one(t, rowTokens(t, toks, "dep-fail"), "button", "redeploy").attrs["data-confirm"]; !strings.HasPrefix(got, "Retry the failed deploy of app:v3 to web?") {
		t.Errorf("retry confirm = %q", got)
	}

	for id, want := range map[string]string{
		"dep-fail": "stayed on GREEN (BLUE was the target)",
		"dep-2":    "BLUE → GREEN",
		"dep-run":  "on BLUE; GREEN is the target, traffic moves once it is healthy",
	} {
		page := tokenize(t, f.page(t, "/deployments/"+id, &s, http.StatusOK))
		if got := oneText(t, page, "dd", "traffic"); got != want {
			t.Errorf("%s traffic = %q, want %q", id, got, want)
		}
	}
}

// The rollback button promises what the standby's real state allows: a
// warm one a switch in about a second, a cold one a start with the time
// it took before, and none no dialog at all but a disabled button saying
// why.
func TestDashboard_RollbackFollowsTheStandbyState(t *testing.T) {
	coldDeploy := &controller.Deployment{ID: "dep-1", Service: "web", Kind: controller.KindDeploy, Image: "app:v1", Steps: []controller.Step{
		{Name: controller.StepStart, StartedAt: testNow.Add(-time.Hour), FinishedAt: ptime(testNow.Add(-time.Hour + 3*time.Second))},
		{Name: controller.StepHealth, StartedAt: testNow.Add(-time.Hour), FinishedAt: ptime(testNow.Add(-time.Hour + 4*time.Second))},
	}}
	tests := []struct {
		name    string
		edit    func(*controller.ServiceView)
		state   string
		confirm string // "" when the button must be disabled without a dialog
		reason  string
	}{
		{"warm", func(v *controller.ServiceView) { v.StandbyWarm = true }, "warm",
			"Switch web from green (app:v2) back to blue (app:v1)? Blue is warm: traffic moves in about a second.", ""},
		{"cold with an estimate", func(v *controller.ServiceView) { v.StandbyWarm = false; v.StandbyDeployment = coldDeploy }, "cold",
			"Switch web from green (app:v2) back to blue (app:v1)? Blue is cold: its containers are started and checked first, about 7.0 s (as when it was deployed).", ""},
		{"none", func(v *controller.ServiceView) {
			v.StandbyColor, v.StandbyImage, v.StandbyWarm = "", "", false
			delete(v.Colors, controller.Blue)
		}, "none", "", "no standby to roll back to: GREEN (app:v2) is the only color deployed so far"},
		{"none, nothing deployed", func(v *controller.ServiceView) {
			v.StandbyColor, v.StandbyImage, v.ActiveColor, v.ActiveImage, v.ActiveDeployment = "", "", "", "", nil
			v.Colors = nil
		}, "none", "", "no standby to roll back to: nothing is deployed yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tt.edit(&f.ctl.services[0])
			s := f.session(auth.RoleOperator)
			card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
			if got := oneText(t, card, "", "standby-state"); got != tt.state {
				t.Errorf(".standby-state = %q, want %q", got, tt.state)
			}
			btn := one(t, card, "button", "rollback")
			_, disabled := btn.attrs["disabled"]
			if tt.confirm != "" {
				if disabled || btn.attrs["data-confirm"] != tt.confirm {
					t.Errorf("rollback disabled=%v data-confirm = %q\nwant enabled with %q", disabled, btn.attrs["data-confirm"], tt.confirm)
				}
				if n := len(elements(card, "p", "rollback-none")); n != 0 {
					t.Errorf("%s standby shows %d .rollback-none", tt.state, n)
				}
				return
			}
			if !disabled {
				t.Errorf("rollback without a standby is enabled")
			}
			if c, ok := btn.attrs["data-confirm"]; ok {
				t.Errorf("rollback without a standby has data-confirm %q, want none (no dialog)", c)
			}
			if got, want := btn.attrs["aria-describedby"], "rollback-none-web"; got != want {
				t.Errorf("aria-describedby = %q, want %q", got, want)
			}
			if got := oneText(t, card, "p", "rollback-none"); got != tt.reason {
				t.Errorf(".rollback-none = %q, want %q", got, tt.reason)
			}
		})
	}
}

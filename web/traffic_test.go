package web

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
)

// withTraffic puts web in switch mode with t as its traffic.
func withTraffic(f *fixture, t controller.TrafficStatus) {
	f.ctl.mu.Lock()
	defer f.ctl.mu.Unlock()
	f.ctl.services[0].Traffic = &controller.TrafficView{Mode: controller.TrafficModeSwitch, TrafficStatus: t}
}

var pausedAndInMaintenance = controller.TrafficStatus{
	Paused: true, PausedSince: time.Date(2025, 5, 1, 17, 36, 0, 0, time.UTC), Held: 3, MaxHeld: 1000, MaxHold: 30 * time.Second,
	Maintenance: true, MaintenanceSince: testNow, Message: "Back at 18:00 UTC",
}

func TestCard_BannersSayPausedAndMaintenance(t *testing.T) {
	f := newFixture(t)
	withTraffic(f, pausedAndInMaintenance)
	s := f.session(auth.RoleViewer)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")

	var paused, maint string
	for _, i := range elements(card, "p", "traffic-banner") {
		text := strings.Join(strings.Fields(innerText(card, i)), " ")
		switch card[i].attrs["data-state"] {
		case "paused":
			paused = text
		case "maintenance":
			maint = text
		}
	}
	if want := "PAUSED since 17:36 UTC, 3 requests held"; paused != want {
		t.Errorf("paused banner = %q, want %q", paused, want)
	}
	if want := "MAINTENANCE: Back at 18:00 UTC"; maint != want {
		t.Errorf("maintenance banner = %q, want %q", maint, want)
	}
	since := one(t, card, "time", "paused-since")
	if since.attrs["datetime"] != "2025-05-01T17:36:00Z" || since.attrs["title"] == "" {
		t.Errorf("paused-since = %v, want the exact time in datetime and title", since.attrs)
	}
	if n := len(elements(card, "button")); n != 0 {
		t.Errorf("a viewer sees %d buttons on the card, want none", n)
	}
}

func TestCard_TrafficButtonsForOperatorsOnly(t *testing.T) {
	tests := []struct {
		name    string
		role    auth.Role
		traffic controller.TrafficStatus
		want    []string // button classes, in order
	}{
		{"operator, flowing", auth.RoleOperator, controller.TrafficStatus{}, []string{"pause", "maintenance-on"}},
		{"operator, paused and in maintenance", auth.RoleOperator, pausedAndInMaintenance, []string{"resume", "maintenance-off"}},
		{"deployer", auth.RoleDeployer, pausedAndInMaintenance, nil},
		{"viewer", auth.RoleViewer, controller.TrafficStatus{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			withTraffic(f, tt.traffic)
			s := f.session(tt.role)
			card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
			var got []string
			for _, cls := range []string{"pause", "resume", "maintenance-on", "maintenance-off"} {
				for _, i := range elements(card, "button", cls) {
					got = append(got, cls)
					if card[i].attrs["data-service"] != "web" || card[i].attrs["data-confirm"] == "" {
						t.Errorf("button.%s = %v, want data-service web and a confirm text", cls, card[i].attrs)
					}
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("traffic buttons = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCard_ResumeConfirmCountsTheHeldRequests(t *testing.T) {
	f := newFixture(t)
	withTraffic(f, pausedAndInMaintenance)
	s := f.session(auth.RoleOperator)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
	want := "Resume web? Requests held now (3) and new ones go on to green at once."
	if got := one(t, card, "button", "resume").attrs["data-confirm"]; got != want {
		t.Errorf("resume data-confirm = %q\nwant                 %q", got, want)
	}
}

// In reload mode (no traffic view) there is nothing to pause.
func TestCard_ReloadModeHasNoBannerAndNoTrafficButtons(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleOperator)
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
	if n := len(elements(card, "p", "traffic-banner")); n != 0 {
		t.Errorf("banners = %d, want 0", n)
	}
	for _, cls := range []string{"pause", "resume", "maintenance-on", "maintenance-off"} {
		if n := len(elements(card, "button", cls)); n != 0 {
			t.Errorf("button.%s = %d, want 0", cls, n)
		}
	}
}

func TestCard_MaintenanceMessageStaysInert(t *testing.T) {
	f := newFixture(t)
	hostile := pausedAndInMaintenance
	hostile.Message = `<script>alert(1)</script><img src=x onerror=alert(2)> "quoted" & more`
	withTraffic(f, hostile)
	s := f.session(auth.RoleOperator)
	page := f.page(t, "/", &s, http.StatusOK)
	assertInert(t, "dashboard", page)
	card := cardTokens(t, tokenize(t, page), "web")
	if got := oneText(t, card, "span", "maintenance-message"); got != hostile.Message {
		t.Errorf("message = %q, want it shown as text %q", got, hostile.Message)
	}
	assertInert(t, "partial", f.page(t, "/partials/services/web", &s, http.StatusOK))
}

func TestCard_PartialCarriesTheBanner(t *testing.T) {
	f := newFixture(t)
	withTraffic(f, pausedAndInMaintenance)
	s := f.session(auth.RoleOperator)
	toks := tokenize(t, f.page(t, "/partials/services/web", &s, http.StatusOK))
	if n := len(elements(toks, "p", "traffic-banner")); n != 2 {
		t.Errorf("banners in the partial = %d, want 2", n)
	}
	one(t, toks, "button", "resume")
}

func TestLayout_ConfirmDialogHasAHiddenMessageField(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleOperator)
	toks := tokenize(t, f.page(t, "/", &s, http.StatusOK))
	var label, input bool
	for _, i := range elements(toks, "label") {
		if toks[i].attrs["id"] == "confirm-input-label" {
			_, hidden := toks[i].attrs["hidden"]
			label = hidden
		}
	}
	for _, i := range elements(toks, "input") {
		if toks[i].attrs["id"] == "confirm-input" && toks[i].attrs["maxlength"] == "1024" {
			input = true
		}
	}
	if !label || !input {
		t.Errorf("hidden label %v, input with maxlength 1024 %v; want both", label, input)
	}
}

package web

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/auth"
)

// Every relative time carries its exact UTC time as text beside it, and a
// slot the script fills with the reader's local time.
func TestPages_RelativeTimesShowTheirExactTime(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleOperator)
	for _, path := range []string{"/", "/deployments/dep-fail"} {
		toks := tokenize(t, f.page(t, path, &s, http.StatusOK))
		times := elements(toks, "time", "reltime")
		if len(times) == 0 {
			t.Fatalf("%s: no relative times", path)
		}
		exacts := elements(toks, "span", "exact-time")
		if len(exacts) != len(times) {
			t.Errorf("%s: %d relative times but %d exact ones", path, len(times), len(exacts))
		}
		for _, i := range elements(toks, "span", "local-time") {
			if _, err := time.Parse(time.RFC3339, toks[i].attrs["data-time"]); err != nil {
				t.Errorf("%s: local-time data-time = %q, want RFC 3339", path, toks[i].attrs["data-time"])
			}
		}
	}
	card := cardTokens(t, tokenize(t, f.page(t, "/", &s, http.StatusOK)), "web")
	if got, want := strings.TrimSpace(innerText(card, elements(card, "span", "exact-time")[0])), "· 11:48:00 UTC"; got != want {
		t.Errorf("active-when's exact time = %q, want %q", got, want)
	}
}

// History and audit cells name their column for the stacked phone layout.
func TestDashboard_TableCellsCarryTheirColumnLabel(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleOperator)
	toks := tokenize(t, f.page(t, "/", &s, http.StatusOK))
	row := rowTokens(t, toks, "dep-2")
	var labels []string
	for _, i := range elements(row, "td") {
		if l := row[i].attrs["data-label"]; l != "" {
			labels = append(labels, l)
		}
	}
	if got, want := strings.Join(labels, ","), "Service,Kind,Image,Status,Duration,Trigger,Actor,When"; got != want {
		t.Errorf("history cell labels = %s, want %s", got, want)
	}
	for _, i := range elements(toks, "tr", "audit-entry") {
		for _, j := range elements(subtree(toks, i), "td") {
			if subtree(toks, i)[j].attrs["data-label"] == "" {
				t.Errorf("audit cell without data-label: %v", subtree(toks, i)[j].attrs)
			}
		}
	}
}

// Buttons and links repeated on every row or card say which one they act
// on, and the running deployment's progress is a polite live region.
func TestDashboard_RepeatedControlsHaveNamesWithContext(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleOperator)
	toks := tokenize(t, f.page(t, "/", &s, http.StatusOK))
	want := map[string]string{
		"dep-fail details":  "Details of deploy app:v3 of web, started 11:55:00 UTC",
		"dep-fail redeploy": "Retry deploy app:v3 of web, started 11:55:00 UTC",
		"dep-2 redeploy":    "Redeploy app:v2 to web, as deployed 11:48:00 UTC",
	}
	for key, name := range want {
		id, cls, _ := strings.Cut(key, " ")
		if got := one(t, rowTokens(t, toks, id), "", cls).attrs["aria-label"]; got != name {
			t.Errorf("%s aria-label = %q, want %q", key, got, name)
		}
	}
	if got, want := one(t, cardTokens(t, toks, "web"), "button", "rollback").attrs["aria-label"], "Roll back web to BLUE: app:v1"; got != want {
		t.Errorf("rollback aria-label = %q, want %q", got, want)
	}
	api := cardTokens(t, toks, "api")
	if got, want := one(t, api, "button", "cancel").attrs["aria-label"], "Cancel deploy api:v8 of api"; got != want {
		t.Errorf("cancel aria-label = %q, want %q", got, want)
	}
	live := one(t, api, "div", "deployment-live")
	if live.attrs["tabindex"] != "-1" || live.attrs["data-image"] != "api:v8" {
		t.Errorf("live box = %v, want tabindex -1 (the focus goes there after a rollback) and data-image", live.attrs)
	}
	region := one(t, api, "p", "live-progress")
	if region.attrs["role"] != "status" || region.attrs["aria-live"] != "polite" {
		t.Errorf("progress region = %v, want role status, aria-live polite", region.attrs)
	}
	if got, want := oneText(t, api, "p", "live-progress"), "deploy api:v8 of api: running"; got != want {
		t.Errorf("progress region says %q, want %q", got, want)
	}
}

// Image references are marked up to wrap only at their separators
// wherever the page shows one as HTML.
func TestPages_ImageReferencesWrapAtSeparators(t *testing.T) {
	f := newFixture(t)
	s := f.session(auth.RoleOperator)
	doc := f.page(t, "/", &s, http.StatusOK)
	for _, want := range []string{
		`<code class="active-image image-name">app:<wbr>v2</code>`,
		`<code class="standby-image image-name">app:<wbr>v1</code>`,
		`<td class="image" data-label="Image"><code class="image-name">app:<wbr>v3</code></td>`,
		`<code class="image-name">api:<wbr>v8</code>`,
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("dashboard lacks %s", want)
		}
	}
	if doc := f.page(t, "/deployments/dep-2", &s, http.StatusOK); !strings.Contains(doc, `<code class="image image-name">app:<wbr>v2</code>`) {
		t.Errorf("details page lacks the wrapped image")
	}
}

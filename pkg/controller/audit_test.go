package controller_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func TestAudit_RecordThenListNewestFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		empty, err := h.c.Audit(h.ctx(), 0)
		if err != nil || empty == nil || len(empty) != 0 {
			t.Fatalf("Audit of an empty trail = %v, %v; want [], nil", empty, err)
		}

		given := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
		before := time.Now()
		entries := []controller.AuditEntry{
			{Actor: "ci-token", Action: "deploy", Target: svc, Result: "ok", Status: 202, DeploymentID: "d1"},
			{Actor: "webhook:72d3162e", Action: "deploy", Target: svc, Result: controller.EFORBIDDEN, Status: 403, Time: given},
			{Actor: "admin", Action: "cancel", Target: "d1", Result: "ok", Status: 200},
		}
		for _, e := range entries {
			if err := h.c.RecordAudit(h.ctx(), e); err != nil {
				t.Fatalf("RecordAudit: %v", err)
			}
		}
		after := time.Now()

		got, err := h.c.Audit(h.ctx(), 0)
		if err != nil {
			t.Fatalf("Audit: %v", err)
		}
		var actions []string
		for _, e := range got {
			actions = append(actions, e.Actor+" "+e.Action)
		}
		want := []string{"admin cancel", "webhook:72d3162e deploy", "ci-token deploy"}
		if !slices.Equal(actions, want) {
			t.Fatalf("Audit = %v, want %v (newest first)", actions, want)
		}
		if !got[1].Time.Equal(given) {
			t.Errorf("entry with a time: time = %v, want it kept as %v", got[1].Time, given)
		}
		for _, e := range []controller.AuditEntry{got[0], got[2]} {
			if e.Time.Before(before.Add(-time.Second)) || e.Time.After(after.Add(time.Second)) || e.Time.Location() != time.UTC {
				t.Errorf("entry %s %s stamped %v, want the controller's clock in UTC", e.Actor, e.Action, e.Time)
			}
		}

		one, err := h.c.Audit(h.ctx(), 1)
		if err != nil || len(one) != 1 || one[0].Action != "cancel" {
			t.Fatalf("Audit(limit 1) = %+v, %v; want only the newest entry", one, err)
		}
	})
}

// A request refused before anyone was known to send it is counted, never
// written: a flood of them cannot grow the store or push real entries out
// of view. Known actors, logins and logouts included, are written.
func TestRecordAudit_AnonymousIsCountedNotWritten(t *testing.T) {
	h := newHarness(t)
	anonymous := []controller.AuditEntry{
		{Action: "deploy", Address: "198.51.100.7", Result: controller.EUNAUTHORIZED, Status: 401},
		{Action: "webhook_deploy", Address: "198.51.100.7", Result: "rate_limited", Status: 429},
		{Action: "deploy", Address: "198.51.100.8", Result: controller.EUNAUTHORIZED, Status: 401},
	}
	known := []controller.AuditEntry{
		{Actor: "admin", Action: controller.AuditLogin, Address: "198.51.100.9", Result: "ok", Status: 303},
		{Actor: "ci", Action: "rollback", Result: controller.EFORBIDDEN, Status: 403},
		{Actor: "admin", Action: controller.AuditLogout, Result: "ok", Status: 303},
	}
	for _, e := range append(anonymous, known...) {
		if err := h.c.RecordAudit(h.ctx(), e); err != nil {
			t.Fatalf("RecordAudit(%+v): %v", e, err)
		}
	}
	got, err := h.c.Audit(h.ctx(), 100)
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	var actions []string
	for _, e := range got {
		actions = append(actions, e.Actor+" "+e.Action)
	}
	if want := []string{"admin logout", "ci rollback", "admin login"}; !slices.Equal(actions, want) {
		t.Fatalf("trail = %v, want only the known actors' %v", actions, want)
	}
	if got, want := h.obs.unauditedRequests(), []string{"deploy 401", "webhook_deploy 429", "deploy 401"}; !slices.Equal(got, want) {
		t.Fatalf("counted = %v, want %v", got, want)
	}
	// One line sums up the period, not one line per request.
	lines := 0
	for _, e := range h.logs.AllEntries() {
		if strings.Contains(e.Message, "counted, not audited") {
			lines++
		}
	}
	if lines != 1 {
		t.Fatalf("%d log lines for %d refused requests within 10 s, want 1", lines, len(anonymous))
	}
}

func TestAuditBefore_PagesAndRefusesBadCursor(t *testing.T) {
	h := newHarness(t)
	for i := range 5 {
		if err := h.c.RecordAudit(h.ctx(), controller.AuditEntry{Actor: "admin", Action: fmt.Sprintf("a%d", i)}); err != nil {
			t.Fatalf("RecordAudit: %v", err)
		}
	}
	page, err := h.c.AuditBefore(h.ctx(), "", 2)
	if err != nil || len(page) != 2 || page[0].Action != "a4" {
		t.Fatalf("first page = %+v, %v; want a4, a3", page, err)
	}
	next, err := h.c.AuditBefore(h.ctx(), page[1].ID, 2)
	if err != nil || len(next) != 2 || next[0].Action != "a2" || next[1].Action != "a1" {
		t.Fatalf("second page = %+v, %v; want a2, a1", next, err)
	}
	for _, bad := range []string{"abc", "-1", "12345678901234567", "1e3"} {
		_, err := h.c.AuditBefore(h.ctx(), bad, 2)
		if controller.ErrorCode(err) != controller.EINVALID {
			t.Errorf("AuditBefore(%q) error = %v, want %s", bad, err, controller.EINVALID)
		}
	}
}

// The retention pass keeps the audit trail within Retention's bounds.
func TestRetain_PrunesAuditTrail(t *testing.T) {
	now := time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		spec     controller.RetentionSpec
		wantLeft []string
	}{
		{"keeps everything when unbounded", controller.RetentionSpec{}, []string{"d0", "d1", "d2", "d3", "d4"}},
		{"by age", controller.RetentionSpec{AuditMaxAge: 36 * time.Hour}, []string{"d3", "d4"}},
		{"by count", controller.RetentionSpec{AuditMaxEntries: 3}, []string{"d2", "d3", "d4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarnessWith(t, func(o *controller.Options) {
				o.Retention = tt.spec
				o.Now = func() time.Time { return now }
			})
			for i := range 5 {
				// d0 is four days old, d4 today.
				e := controller.AuditEntry{Actor: "admin", Action: fmt.Sprintf("d%d", i), Time: now.Add(-time.Duration(4-i) * 24 * time.Hour)}
				if err := h.c.RecordAudit(h.ctx(), e); err != nil {
					t.Fatalf("RecordAudit: %v", err)
				}
			}
			if _, err := h.c.Retain(h.ctx()); err != nil {
				t.Fatalf("Retain: %v", err)
			}
			got, err := h.c.Audit(h.ctx(), 100)
			if err != nil {
				t.Fatalf("Audit: %v", err)
			}
			var left []string
			for _, e := range got {
				left = append(left, e.Action)
			}
			slices.Reverse(left)
			if !slices.Equal(left, tt.wantLeft) {
				t.Fatalf("left %v, want %v", left, tt.wantLeft)
			}
		})
	}
}

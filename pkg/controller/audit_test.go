package controller_test

import (
	"slices"
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

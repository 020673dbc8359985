package store

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/deployd/deployd/pkg/controller"
)

func TestAppendAudit_RoundTripAssignsSequentialIDs(t *testing.T) {
	s := newStore(t)
	first := controller.AuditEntry{
		Time: t0, Actor: "ci-token", Action: "deploy", Target: "shop", Address: "127.0.0.1:51234",
		Result: "ok", Status: 202, DeploymentID: "01JPD0000000000000000000A1", RequestID: "req-1",
	}
	second := controller.AuditEntry{
		ID: "caller-chosen", Time: t0.Add(time.Second), Actor: "webhook:72d3162e", Action: "cancel",
		Target: "01JPD0000000000000000000A1", Result: controller.ECONFLICT, Status: 409,
	}
	third := controller.AuditEntry{Time: t0.Add(2 * time.Second), Actor: "admin", Action: "rollback", Target: "shop", Result: "ok", Status: 202}
	for _, e := range []controller.AuditEntry{first, second, third} {
		if err := s.AppendAudit(t.Context(), e); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	got, err := s.ListAudit(t.Context(), "", 0)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	first.ID = "0000000000000001"
	third.ID = "0000000000000003"
	want := []controller.AuditEntry{third, second, first}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ListAudit =\n%+v\nwant\n%+v", got, want)
	}
}

// seedAudit appends n entries in one transaction and returns their IDs in
// append order.
func seedAudit(t *testing.T, s *Store, n int) []string {
	t.Helper()
	ids := make([]string, n)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for i := range n {
			// Times run backwards on purpose: the order must come from
			// the append order, not from the entries' clocks.
			e := controller.AuditEntry{Time: t0.Add(-time.Duration(i) * time.Second), Action: fmt.Sprintf("a%d", i)}
			if err := appendAudit(tx, e); err != nil {
				return err
			}
			ids[i] = fmt.Sprintf("%016d", i+1)
		}
		return nil
	}); err != nil {
		t.Fatalf("seed: %v", err)
	}
	return ids
}

func TestListAudit_NewestFirstAndLimited(t *testing.T) {
	s := newStore(t)
	ids := seedAudit(t, s, 1100)
	newest := ids[len(ids)-1]
	tests := []struct {
		name    string
		limit   int
		wantLen int
	}{
		{"default limit", 0, 50},
		{"negative limit means default", -5, 50},
		{"explicit limit", 3, 3},
		{"capped at 1000", 5000, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListAudit(t.Context(), "", tt.limit)
			if err != nil {
				t.Fatalf("ListAudit: %v", err)
			}
			if len(got) != tt.wantLen {
				t.Fatalf("len = %d, want %d", len(got), tt.wantLen)
			}
			if got[0].ID != newest {
				t.Fatalf("first = %s, want %s", got[0].ID, newest)
			}
			for i := 1; i < len(got); i++ {
				if got[i].ID >= got[i-1].ID {
					t.Fatalf("got[%d] = %s after %s, want strictly newest first", i, got[i].ID, got[i-1].ID)
				}
			}
		})
	}
}

func TestListAudit_EmptyTrailIsEmptySlice(t *testing.T) {
	got, err := newStore(t).ListAudit(t.Context(), "", 10)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("ListAudit on empty store = %v, %v; want [], nil", got, err)
	}
}

// Byte order of the keys is the trail's order only if every key has the
// same width, including past 9 entries.
func TestAppendAudit_OrderHoldsPastOneDigit(t *testing.T) {
	s := newStore(t)
	for i := range 12 {
		if err := s.AppendAudit(t.Context(), controller.AuditEntry{Action: fmt.Sprintf("a%d", i)}); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	got, err := s.ListAudit(t.Context(), "", 0)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	for i, e := range got {
		if want := fmt.Sprintf("a%d", 11-i); e.Action != want {
			t.Fatalf("got[%d].Action = %s, want %s", i, e.Action, want)
		}
	}
}

// Paging with the last ID of each page visits every entry once, in order,
// even while new entries are appended between pages.
func TestListAudit_BeforePagesThroughEveryEntry(t *testing.T) {
	s := newStore(t)
	ids := seedAudit(t, s, 257)
	var seen []string
	before := ""
	for page := 0; ; page++ {
		got, err := s.ListAudit(t.Context(), before, 50)
		if err != nil {
			t.Fatalf("ListAudit(before %q): %v", before, err)
		}
		if len(got) == 0 {
			break
		}
		for _, e := range got {
			seen = append(seen, e.ID)
		}
		before = got[len(got)-1].ID
		if page == 0 {
			// Newer entries must not shift the pages that follow.
			if err := s.AppendAudit(t.Context(), controller.AuditEntry{Action: "late"}); err != nil {
				t.Fatalf("AppendAudit: %v", err)
			}
		}
	}
	if len(seen) != len(ids) {
		t.Fatalf("paged through %d entries, want %d", len(seen), len(ids))
	}
	for i, id := range seen {
		if want := ids[len(ids)-1-i]; id != want {
			t.Fatalf("entry %d = %s, want %s", i, id, want)
		}
	}
}

func TestListAudit_Before(t *testing.T) {
	s := newStore(t)
	seedAudit(t, s, 20)
	tests := []struct {
		name      string
		before    string
		wantFirst string
		wantLen   int
	}{
		{"an existing id", "0000000000000010", "0000000000000009", 9},
		{"unpadded", "10", "0000000000000009", 9},
		{"past the newest", "0000000000009999", "0000000000000020", 20},
		{"the oldest: nothing older", "1", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListAudit(t.Context(), tt.before, 100)
			if err != nil {
				t.Fatalf("ListAudit: %v", err)
			}
			if len(got) != tt.wantLen {
				t.Fatalf("len = %d, want %d", len(got), tt.wantLen)
			}
			if tt.wantLen > 0 && got[0].ID != tt.wantFirst {
				t.Fatalf("first = %s, want %s", got[0].ID, tt.wantFirst)
			}
		})
	}
}

func TestPruneAudit(t *testing.T) {
	// seedAudit's entry i is i seconds older than t0, appended i-th: so
	// here times run forward with the keys, as real appends do.
	seed := func(t *testing.T, n int) *Store {
		s := newStore(t)
		for i := range n {
			e := controller.AuditEntry{Time: t0.Add(time.Duration(i) * time.Minute), Actor: "a", Action: fmt.Sprintf("a%d", i)}
			if err := s.AppendAudit(t.Context(), e); err != nil {
				t.Fatalf("AppendAudit: %v", err)
			}
		}
		return s
	}
	tests := []struct {
		name        string
		n           int
		olderThan   time.Time
		keep        int
		wantRemoved int
	}{
		{"nothing asked", 10, time.Time{}, 0, 0},
		{"by age", 10, t0.Add(4 * time.Minute), 0, 4},
		{"by count", 10, time.Time{}, 3, 7},
		{"count under the limit", 10, time.Time{}, 30, 0},
		{"both: the stricter wins", 10, t0.Add(2 * time.Minute), 5, 5},
		{"more than one batch", pruneBatch + 10, time.Time{}, 5, pruneBatch + 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := seed(t, tt.n)
			removed, err := s.PruneAudit(t.Context(), tt.olderThan, tt.keep)
			if err != nil {
				t.Fatalf("PruneAudit: %v", err)
			}
			if removed != tt.wantRemoved {
				t.Fatalf("removed %d, want %d", removed, tt.wantRemoved)
			}
			left, err := s.ListAudit(t.Context(), "", maxAuditLimit)
			if err != nil {
				t.Fatalf("ListAudit: %v", err)
			}
			if want := min(tt.n-tt.wantRemoved, maxAuditLimit); len(left) != want {
				t.Fatalf("%d entries left, want %d", len(left), want)
			}
			// The newest always survive.
			if want := fmt.Sprintf("a%d", tt.n-1); left[0].Action != want {
				t.Fatalf("newest left = %s, want %s", left[0].Action, want)
			}
			if oldest := left[len(left)-1]; tt.wantRemoved > 0 && tt.n-tt.wantRemoved <= maxAuditLimit {
				if want := fmt.Sprintf("a%d", tt.wantRemoved); oldest.Action != want {
					t.Fatalf("oldest left = %s, want %s", oldest.Action, want)
				}
			}
		})
	}
}

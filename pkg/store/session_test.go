package store

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestSessions_SurviveReopenAndDelete(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deployd.db")
	a := SessionRecord{Key: "aa11", Token: "admin", TokenTag: "t1", CSRF: "c1", Created: t0, Expires: t0.Add(time.Hour)}
	b := SessionRecord{Key: "bb22", Token: "ci", TokenTag: "t2", CSRF: "c2", Created: t0, Expires: t0.Add(2 * time.Hour)}

	s := openTest(t, path)
	for _, r := range []SessionRecord{a, b} {
		if err := s.PutSession(t.Context(), r); err != nil {
			t.Fatalf("PutSession: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openTest(t, path)
	got, err := s.ListSessions(t.Context())
	if err != nil || !reflect.DeepEqual(got, []SessionRecord{a, b}) {
		t.Fatalf("ListSessions after reopen = %+v, %v; want %+v", got, err, []SessionRecord{a, b})
	}
	if err := s.DeleteSessions(t.Context(), "aa11", "never-stored"); err != nil {
		t.Fatalf("DeleteSessions: %v", err)
	}
	got, err = s.ListSessions(t.Context())
	if err != nil || !reflect.DeepEqual(got, []SessionRecord{b}) {
		t.Fatalf("ListSessions after delete = %+v, %v; want %+v", got, err, []SessionRecord{b})
	}
}

func TestPutSession_EmptyKeyIsRefused(t *testing.T) {
	s := newStore(t)
	if err := s.PutSession(t.Context(), SessionRecord{Token: "admin"}); err == nil {
		t.Fatal("PutSession without a key succeeded")
	}
	if got, err := s.ListSessions(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("ListSessions = %+v, %v; want none", got, err)
	}
}

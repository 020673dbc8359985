package store

import (
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/deployd/deployd/pkg/controller"
)

func note(kind, deployment string) controller.Notification {
	return controller.Notification{Kind: kind, Service: "shop", Deployment: deployment, Image: "shop:v2",
		Color: controller.Green, Actor: "alice", Message: "m", Time: t0}
}

// idsOf returns a target's pending ids in the order they were added.
func idsOf(t *testing.T, s *Store, target string) []string {
	t.Helper()
	pending, err := s.PendingNotifications(t.Context())
	if err != nil {
		t.Fatalf("PendingNotifications: %v", err)
	}
	var ids []string
	for id := range pending[target] {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func TestOutbox_AddedNotificationIsPendingForEachTargetInOrder(t *testing.T) {
	s := newStore(t)
	first, err := s.AddNotification(t.Context(), []string{"chat", "ops"}, note(controller.NotifyDeployStarted, "d1"))
	if err != nil {
		t.Fatalf("AddNotification: %v", err)
	}
	second, err := s.AddNotification(t.Context(), []string{"ops"}, note(controller.NotifyDeploySucceeded, "d1"))
	if err != nil {
		t.Fatalf("AddNotification: %v", err)
	}
	if !(first < second) {
		t.Fatalf("ids %q then %q, want them to sort in the order added", first, second)
	}

	pending, err := s.PendingNotifications(t.Context())
	if err != nil {
		t.Fatalf("PendingNotifications: %v", err)
	}
	want := map[string]map[string]controller.Notification{
		"chat": {first: note(controller.NotifyDeployStarted, "d1")},
		"ops":  {first: note(controller.NotifyDeployStarted, "d1"), second: note(controller.NotifyDeploySucceeded, "d1")},
	}
	if !reflect.DeepEqual(pending, want) {
		t.Fatalf("pending = %+v, want %+v", pending, want)
	}
}

func TestOutbox_DeleteForgetsOneTargetsCopyOnly(t *testing.T) {
	s := newStore(t)
	id, err := s.AddNotification(t.Context(), []string{"chat", "ops"}, note(controller.NotifyDeployFailed, "d1"))
	if err != nil {
		t.Fatalf("AddNotification: %v", err)
	}
	if err := s.DeleteNotification(t.Context(), "chat", id); err != nil {
		t.Fatalf("DeleteNotification: %v", err)
	}
	if got := idsOf(t, s, "chat"); len(got) != 0 {
		t.Fatalf("chat pending = %v, want none", got)
	}
	if got := idsOf(t, s, "ops"); !reflect.DeepEqual(got, []string{id}) {
		t.Fatalf("ops pending = %v, want [%s]", got, id)
	}
	// Deleting again, or for a target never seen, is no error.
	for _, target := range []string{"chat", "nobody"} {
		if err := s.DeleteNotification(t.Context(), target, id); err != nil {
			t.Fatalf("DeleteNotification(%s) of a missing one: %v", target, err)
		}
	}
	// The emptied target's bucket went with its last notification.
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(bucketOutbox)).Bucket([]byte("chat")) != nil {
			t.Errorf("bucket of target chat left behind empty")
		}
		return nil
	}); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func TestOutbox_PendingSurvivesReopenAndNewIdsFollowOldOnes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deployd.db")
	s, err := Open(t.Context(), Options{Path: path})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	old, err := s.AddNotification(t.Context(), []string{"ops"}, note(controller.NotifyDeployInterrupted, "d1"))
	if err != nil {
		t.Fatalf("AddNotification: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openTest(t, path)
	pending, err := s.PendingNotifications(t.Context())
	if err != nil {
		t.Fatalf("PendingNotifications after reopen: %v", err)
	}
	if got, want := pending["ops"][old], note(controller.NotifyDeployInterrupted, "d1"); got != want {
		t.Fatalf("pending after reopen = %+v, want %+v", got, want)
	}
	// The sequence continues: a new id must not overwrite an old one.
	next, err := s.AddNotification(t.Context(), []string{"ops"}, note(controller.NotifyDeployStarted, "d2"))
	if err != nil {
		t.Fatalf("AddNotification after reopen: %v", err)
	}
	if got := idsOf(t, s, "ops"); !reflect.DeepEqual(got, []string{old, next}) || !(old < next) {
		t.Fatalf("ops pending = %v, want [%s %s] in that order", got, old, next)
	}
}

func TestOutbox_EmptyTargetNameStoresNothing(t *testing.T) {
	s := newStore(t)
	if _, err := s.AddNotification(t.Context(), []string{"ops", ""}, note(controller.NotifyRepair, "")); err == nil {
		t.Fatal("AddNotification with an empty target name succeeded, want an error")
	}
	if _, err := s.AddNotification(t.Context(), nil, note(controller.NotifyRepair, "")); err == nil {
		t.Fatal("AddNotification without targets succeeded, want an error")
	}
	pending, err := s.PendingNotifications(t.Context())
	if err != nil || len(pending) != 0 {
		t.Fatalf("pending = %v, %v; want none: the failed transaction must store nothing", pending, err)
	}
}

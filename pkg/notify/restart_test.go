package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/notify"
	"github.com/deployd/deployd/pkg/store"
)

var _ notify.Outbox = (*store.Store)(nil)

// TestRestart_UndeliveredNotificationsAreSentByTheNextNotifier runs the
// daemon's sequence with the real store: a target that is down at
// shutdown, Close, the store closed and opened again, a new Notifier with
// the target up.
func TestRestart_UndeliveredNotificationsAreSentByTheNextNotifier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deployd.db")
	// Reserve an address, then leave it: connections are refused until the
	// receiver listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	targets := []notify.Target{{Name: "ops", Type: notify.TypeWebhook, URL: "http://" + addr + "/hook"}}
	log, _ := logtest.NewNullLogger()
	var failed sync.Map
	onFailure := func(target string) { failed.Store(target, true) }

	st, err := store.Open(t.Context(), store.Options{Path: path})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	n := notify.New(t.Context(), notify.Options{Targets: targets, Logger: log, OnFailure: onFailure, Outbox: st})
	var sent []string
	for i := range 4 {
		id := fmt.Sprintf("d-%d", i)
		sent = append(sent, id)
		n.Notify(controller.Notification{Kind: controller.NotifyDeploySucceeded, Service: "web", Deployment: id})
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("close store: %v", err)
	}

	var mu sync.Mutex
	var got []string
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the target's address was taken meanwhile: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var note notify.Payload
		if err := json.Unmarshal(b, &note); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, note.Deployment)
		mu.Unlock()
	}))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)

	st, err = store.Open(t.Context(), store.Options{Path: path})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	n = notify.New(t.Context(), notify.Options{Targets: targets, Logger: log, OnFailure: onFailure, Outbox: st})
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		done := slices.Equal(got, sent)
		snapshot := slices.Clone(got)
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered after the restart: %v, want %v", snapshot, sent)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx2, cancel2 := context.WithTimeout(t.Context(), time.Second)
	defer cancel2()
	if err := n.Close(ctx2); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if pending, err := st.PendingNotifications(t.Context()); err != nil || len(pending) != 0 {
		t.Fatalf("outbox after delivery = %v, %v; want empty", pending, err)
	}
	failed.Range(func(k, _ any) bool {
		t.Errorf("target %v counted a failure; want none", k)
		return true
	})
}

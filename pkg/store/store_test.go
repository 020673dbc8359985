package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/deployd/deployd/pkg/controller"
)

func openTest(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), Options{Path: path})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func newStore(t *testing.T) *Store {
	t.Helper()
	return openTest(t, filepath.Join(t.TempDir(), "data", "deployd.db"))
}

var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)

func ptr[T any](v T) *T { return &v }

func fullDeployment() controller.Deployment {
	return controller.Deployment{
		ID:        "01JPD0000000000000000000A1",
		Service:   "shop",
		Kind:      controller.KindDeploy,
		Image:     "shop:v2",
		FromColor: controller.Blue,
		ToColor:   controller.Green,
		Status:    controller.StatusFailed,
		Error:     "health: 502 from /health",
		Steps: []controller.Step{
			{Name: controller.StepPull, Status: controller.StepSucceeded, StartedAt: t0, FinishedAt: ptr(t0.Add(time.Second)), Message: "present"},
			{Name: controller.StepPreDeploy, Status: controller.StepSucceeded, StartedAt: t0.Add(time.Second), FinishedAt: ptr(t0.Add(3 * time.Second)), Output: "Applying shop.0002... OK\n"},
			{Name: controller.StepHealth, Status: controller.StepFailed, StartedAt: t0.Add(3 * time.Second), FinishedAt: ptr(t0.Add(33 * time.Second)), Message: "502"},
			{Name: controller.StepStandby, Status: controller.StepSkipped, StartedAt: t0.Add(34 * time.Second)},
			{Name: controller.StepDrain, Status: controller.StepRunning, StartedAt: t0.Add(35 * time.Second)},
		},
		Trigger:    controller.Trigger{Source: "webhook", Actor: "ci-bot", OnBehalfOf: "octocat", Commit: "9fceb02"},
		CreatedAt:  t0,
		FinishedAt: ptr(t0.Add(40 * time.Second)),
	}
}

func TestDeployment_RoundTripKeepsEveryField(t *testing.T) {
	running := fullDeployment()
	running.ID = "01JPD0000000000000000000B2"
	running.Status = controller.StatusRunning
	running.FinishedAt = nil
	running.Error = ""

	tests := []struct {
		name string
		d    controller.Deployment
	}{
		{"finished with steps and trigger", fullDeployment()},
		{"running without finish time", running},
		{"bare queued rollback", controller.Deployment{ID: "x", Service: "shop", Kind: controller.KindRollback, CreatedAt: t0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			if err := s.PutDeployment(t.Context(), tt.d); err != nil {
				t.Fatalf("PutDeployment: %v", err)
			}
			got, err := s.GetDeployment(t.Context(), tt.d.ID)
			if err != nil {
				t.Fatalf("GetDeployment: %v", err)
			}
			if !reflect.DeepEqual(got, tt.d) {
				t.Fatalf("GetDeployment =\n%+v\nwant\n%+v", got, tt.d)
			}
		})
	}
}

// The stored form is read by people (bbolt tools, support dumps) and must
// survive a reordering of the status constants, so statuses are names.
func TestDeployment_StoresStatusesAsNames(t *testing.T) {
	s := newStore(t)
	d := fullDeployment()
	if err := s.PutDeployment(t.Context(), d); err != nil {
		t.Fatalf("PutDeployment: %v", err)
	}
	var raw []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		raw = append(raw, tx.Bucket([]byte(bucketDeployments)).Get([]byte(d.ID))...)
		return nil
	}); err != nil {
		t.Fatalf("View: %v", err)
	}
	for _, want := range []string{`"status":"failed"`, `"status":"succeeded"`, `"status":"skipped"`, `"status":"running"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("stored JSON lacks %s: %s", want, raw)
		}
	}
}

func TestService_PutReplacesAndGetReturnsLatest(t *testing.T) {
	s := newStore(t)
	first := controller.ServiceState{Name: "shop", ActiveColor: controller.Blue, ActiveImage: "shop:v1", UpdatedAt: t0}
	second := controller.ServiceState{
		Name: "shop", ActiveColor: controller.Green, ActiveImage: "shop:v2",
		StandbyColor: controller.Blue, StandbyImage: "shop:v1", UpdatedAt: t0.Add(time.Minute),
	}
	for _, st := range []controller.ServiceState{first, second} {
		if err := s.PutService(t.Context(), st); err != nil {
			t.Fatalf("PutService: %v", err)
		}
	}
	got, err := s.GetService(t.Context(), "shop")
	if err != nil {
		t.Fatalf("GetService: %v", err)
	}
	if got != second {
		t.Fatalf("GetService = %+v, want %+v", got, second)
	}
}

func TestGet_MissingRecordWrapsErrNotFound(t *testing.T) {
	s := newStore(t)
	if err := s.PutService(t.Context(), controller.ServiceState{Name: "shop"}); err != nil {
		t.Fatalf("PutService: %v", err)
	}
	tests := []struct {
		name string
		get  func(context.Context) error
		want string
	}{
		{"service", func(ctx context.Context) error { _, err := s.GetService(ctx, "cart"); return err }, `service "cart": not found`},
		{"deployment", func(ctx context.Context) error { _, err := s.GetDeployment(ctx, "nope"); return err }, `deployment "nope": not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.get(t.Context())
			if !errors.Is(err, controller.ErrNotFound) {
				t.Fatalf("err = %v, want one wrapping ErrNotFound", err)
			}
			if err.Error() != tt.want {
				t.Fatalf("err = %q, want %q", err, tt.want)
			}
		})
	}
}

// seedDeployments writes n deployments in one transaction (n fsyncs would
// make the test slow) and returns them oldest first. Every third one belongs
// to "cart", the rest to "shop"; every fourth one is still running.
func seedDeployments(t *testing.T, s *Store, n int) []controller.Deployment {
	t.Helper()
	all := make([]controller.Deployment, n)
	for i := range all {
		d := controller.Deployment{
			ID:        fmt.Sprintf("dep-%05d", i),
			Service:   "shop",
			Kind:      controller.KindDeploy,
			Status:    controller.StatusSucceeded,
			CreatedAt: t0.Add(time.Duration(i) * time.Second),
		}
		if i%3 == 0 {
			d.Service = "cart"
		}
		if i%4 == 0 {
			d.Status = controller.StatusRunning
		}
		all[i] = d
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, d := range all {
			if err := putDeployment(tx, d); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("seed: %v", err)
	}
	return all
}

func ids(ds []controller.Deployment) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func TestListDeployments_NewestFirstFilteredAndLimited(t *testing.T) {
	s := newStore(t)
	all := seedDeployments(t, s, 600)
	count := func(service string) int {
		n := 0
		for _, d := range all {
			if service == "" || d.Service == service {
				n++
			}
		}
		return n
	}

	tests := []struct {
		name      string
		service   string
		limit     int
		wantLen   int
		wantFirst string
	}{
		{"default limit", "", 0, 20, "dep-00599"},
		{"negative limit means default", "", -1, 20, "dep-00599"},
		{"explicit limit", "", 7, 7, "dep-00599"},
		{"capped at 500", "", 10000, 500, "dep-00599"},
		{"one service", "cart", 1000, count("cart"), "dep-00597"},
		{"other service", "shop", 3, 3, "dep-00599"},
		{"unknown service is empty, not an error", "nope", 10, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListDeployments(t.Context(), tt.service, tt.limit)
			if err != nil {
				t.Fatalf("ListDeployments: %v", err)
			}
			if got == nil {
				t.Fatal("ListDeployments = nil, want an empty slice (it is rendered as JSON)")
			}
			if len(got) != tt.wantLen {
				t.Fatalf("len = %d, want %d", len(got), tt.wantLen)
			}
			if len(got) > 0 && got[0].ID != tt.wantFirst {
				t.Fatalf("first = %s, want %s", got[0].ID, tt.wantFirst)
			}
			for i, d := range got {
				if tt.service != "" && d.Service != tt.service {
					t.Fatalf("got[%d].Service = %q, want %q", i, d.Service, tt.service)
				}
				if i > 0 && d.ID >= got[i-1].ID {
					t.Fatalf("got[%d] = %s after %s, want strictly newest first", i, d.ID, got[i-1].ID)
				}
			}
		})
	}
}

func TestUnfinishedDeployments_QueuedAndRunningOldestFirst(t *testing.T) {
	s := newStore(t)
	mk := func(id string, st controller.Status) controller.Deployment {
		return controller.Deployment{ID: id, Service: "shop", Status: st, CreatedAt: t0}
	}
	// Written out of order so the result's order comes from the IDs.
	for _, d := range []controller.Deployment{
		mk("d5", controller.StatusQueued),
		mk("d1", controller.StatusSucceeded),
		mk("d3", controller.StatusRunning),
		mk("d2", controller.StatusFailed),
		mk("d4", controller.StatusInterrupted),
		mk("d0", controller.StatusQueued),
	} {
		if err := s.PutDeployment(t.Context(), d); err != nil {
			t.Fatalf("PutDeployment: %v", err)
		}
	}
	got, err := s.UnfinishedDeployments(t.Context())
	if err != nil {
		t.Fatalf("UnfinishedDeployments: %v", err)
	}
	if want := []string{"d0", "d3", "d5"}; !reflect.DeepEqual(ids(got), want) {
		t.Fatalf("UnfinishedDeployments = %v, want %v", ids(got), want)
	}

	empty := newStore(t)
	got, err = empty.UnfinishedDeployments(t.Context())
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("UnfinishedDeployments on empty store = %v, %v; want [], nil", got, err)
	}
}

func TestSaveSwitch_WritesServiceAndDeploymentTogether(t *testing.T) {
	s := newStore(t)
	before := controller.ServiceState{Name: "shop", ActiveColor: controller.Blue, ActiveImage: "shop:v1", UpdatedAt: t0}
	if err := s.PutService(t.Context(), before); err != nil {
		t.Fatalf("PutService: %v", err)
	}
	after := controller.ServiceState{
		Name: "shop", ActiveColor: controller.Green, ActiveImage: "shop:v2",
		StandbyColor: controller.Blue, StandbyImage: "shop:v1", UpdatedAt: t0.Add(time.Minute),
	}
	d := fullDeployment()
	d.Status = controller.StatusSucceeded

	if err := s.SaveSwitch(t.Context(), after, d); err != nil {
		t.Fatalf("SaveSwitch: %v", err)
	}
	gotS, err := s.GetService(t.Context(), "shop")
	if err != nil || gotS != after {
		t.Fatalf("GetService = %+v, %v; want %+v", gotS, err, after)
	}
	gotD, err := s.GetDeployment(t.Context(), d.ID)
	if err != nil || !reflect.DeepEqual(gotD, d) {
		t.Fatalf("GetDeployment = %+v, %v; want %+v", gotD, err, d)
	}
}

func TestSaveSwitch_FailingDeploymentWriteLeavesServiceUntouched(t *testing.T) {
	s := newStore(t)
	before := controller.ServiceState{Name: "shop", ActiveColor: controller.Blue, ActiveImage: "shop:v1", UpdatedAt: t0}
	if err := s.PutService(t.Context(), before); err != nil {
		t.Fatalf("PutService: %v", err)
	}
	after := controller.ServiceState{Name: "shop", ActiveColor: controller.Green, ActiveImage: "shop:v2"}
	// An empty ID cannot be stored, so the deployment half fails after the
	// service half was written inside the transaction.
	if err := s.SaveSwitch(t.Context(), after, controller.Deployment{Service: "shop"}); err == nil {
		t.Fatal("SaveSwitch with an empty deployment ID succeeded, want an error")
	}
	got, err := s.GetService(t.Context(), "shop")
	if err != nil || got != before {
		t.Fatalf("GetService = %+v, %v; want the untouched %+v", got, err, before)
	}
}

func TestMethods_CancelledContextTouchesNothing(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	st := controller.ServiceState{Name: "shop"}
	d := controller.Deployment{ID: "d1", Service: "shop"}
	calls := map[string]func() error{
		"GetService":            func() error { _, err := s.GetService(ctx, "shop"); return err },
		"PutService":            func() error { return s.PutService(ctx, st) },
		"PutDeployment":         func() error { return s.PutDeployment(ctx, d) },
		"SaveSwitch":            func() error { return s.SaveSwitch(ctx, st, d) },
		"GetDeployment":         func() error { _, err := s.GetDeployment(ctx, "d1"); return err },
		"ListDeployments":       func() error { _, err := s.ListDeployments(ctx, "", 0); return err },
		"UnfinishedDeployments": func() error { _, err := s.UnfinishedDeployments(ctx); return err },
		"AppendAudit":           func() error { return s.AppendAudit(ctx, controller.AuditEntry{Action: "deploy"}) },
		"ListAudit":             func() error { _, err := s.ListAudit(ctx, "", 0); return err },
		"PutDelivery":           func() error { return s.PutDelivery(ctx, "k1", "d1") },
		"GetDelivery":           func() error { _, err := s.GetDelivery(ctx, "k1"); return err },
		"AddNotification": func() error {
			_, err := s.AddNotification(ctx, []string{"ops"}, controller.Notification{Kind: controller.NotifyRepair})
			return err
		},
		"DeleteNotification":   func() error { return s.DeleteNotification(ctx, "ops", "0000000000000001") },
		"PendingNotifications": func() error { _, err := s.PendingNotifications(ctx); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s err = %v, want context.Canceled", name, err)
		}
	}
	if _, err := s.GetService(t.Context(), "shop"); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("GetService after cancelled writes: err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetDelivery(t.Context(), "k1"); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("GetDelivery after cancelled writes: err = %v, want ErrNotFound", err)
	}
	if es, err := s.ListAudit(t.Context(), "", 0); err != nil || len(es) != 0 {
		t.Fatalf("ListAudit after cancelled writes = %v, %v; want [], nil", es, err)
	}
	if p, err := s.PendingNotifications(t.Context()); err != nil || len(p) != 0 {
		t.Fatalf("PendingNotifications after cancelled writes = %v, %v; want none", p, err)
	}
}

func TestOpen_ReopenAfterCloseKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deployd.db")
	st := controller.ServiceState{Name: "shop", ActiveColor: controller.Green, ActiveImage: "shop:v2", UpdatedAt: t0}
	d := fullDeployment()

	s, err := Open(t.Context(), Options{Path: path})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.SaveSwitch(t.Context(), st, d); err != nil {
		t.Fatalf("SaveSwitch: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openTest(t, path)
	gotS, err := s.GetService(t.Context(), "shop")
	if err != nil || gotS != st {
		t.Fatalf("GetService after reopen = %+v, %v; want %+v", gotS, err, st)
	}
	gotD, err := s.GetDeployment(t.Context(), d.ID)
	if err != nil || !reflect.DeepEqual(gotD, d) {
		t.Fatalf("GetDeployment after reopen = %+v, %v; want %+v", gotD, err, d)
	}
	list, err := s.ListDeployments(t.Context(), "", 0)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListDeployments after reopen = %d items, %v; want 1", len(list), err)
	}
}

func TestOpen_ReopenKeepsAuditTrailAndDeliveries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deployd.db")
	s, err := Open(t.Context(), Options{Path: path})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	for _, a := range []string{"deploy", "cancel"} {
		if err := s.AppendAudit(t.Context(), controller.AuditEntry{Time: t0, Action: a}); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	if err := s.PutDelivery(t.Context(), "k1", "d1"); err != nil {
		t.Fatalf("PutDelivery: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openTest(t, path)
	if got, err := s.GetDelivery(t.Context(), "k1"); err != nil || got != "d1" {
		t.Fatalf("GetDelivery after reopen = %q, %v; want d1, nil", got, err)
	}
	// The sequence continues where it was: a reopened trail must not
	// reuse keys and overwrite entries.
	if err := s.AppendAudit(t.Context(), controller.AuditEntry{Time: t0, Action: "rollback"}); err != nil {
		t.Fatalf("AppendAudit after reopen: %v", err)
	}
	es, err := s.ListAudit(t.Context(), "", 0)
	if err != nil {
		t.Fatalf("ListAudit after reopen: %v", err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.ID+" "+e.Action)
	}
	want := []string{"0000000000000003 rollback", "0000000000000002 cancel", "0000000000000001 deploy"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ListAudit after reopen = %v, want %v", got, want)
	}
}

// A file written before the audit trail, deliveries and notifications
// existed has schema 1 and only the services and deployments buckets; it must open as is.
func TestOpen_SchemaOneFileWithoutNewBucketsGainsThem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deployd.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	d := fullDeployment()
	if err := db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket([]byte(bucketMeta))
		if err != nil {
			return err
		}
		if err := meta.Put([]byte(keySchemaVersion), []byte("1")); err != nil {
			return err
		}
		if _, err := tx.CreateBucket([]byte(bucketServices)); err != nil {
			return err
		}
		b, err := tx.CreateBucket([]byte(bucketDeployments))
		if err != nil {
			return err
		}
		// As the first version wrote it: the record, no service index.
		v, err := json.Marshal(newDeploymentV1(d))
		if err != nil {
			return err
		}
		return b.Put([]byte(d.ID), v)
	}); err != nil {
		t.Fatalf("write v1 file: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s := openTest(t, path)
	if _, err := s.GetDeployment(t.Context(), d.ID); err != nil {
		t.Fatalf("GetDeployment from the old file: %v", err)
	}
	// The per-service index is built from the old records at open.
	if ds, err := s.ListDeployments(t.Context(), d.Service, 10); err != nil || len(ds) != 1 || ds[0].ID != d.ID {
		t.Fatalf("ListDeployments(%s) on the old file = %v, %v; want its one deployment", d.Service, ds, err)
	}
	if _, err := s.GetDelivery(t.Context(), "k1"); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("GetDelivery on the old file: err = %v, want ErrNotFound", err)
	}
	if err := s.PutDelivery(t.Context(), "k1", d.ID); err != nil {
		t.Fatalf("PutDelivery on the old file: %v", err)
	}
	if err := s.AppendAudit(t.Context(), controller.AuditEntry{Action: "deploy"}); err != nil {
		t.Fatalf("AppendAudit on the old file: %v", err)
	}
	if es, err := s.ListAudit(t.Context(), "", 0); err != nil || len(es) != 1 {
		t.Fatalf("ListAudit on the old file = %v, %v; want one entry", es, err)
	}
	if p, err := s.PendingNotifications(t.Context()); err != nil || len(p) != 0 {
		t.Fatalf("PendingNotifications on the old file = %v, %v; want none", p, err)
	}
	if _, err := s.AddNotification(t.Context(), []string{"ops"}, controller.Notification{Kind: controller.NotifyRepair}); err != nil {
		t.Fatalf("AddNotification on the old file: %v", err)
	}
	var version string
	if err := s.db.View(func(tx *bolt.Tx) error {
		version = string(tx.Bucket([]byte(bucketMeta)).Get([]byte(keySchemaVersion)))
		return nil
	}); err != nil {
		t.Fatalf("View: %v", err)
	}
	if version != "1" {
		t.Fatalf("schema version after opening = %q, want it left at %q", version, "1")
	}
}

func TestOpen_CreatesPrivateDirAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "deployd")
	path := filepath.Join(dir, "deployd.db")
	openTest(t, path)
	for _, c := range []struct {
		path string
		want os.FileMode
	}{{dir, 0o700}, {path, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		if got := fi.Mode().Perm(); got != c.want {
			t.Errorf("%s mode = %o, want %o", c.path, got, c.want)
		}
	}
}

func TestOpen_UnknownSchemaVersionFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deployd.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte(bucketMeta))
		if err != nil {
			return err
		}
		return b.Put([]byte(keySchemaVersion), []byte("2"))
	}); err != nil {
		t.Fatalf("write version: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err := Open(t.Context(), Options{Path: path})
	if err == nil {
		s.Close()
		t.Fatal("Open of a schema-2 file succeeded, want an error")
	}
	if !errors.Is(err, ErrSchema) {
		t.Fatalf("err = %v, want one wrapping ErrSchema", err)
	}
	if !strings.Contains(err.Error(), `schema version "2"`) {
		t.Fatalf("err = %q, want it to name the version found", err)
	}
}

func TestOpen_NewFileIsStampedWithCurrentSchema(t *testing.T) {
	s := newStore(t)
	var got string
	if err := s.db.View(func(tx *bolt.Tx) error {
		got = string(tx.Bucket([]byte(bucketMeta)).Get([]byte(keySchemaVersion)))
		return nil
	}); err != nil {
		t.Fatalf("View: %v", err)
	}
	if got != "1" {
		t.Fatalf("schema version = %q, want %q", got, "1")
	}
}

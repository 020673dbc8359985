package store

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/deployd/deployd/pkg/controller"
)

// schema1File is a store written by deployd before the store had record
// types of its own, when controller's types were stored as they are:
// schema 1, as it exists on users' disks. It holds exactly schema1Contents,
// written through the store's methods with the clock at schema1Clock.
// Never regenerate it with newer code: its worth is that older code wrote
// it.
const schema1File = "testdata/schema1.db"

var schema1Clock = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)

type schema1Data struct {
	services      []controller.ServiceState
	deployments   []controller.Deployment // oldest first
	audit         []controller.AuditEntry // in append order
	deliveries    map[string]string       // key -> deployment id
	notifications []schema1Note           // in the order added
}

type schema1Note struct {
	targets []string
	n       controller.Notification
}

// schema1Contents covers every field of every record kind, every
// deployment and step status, and optional fields both set and empty.
func schema1Contents() schema1Data {
	at := func(s int) time.Time { return schema1Clock.Add(time.Duration(s) * time.Second) }
	step := func(name string, st controller.StepStatus, s int, done bool) controller.Step {
		x := controller.Step{Name: name, Status: st, StartedAt: at(s), Message: name + " " + st.String()}
		if done {
			x.FinishedAt = ptr(at(s + 1))
		}
		return x
	}
	var ds []controller.Deployment
	statuses := []controller.Status{
		controller.StatusSucceeded, controller.StatusFailed, controller.StatusInterrupted,
		controller.StatusCancelled, controller.StatusRolledBack, controller.StatusQueued, controller.StatusRunning,
	}
	for i, st := range statuses {
		d := controller.Deployment{
			ID:        "20250601T120000.00000" + string(rune('0'+i)) + "Z-abc12" + string(rune('0'+i)),
			Service:   "shop",
			Kind:      controller.KindDeploy,
			Image:     "shop:v" + string(rune('1'+i)),
			FromColor: controller.Blue,
			ToColor:   controller.Green,
			Status:    st,
			Trigger:   controller.Trigger{Source: "api", Actor: "ops", Commit: "9fceb02"},
			CreatedAt: at(10 * i),
		}
		if st.Done() {
			d.FinishedAt = ptr(at(10*i + 9))
		}
		switch st {
		case controller.StatusSucceeded:
			d.FromColor = controller.NoColor
			d.ToColor = controller.Blue
			d.Steps = []controller.Step{
				step(controller.StepPull, controller.StepSucceeded, 0, true),
				step(controller.StepCleanup, controller.StepSkipped, 1, true),
				{Name: controller.StepPreDeploy, Status: controller.StepSucceeded, StartedAt: at(2), FinishedAt: ptr(at(3)),
					Message: "exit 0", Output: "Applying shop.0002... OK\nline two\n"},
				step(controller.StepSwitch, controller.StepSucceeded, 4, true),
			}
		case controller.StatusFailed:
			d.Error = "health: 502 from /health"
			d.Trigger = controller.Trigger{Source: "webhook", Actor: "webhook:d-42", Commit: "abc1234",
				Ref: "refs/heads/main", Delivery: "d-42"}
			d.Steps = []controller.Step{step(controller.StepHealth, controller.StepFailed, 11, true)}
		case controller.StatusRolledBack:
			d.Kind = controller.KindRollback
			d.FromColor, d.ToColor = controller.Green, controller.Blue
			d.Trigger = controller.Trigger{Source: controller.SourceWatchdog, Actor: controller.SourceWatchdog}
			d.Steps = []controller.Step{}
		case controller.StatusRunning:
			d.Service = "cart"
			d.Steps = []controller.Step{step(controller.StepStart, controller.StepRunning, 61, false)}
		}
		ds = append(ds, d)
	}
	return schema1Data{
		services: []controller.ServiceState{
			{Name: "cart", ActiveColor: controller.Blue, ActiveImage: "cart:v1", UpdatedAt: at(1)},
			{Name: "shop", ActiveColor: controller.Green, ActiveImage: "shop:v2", StandbyColor: controller.Blue,
				StandbyImage: "shop:v1", ActiveDeployment: ds[1].ID, StandbyDeployment: ds[0].ID, UpdatedAt: at(2)},
		},
		deployments: ds,
		audit: []controller.AuditEntry{
			{Time: at(3), Actor: "ops", Action: "deploy", Target: "shop", Address: "10.0.0.7", Result: "ok",
				Status: 202, DeploymentID: ds[1].ID, RequestID: "req-1"},
			{Time: at(4), Actor: "anonymous", Action: "rollback", Target: "cart", Address: "::1", Result: "unauthorized", Status: 401},
			{ID: "chosen-id", Time: at(5), Actor: "webhook:d-42", Action: "webhook", Target: "shop", Address: "192.0.2.1",
				Result: "conflict", Status: 409, DeploymentID: ds[1].ID},
		},
		deliveries: map[string]string{"d-42": ds[1].ID, "0f9e-delivery": ds[0].ID},
		notifications: []schema1Note{
			{[]string{"chat", "pager"}, controller.Notification{Kind: controller.NotifyDeployFailed, Service: "shop",
				Deployment: ds[1].ID, Image: "shop:v2", Color: controller.Green, Actor: "ops", Message: "health: 502", Time: at(6)}},
			{[]string{"chat"}, controller.Notification{Kind: controller.NotifyRepair, Service: "cart", Message: "upstream rewritten", Time: at(7)}},
		},
	}
}

// copySchema1 copies the fixture to a temporary file, so that opening it
// (which stamps meta pages) leaves the committed file as it is.
func copySchema1(t *testing.T) string {
	t.Helper()
	src, err := os.Open(schema1File)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Close() }()
	path := filepath.Join(t.TempDir(), "deployd.db")
	dst, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpen_Schema1FileReadsEveryRecord(t *testing.T) {
	want := schema1Contents()
	s, err := Open(t.Context(), Options{Path: copySchema1(t), Now: func() time.Time { return schema1Clock.Add(time.Hour) }})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ctx := t.Context()

	for _, w := range want.services {
		got, err := s.GetService(ctx, w.Name)
		if err != nil || got != w {
			t.Errorf("GetService(%s) = %+v, %v; want %+v", w.Name, got, err, w)
		}
	}
	for _, w := range want.deployments {
		got, err := s.GetDeployment(ctx, w.ID)
		if err != nil || !reflect.DeepEqual(got, w) {
			t.Errorf("GetDeployment(%s) =\n%+v, %v\nwant\n%+v", w.ID, got, err, w)
		}
	}
	var shop []controller.Deployment
	for i := len(want.deployments) - 1; i >= 0; i-- {
		if d := want.deployments[i]; d.Service == "shop" {
			shop = append(shop, d)
		}
	}
	if got, err := s.ListDeployments(ctx, "shop", 100); err != nil || !reflect.DeepEqual(got, shop) {
		t.Errorf("ListDeployments(shop) = %d deployments, %v; want %d newest first", len(got), err, len(shop))
	}
	if got, err := s.ListDeployments(ctx, "", 100); err != nil || len(got) != len(want.deployments) {
		t.Errorf("ListDeployments() = %d deployments, %v; want %d", len(got), err, len(want.deployments))
	}
	unfinished := []controller.Deployment{want.deployments[5], want.deployments[6]}
	if got, err := s.UnfinishedDeployments(ctx); err != nil || !reflect.DeepEqual(got, unfinished) {
		t.Errorf("UnfinishedDeployments = %+v, %v; want the queued and the running one", got, err)
	}

	audit, err := s.ListAudit(ctx, "", 100)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(audit) != len(want.audit) {
		t.Fatalf("ListAudit = %d entries, want %d", len(audit), len(want.audit))
	}
	for i, w := range want.audit {
		if w.ID == "" {
			w.ID = "00000000000000" + string(rune('0'+(i+1)/10)) + string(rune('0'+(i+1)%10))
		}
		if got := audit[len(audit)-1-i]; got != w {
			t.Errorf("audit entry %d = %+v, want %+v", i, got, w)
		}
	}

	for key, id := range want.deliveries {
		if got, err := s.GetDelivery(ctx, key); err != nil || got != id {
			t.Errorf("GetDelivery(%s) = %q, %v; want %q", key, got, err, id)
		}
	}

	pending, err := s.PendingNotifications(ctx)
	if err != nil {
		t.Fatalf("PendingNotifications: %v", err)
	}
	wantPending := map[string]map[string]controller.Notification{}
	for i, n := range want.notifications {
		id := "000000000000000" + string(rune('1'+i))
		for _, target := range n.targets {
			if wantPending[target] == nil {
				wantPending[target] = map[string]controller.Notification{}
			}
			wantPending[target][id] = n.n
		}
	}
	if !reflect.DeepEqual(pending, wantPending) {
		t.Errorf("PendingNotifications =\n%+v\nwant\n%+v", pending, wantPending)
	}
}

// An older deployd must be able to read what this one writes: every record
// of the schema 1 file, read into the controller's types and written back,
// gives the bytes older code wrote.
func TestRecords_WriteSchema1BytesBack(t *testing.T) {
	roundTrip := map[string]func(k string, v []byte) (any, error){
		bucketServices: func(k string, v []byte) (any, error) {
			st, err := decodeService(k, v)
			return newServiceV1(st), err
		},
		bucketDeployments: func(k string, v []byte) (any, error) {
			d, err := decodeDeployment(k, v)
			return newDeploymentV1(d), err
		},
		bucketAudit: func(k string, v []byte) (any, error) {
			e, err := decodeAudit(k, v)
			return newAuditV1(e), err
		},
		bucketDeliveries: func(_ string, v []byte) (any, error) {
			var r deliveryV1
			return r, json.Unmarshal(v, &r)
		},
		bucketOutbox: func(_ string, v []byte) (any, error) {
			var r pendingV1
			err := json.Unmarshal(v, &r)
			return pendingV1{Notification: newNotificationV1(r.Notification.notification()), AddedAt: r.AddedAt}, err
		},
	}
	db, err := bolt.Open(schema1File, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	defer func() { _ = db.Close() }() // read only
	counts := map[string]int{}
	check := func(bucket string, k, v []byte) error {
		r, err := roundTrip[bucket](string(k), v)
		if err != nil {
			return err
		}
		got, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, v) {
			t.Errorf("%s %s written back as\n%s\nschema 1 wrote\n%s", bucket, k, got, v)
		}
		counts[bucket]++
		return nil
	}
	err = db.View(func(tx *bolt.Tx) error {
		for bucket := range roundTrip {
			b := tx.Bucket([]byte(bucket))
			err := b.ForEach(func(k, v []byte) error {
				if v != nil {
					return check(bucket, k, v)
				}
				// The outbox nests one bucket per target.
				return b.Bucket(k).ForEach(func(id, v []byte) error { return check(bucket, id, v) })
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", schema1File, err)
	}
	want := schema1Contents()
	wantCounts := map[string]int{
		bucketServices: len(want.services), bucketDeployments: len(want.deployments), bucketAudit: len(want.audit),
		bucketDeliveries: len(want.deliveries), bucketOutbox: 3,
	}
	if !reflect.DeepEqual(counts, wantCounts) {
		t.Errorf("records compared per bucket = %v, want %v", counts, wantCounts)
	}
}

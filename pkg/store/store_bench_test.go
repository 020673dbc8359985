package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/deployd/deployd/pkg/controller"
)

// newBenchStore is newStore for benchmarks: a fresh file under b.TempDir().
func newBenchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(b.Context(), Options{Path: filepath.Join(b.TempDir(), "data", "deployd.db")})
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	b.Cleanup(func() {
		if err := s.Close(); err != nil {
			b.Errorf("Close: %v", err)
		}
	})
	return s
}

// benchDeployment is fullDeployment with the eight steps of a finished
// deploy, under an id that sorts by i as real ids sort by time.
func benchDeployment(i int, service string) controller.Deployment {
	d := fullDeployment()
	d.ID = fmt.Sprintf("01JPD%021d", i)
	d.Service = service
	d.Status = controller.StatusSucceeded
	d.Error = ""
	d.CreatedAt = t0.Add(time.Duration(i) * time.Minute)
	d.Steps = nil
	for j, name := range []string{
		controller.StepPull, controller.StepCleanup, controller.StepPreDeploy, controller.StepStart,
		controller.StepHealth, controller.StepSwitch, controller.StepRecord, controller.StepStandby,
	} {
		start := d.CreatedAt.Add(time.Duration(j) * time.Second)
		st := controller.Step{Name: name, Status: controller.StepSucceeded, StartedAt: start, FinishedAt: ptr(start.Add(time.Second)), Message: "ok"}
		if name == controller.StepPreDeploy {
			st.Output = "Operations to perform:\n  Apply all migrations: app\nRunning migrations:\n  Applying app.0007_order_note... OK\n"
		}
		d.Steps = append(d.Steps, st)
	}
	return d
}

// seedBench stores n deployments in one transaction, every tenth of
// service "cart" and the rest of "shop".
func seedBench(b *testing.B, s *Store, n int) {
	b.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		for i := range n {
			svc := "shop"
			if i%10 == 0 {
				svc = "cart"
			}
			if err := putDeployment(tx, benchDeployment(i, svc)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatalf("seed: %v", err)
	}
}

// BenchmarkPutDeployment is one step update of a running deploy: a
// transaction with its fsync, on a store already holding 1000 deployments.
func BenchmarkPutDeployment(b *testing.B) {
	s := newBenchStore(b)
	seedBench(b, s, 1000)
	ctx := context.Background()
	d := benchDeployment(1000, "shop")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.PutDeployment(ctx, d); err != nil {
			b.Fatalf("PutDeployment: %v", err)
		}
	}
}

func BenchmarkGetDeployment(b *testing.B) {
	s := newBenchStore(b)
	seedBench(b, s, 1000)
	ctx := context.Background()
	id := benchDeployment(500, "").ID
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.GetDeployment(ctx, id); err != nil {
			b.Fatalf("GetDeployment: %v", err)
		}
	}
}

// BenchmarkListDeployments lists 20 of 1000: all services, the common one,
// the one with a tenth of the records (the scan reads ten times as many),
// and one with none (the scan reads every record).
func BenchmarkListDeployments(b *testing.B) {
	s := newBenchStore(b)
	seedBench(b, s, 1000)
	ctx := context.Background()
	for _, tc := range []struct {
		name, service string
		want          int
	}{
		{"all", "", 20},
		{"service=shop", "shop", 20},
		{"service=cart", "cart", 20},
		{"service=none", "none", 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ds, err := s.ListDeployments(ctx, tc.service, 20)
				if err != nil {
					b.Fatalf("ListDeployments: %v", err)
				}
				if len(ds) != tc.want {
					b.Fatalf("len = %d, want %d", len(ds), tc.want)
				}
			}
		})
	}
}

// BenchmarkSaveSwitch is the transaction at the moment traffic moves:
// service state and deployment together.
func BenchmarkSaveSwitch(b *testing.B) {
	s := newBenchStore(b)
	seedBench(b, s, 1000)
	ctx := context.Background()
	d := benchDeployment(1000, "shop")
	st := controller.ServiceState{
		Name: "shop", ActiveColor: controller.Green, ActiveImage: "shop:v2", StandbyColor: controller.Blue, StandbyImage: "shop:v1",
		ActiveDeployment: d.ID, StandbyDeployment: benchDeployment(990, "shop").ID, UpdatedAt: t0,
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.SaveSwitch(ctx, st, d); err != nil {
			b.Fatalf("SaveSwitch: %v", err)
		}
	}
}

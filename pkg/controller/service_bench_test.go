package controller_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// benchDeployment is a finished deploy of svc with the eight steps a real
// one records, pre-deploy output included.
func benchDeployment(i int) controller.Deployment {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	at := func(s int) *time.Time { t := created.Add(time.Duration(s) * time.Second); return &t }
	d := controller.Deployment{
		ID: fmt.Sprintf("01JPD%021d", i), Service: svc, Kind: controller.KindDeploy, Image: fmt.Sprintf("demoapp:v%d", i),
		FromColor: controller.Blue, ToColor: controller.Green, Status: controller.StatusSucceeded,
		Trigger:   controller.Trigger{Source: "webhook", Actor: "ci-deployer", Commit: "9fceb02d0ae598e95dc970b74767f19372d61af8"},
		CreatedAt: created, FinishedAt: at(9),
	}
	for j, name := range []string{
		controller.StepPull, controller.StepCleanup, controller.StepPreDeploy, controller.StepStart,
		controller.StepHealth, controller.StepSwitch, controller.StepRecord, controller.StepStandby,
	} {
		st := controller.Step{Name: name, Status: controller.StepSucceeded, StartedAt: *at(j), FinishedAt: at(j + 1), Message: "ok"}
		if name == controller.StepPreDeploy {
			st.Output = "Operations to perform:\n  Apply all migrations: app\nRunning migrations:\n  Applying app.0007_order_note... OK\n"
		}
		d.Steps = append(d.Steps, st)
	}
	return d
}

// newBenchController is a Controller over fakes holding what a service
// looks like between deploys: green active and blue a warm standby, two
// replicas each, and ten past deployments.
func newBenchController(b *testing.B) (*controller.Controller, *memStore) {
	b.Helper()
	return newBenchControllerWith(b, nil)
}

// newBenchControllerWith is newBenchController with opts applied to its
// options.
func newBenchControllerWith(b *testing.B, opts func(*controller.Options)) (*controller.Controller, *memStore) {
	b.Helper()
	rt := newFakeRuntime("demoapp:v9", "demoapp:v10")
	store := newMemStore()
	for i := 1; i <= 10; i++ {
		d := benchDeployment(i)
		store.deployments[d.ID] = d
	}
	active, standby := benchDeployment(10), benchDeployment(9)
	store.services[svc] = controller.ServiceState{
		Name: svc, ActiveColor: controller.Green, ActiveImage: active.Image, StandbyColor: controller.Blue, StandbyImage: standby.Image,
		ActiveDeployment: active.ID, StandbyDeployment: standby.ID, UpdatedAt: *active.FinishedAt,
	}
	for i := 1; i <= 2; i++ {
		rt.add(svc, controller.Green, i, active.Image, active.ID, true)
		rt.add(svc, controller.Blue, i, standby.Image, standby.ID, true)
	}
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	o := controller.Options{
		Services: []controller.ServiceSpec{baseSpec()},
		Runtime:  rt, Router: newFakeRouter(), Prober: newFakeProber(rt), Store: store, Logger: logger,
	}
	if opts != nil {
		opts(&o)
	}
	c := controller.New(o)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			b.Errorf("Close: %v", err)
		}
	})
	return c, store
}

// BenchmarkServiceView is the status endpoint's work in the controller:
// state, containers and the active and last deployments joined. The fake
// store's own cost (cloning, sorting ten records) is included; the real
// store is benchmarked in its package.
func BenchmarkServiceView(b *testing.B) {
	c, _ := newBenchController(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		v, err := c.Service(ctx, svc)
		if err != nil {
			b.Fatalf("Service: %v", err)
		}
		if got := len(v.Colors[controller.Blue].Containers) + len(v.Colors[controller.Green].Containers); got != 4 {
			b.Fatalf("containers = %d, want 4", got)
		}
	}
}

// BenchmarkEventsFromRecord reads the stream of a deployment this process
// did not run (or forgot), which is rebuilt from its stored record on
// every call.
func BenchmarkEventsFromRecord(b *testing.B) {
	c, _ := newBenchController(b)
	ctx := context.Background()
	id := benchDeployment(5).ID
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		evs, _, done, err := c.Events(ctx, id, 0)
		if err != nil {
			b.Fatalf("Events: %v", err)
		}
		if !done || len(evs) == 0 {
			b.Fatalf("events = %d, done = %v; want some and done", len(evs), done)
		}
	}
}

// BenchmarkServiceViewFromMemory is BenchmarkServiceView with the container
// feed followed, while a deploy's worth of events (one a millisecond, more than any deploy makes) keeps
// the view being listed again beside the requests: each request reads the
// view and makes no runtime call. It reports the p99 of one request.
func BenchmarkServiceViewFromMemory(b *testing.B) {
	c, _ := newBenchControllerWith(b, func(o *controller.Options) { o.Containers = benchFeed{} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.FollowContainers(ctx)
	}()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	for {
		if _, err := c.Service(ctx, svc); err == nil {
			break
		}
	}
	took := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		v, err := c.Service(ctx, svc)
		took = append(took, time.Since(start))
		if err != nil {
			b.Fatalf("Service: %v", err)
		}
		if got := len(v.Colors[controller.Blue].Containers) + len(v.Colors[controller.Green].Containers); got != 4 {
			b.Fatalf("containers = %d, want 4", got)
		}
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[(len(took)-1)*99/100].Microseconds()), "p99-µs")
}

// benchFeed reports a change of svc every millisecond.
type benchFeed struct{}

func (benchFeed) FollowContainers(ctx context.Context, since time.Time, fn func(service string)) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			fn(svc)
		}
	}
}

package nginxconf

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// benchAddrs returns n distinct container addresses, as a service with n
// replicas on the deployd network would have.
func benchAddrs(n, base int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("172.18.0.%d:8000", base+i)
	}
	return addrs
}

// newBenchRouter is newTestRouter for benchmarks: a Router on a temp dir
// and fake driver, logging nowhere so the log's cost is only formatting.
func newBenchRouter(b *testing.B, d Driver) *Router {
	b.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	r, err := New(Options{Dir: filepath.Join(b.TempDir(), "upstreams"), Driver: d, Logger: log,
		ReloadConfirmTimeout: time.Second, pollInterval: time.Millisecond})
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	return r
}

func BenchmarkRender(b *testing.B) {
	tmpl := DefaultTemplate()
	for _, n := range []int{2, 10} {
		addrs := benchAddrs(n, 2)
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Render(tmpl, "web", addrs); err != nil {
					b.Fatalf("Render: %v", err)
				}
			}
		})
	}
}

// BenchmarkSwitchUnchanged is the path a rollback or a repeated deploy
// takes when nginx already points at the right replicas: read, compare,
// return without a reload.
func BenchmarkSwitchUnchanged(b *testing.B) {
	ng := newFakeNginx()
	r := newBenchRouter(b, ng)
	ctx := context.Background()
	addrs := benchAddrs(2, 2)
	if err := r.Switch(ctx, "web", controller.NoColor, addrs); err != nil {
		b.Fatalf("first Switch: %v", err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := r.Switch(ctx, "web", controller.NoColor, addrs); err != nil {
			b.Fatalf("Switch: %v", err)
		}
	}
	b.StopTimer()
	if _, reloads := ng.counts(); reloads != 1 {
		b.Fatalf("reloads = %d, want 1 (only the first switch)", reloads)
	}
}

// BenchmarkSwitch alternates between the two colors' replicas, so every
// iteration writes the file durably, tests, reloads and confirms. The fake
// driver answers at once: what remains is deployd's own cost, dominated by
// the fsyncs of the atomic write.
func BenchmarkSwitch(b *testing.B) {
	ng := newFakeNginx()
	r := newBenchRouter(b, ng)
	ctx := context.Background()
	colors := [2][]string{benchAddrs(2, 2), benchAddrs(2, 12)}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if err := r.Switch(ctx, "web", controller.NoColor, colors[i%2]); err != nil {
			b.Fatalf("Switch: %v", err)
		}
		i++
	}
	b.StopTimer()
	if _, reloads := ng.counts(); reloads != i {
		b.Fatalf("reloads = %d, want %d", reloads, i)
	}
}

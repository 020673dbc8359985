package trafficswitch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkSwitch_Forward sends small GETs over one keep-alive client
// connection, straight to a replica, through a bare httputil.ReverseProxy
// and through the switch. The difference between direct and switch is
// what the switch adds, and between reverseproxy and switch what the
// switch adds to the standard library's proxy hop: ns/op and allocs/op
// (all in-process: client, switch and replica), and the p50 of each
// request's round trip (p50-µs), the "added latency p50", and
// the process's CPU time per request (cpu-µs/op: client, switch and
// replica together, so the switch's share is its difference to direct).
func BenchmarkSwitch_Forward(b *testing.B) {
	replica, sw := benchSwitch(b)

	target, _ := url.Parse(replica.URL)
	bare := httputil.NewSingleHostReverseProxy(target)
	bare.Transport = newTransport(sw.opts)
	plain := httptest.NewServer(bare)
	defer plain.Close()

	for _, bb := range []struct{ name, url string }{
		{"direct", replica.URL + "/"},
		{"reverseproxy", plain.URL + "/"},
		{"switch", "http://" + sw.Addr("web").String() + "/"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			req, _ := http.NewRequest(http.MethodGet, bb.url, nil)
			get := func() {
				res, err := client.Do(req)
				if err != nil {
					b.Fatalf("GET: %v", err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
			get() // open the connections outside the measurement
			took := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			for range b.N {
				start := time.Now()
				get()
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			if cpu > 0 {
				b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}

// BenchmarkSwitch_ForwardParallel is BenchmarkSwitch_Forward with 16
// keep-alive clients at once, as the full benchmark drives the switch:
// what counts there is CPU time per request (cpu-µs/op) more than
// latency, and any contention between requests on the switch's shared
// counters shows here.
func BenchmarkSwitch_ForwardParallel(b *testing.B) {
	replica, sw := benchSwitch(b)

	const clients = 16
	for _, bb := range []struct{ name, url string }{
		{"direct", replica.URL + "/"},
		{"switch", "http://" + sw.Addr("web").String() + "/"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			get := func(req *http.Request) error {
				res, err := client.Do(req)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				if res.StatusCode != http.StatusOK {
					return fmt.Errorf("status %d", res.StatusCode)
				}
				return nil
			}
			b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest(http.MethodGet, bb.url, nil)
				for pb.Next() {
					if err := get(req); err != nil {
						b.Errorf("GET: %v", err)
						return
					}
				}
			})
			b.StopTimer()
			if cpu > 0 {
				b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
			}
		})
	}
}

// benchSwitch starts a replica answering "ok" and a Switch sending service
// web to it; both stop when the benchmark ends.
func benchSwitch(b *testing.B) (*httptest.Server, *Switch) {
	b.Helper()
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	b.Cleanup(replica.Close)
	sw, err := New(Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	b.Cleanup(func() { _ = sw.Close(context.Background()) })
	if err := sw.Listen(context.Background(), "web", "127.0.0.1:0"); err != nil {
		b.Fatalf("Listen: %v", err)
	}
	if err := sw.SetTargets("web", "blue", []string{replica.Listener.Addr().String()}); err != nil {
		b.Fatalf("SetTargets: %v", err)
	}
	return replica, sw
}

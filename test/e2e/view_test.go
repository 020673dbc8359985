package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/deployd/deployd/api"
)

// stateInAPI returns the state GET /api/v1/services/{name} shows for the
// container named name, "" when it shows none.
func stateInAPI(sv api.Service, name string) string {
	for _, cv := range []api.ColorView{sv.Colors.Blue, sv.Colors.Green} {
		for _, c := range append(cv.Containers, cv.Others...) {
			if c.Name == name {
				return c.State
			}
		}
	}
	return ""
}

func TestServiceView_AContainerKilledByHandShowsWithinASecond(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1")
	cfg := defaultSvc()
	cfg.Restart = "no" // a killed container stays dead
	// Nothing but the view is to react to the kill.
	cfg.IgnoreExits = true
	d := e.startDaemon("first", e.writeConfig("deployd.yml", cfg))
	v1 := d.mustSucceed("v1")
	cs := e.colorContainers(string(v1.ToColor))
	if len(cs) == 0 {
		t.Fatalf("no %s containers after v1", v1.ToColor)
	}
	name := cs[0].Name
	if got := stateInAPI(d.service(), name); got != "running" {
		t.Fatalf("API state of %s before the kill = %q, want running", name, got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	if err := e.cli.ContainerKill(ctx, name, "SIGKILL"); err != nil {
		t.Fatalf("kill %s: %v", name, err)
	}
	killed := time.Now()
	eventually(t, time.Second, "the API to show the kill", func() error {
		if got := stateInAPI(d.service(), name); got != "exited" {
			return fmt.Errorf("state of %s = %q, want exited", name, got)
		}
		return nil
	})
	t.Logf("the API showed %s exited %s after docker kill returned", name, time.Since(killed).Round(time.Millisecond))
}

// TestServiceView_LatencyWhileDeploysRun measures GET
// /api/v1/services/{name} from two clients while deploys run back to back
// and reports its percentiles (the goal: p99 under 5 ms).
func TestServiceView_LatencyWhileDeploysRun(t *testing.T) {
	e := newEnv(t, "v1", "v2")
	cfg := defaultSvc()
	cfg.Replicas = 2
	d := e.startDaemon("first", e.writeConfig("deployd.yml", cfg))
	d.mustSucceed("v1")

	stop := make(chan struct{})
	var (
		mu   sync.Mutex
		took []time.Duration
		wg   sync.WaitGroup
	)
	for range 2 {
		wg.Go(func() {
			// A plain client: the contract check of d.Client() would be
			// timed with the answer. d.service() checks the same answer.
			client := &http.Client{Timeout: apiTimeout}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, err := http.NewRequest(http.MethodGet, d.url+"/api/v1/services/"+e.svc, nil)
				if err != nil {
					t.Errorf("request: %v", err)
					return
				}
				req.Header.Set("Authorization", "Bearer "+e.token)
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("GET service: %v", err)
					return
				}
				// The whole answer, and the connection back in the pool,
				// as a dashboard polling the API keeps it.
				_, err = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				el := time.Since(start)
				if err != nil {
					t.Errorf("read GET service: %v", err)
					return
				}
				if resp.StatusCode != http.StatusOK {
					t.Errorf("GET service = %d, want 200", resp.StatusCode)
					return
				}
				mu.Lock()
				took = append(took, el)
				mu.Unlock()
			}
		})
	}
	for _, image := range []string{"v2", "v1", "v2"} {
		d.mustSucceed(image)
	}
	close(stop)
	wg.Wait()
	_ = d.service()

	slices.Sort(took)
	if len(took) < 100 {
		t.Fatalf("only %d requests during the deploys", len(took))
	}
	pct := func(p float64) time.Duration { return took[int(float64(len(took)-1)*p)] }
	t.Logf("GET service while 3 deploys ran: n=%d p50=%s p99=%s max=%s (race=%v)",
		len(took), pct(0.50), pct(0.99), took[len(took)-1], raceEnabled)
}

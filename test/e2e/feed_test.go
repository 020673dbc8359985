package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// feedEvent is one event of GET /api/v1/events and when the test read it.
type feedEvent struct {
	id, name string
	data     map[string]any
	at       time.Time
}

func (e feedEvent) str(key string) string {
	s, _ := e.data[key].(string)
	return s
}

// openFeed follows GET /api/v1/events with token until the test ends.
// Events arrive on the returned channel as they are read.
func (d *daemon) openFeed(token string) <-chan feedEvent {
	t := d.e.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"/api/v1/events", nil)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := d.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /api/v1/events: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		t.Fatalf("GET /api/v1/events: status = %d, want 200", resp.StatusCode)
	}
	out := make(chan feedEvent, 4096)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(out)
		defer resp.Body.Close()
		var cur feedEvent
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 4096), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.name != "" {
					cur.at = time.Now()
					out <- cur
				}
				cur = feedEvent{}
			case strings.HasPrefix(line, "id: "):
				cur.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				cur.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.data); err != nil {
					t.Errorf("event data %q: %v", line, err)
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return out
}

// nextFeed returns the first event from evs for which match is true,
// failing the test when none arrives within timeout.
func nextFeed(t *testing.T, evs <-chan feedEvent, timeout time.Duration, what string, match func(feedEvent) bool) feedEvent {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatalf("the event stream ended while waiting for %s", what)
			}
			if match(ev) {
				return ev
			}
		case <-deadline.C:
			t.Fatalf("no %s within %s", what, timeout)
		}
	}
}

func TestSystemEvents_ShowADeployFromTheAPIAndAContainerKilledByHand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1")
	cfg := defaultSvc()
	cfg.Restart = "no" // a killed container stays dead
	// Nothing but the container view is to react to the kill.
	cfg.IgnoreExits = true
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))

	evs := d.openFeed(e.viewer)
	hello := nextFeed(t, evs, apiTimeout, "hello", func(ev feedEvent) bool { return true })
	if hello.name != "hello" || hello.data["resumed"] != false || hello.id == "" {
		t.Fatalf("first event = %+v, want hello, not resumed, with an id", hello)
	}

	asked := time.Now()
	dep := d.deploy("v1")
	queued := nextFeed(t, evs, 5*time.Second, "queued event", func(ev feedEvent) bool {
		return ev.name == "deployment" && ev.str("deployment") == dep.ID && ev.str("status") == "queued"
	})
	elapsedUnder(t, "queued event after the deploy request", queued.at.Sub(asked), time.Second)
	if queued.str("service") != e.svc || queued.str("kind") != "deploy" || queued.str("actor") == "" {
		t.Errorf("queued event = %v, want service %s, kind deploy and the actor", queued.data, e.svc)
	}
	nextFeed(t, evs, deploymentTimeout, "succeeded event", func(ev feedEvent) bool {
		if ev.name == "deployment" && ev.str("deployment") == dep.ID && ev.str("status") != "running" && ev.str("status") != "queued" {
			if ev.str("status") != "succeeded" {
				t.Fatalf("deployment %s ended %s: %s", dep.ID, ev.str("status"), ev.str("message"))
			}
			return true
		}
		return false
	})

	cs := e.colorContainers(string(dep.ToColor))
	if len(cs) == 0 {
		t.Fatalf("no %s containers after the deploy", dep.ToColor)
	}
	name := cs[0].Name
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	// Taken before the kill: its event may reach the stream before the
	// kill call returns.
	killed := time.Now()
	if err := e.cli.ContainerKill(ctx, name, "SIGKILL"); err != nil {
		t.Fatalf("kill %s: %v", name, err)
	}
	// The deploy's own container changes may still be on their way: the
	// one wanted is the first after which the service shows the kill.
	ev := nextFeed(t, evs, 5*time.Second, "containers event showing the kill", func(ev feedEvent) bool {
		return ev.name == "containers" && ev.str("service") == e.svc && ev.at.After(killed) &&
			stateInAPI(d.service(), name) == "exited"
	})
	elapsedUnder(t, "containers event after docker kill", ev.at.Sub(killed), time.Second)
	t.Logf("queued event %s after the request, containers event %s after the kill",
		queued.at.Sub(asked).Round(time.Millisecond), ev.at.Sub(killed).Round(time.Millisecond))
}

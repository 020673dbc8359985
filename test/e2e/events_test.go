package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

// received is one server-sent event and when the test read it.
type received struct {
	id, typ string
	ev      api.Event
	at      time.Time
}

// readEvents follows GET /api/v1/deployments/{id}/events with token until
// the server ends the stream, and returns what it sent. It fails the test
// when the stream does not end within deploymentTimeout.
func (d *daemon) readEvents(id, token string) []received {
	t := d.e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deploymentTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"/api/v1/deployments/"+id+"/events", nil)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := d.Client().Do(req)
	if err != nil {
		t.Fatalf("GET events: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET events: status = %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("GET events: Content-Type = %q, want text/event-stream", ct)
	}

	var out []received
	var cur received
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.typ != "" {
				cur.at = time.Now()
				out = append(out, cur)
			}
			cur = received{}
		case strings.HasPrefix(line, ":"):
			// a heartbeat
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.ev); err != nil {
				t.Fatalf("event data %q: %v", line, err)
			}
		default:
			t.Fatalf("unexpected stream line %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read events (the stream did not end by itself?): %v; got %d events", err, len(out))
	}
	return out
}

func TestEvents_SSEStreamsLiveDeploy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v2-slow")
	d := e.startDaemon("main", e.writeConfig("deployd.yml", defaultSvc()))

	dep := d.deploy("v2-slow")
	evs := d.readEvents(dep.ID, e.viewer)
	final := d.deployment(dep.ID)
	if final.Status != controller.StatusSucceeded {
		t.Fatalf("deployment status = %s (%s), want succeeded", final.Status, final.Error)
	}
	if len(evs) == 0 {
		t.Fatal("no events")
	}

	prev := 0
	var stepsStarted []string
	ended := map[string]string{}
	var healthLogs []string
	var healthStarted time.Time
	for _, r := range evs {
		if r.id != strconv.Itoa(r.ev.Seq) || r.typ != r.ev.Type {
			t.Fatalf("event id %q type %q, want its data's seq %d and type %q", r.id, r.typ, r.ev.Seq, r.ev.Type)
		}
		if r.ev.Seq <= prev {
			t.Fatalf("event seq %d after %d, want increasing", r.ev.Seq, prev)
		}
		prev = r.ev.Seq
		switch r.ev.Type {
		case controller.EventStep:
			if r.ev.Status == controller.StepRunning.String() {
				stepsStarted = append(stepsStarted, r.ev.Step)
				if r.ev.Step == controller.StepHealth {
					healthStarted = r.at
				}
			} else {
				ended[r.ev.Step] = r.ev.Status
			}
		case controller.EventLog:
			if r.ev.Step == controller.StepHealth {
				healthLogs = append(healthLogs, r.ev.Message)
			}
		}
	}

	// The steps streamed are the steps recorded, in the same order, each
	// with its end.
	var recorded []string
	for _, s := range final.Steps {
		recorded = append(recorded, s.Name)
		if got := ended[s.Name]; got != s.Status.String() {
			t.Errorf("step %s: streamed end %q, want the recorded %q", s.Name, got, s.Status)
		}
	}
	if strings.Join(stepsStarted, ",") != strings.Join(recorded, ",") {
		t.Fatalf("steps streamed = %v, want the recorded %v", stepsStarted, recorded)
	}
	for _, want := range []string{controller.StepPull, controller.StepStart, controller.StepHealth, controller.StepSwitch} {
		if !strings.Contains(","+strings.Join(recorded, ",")+",", ","+want+",") {
			t.Fatalf("recorded steps = %v, want %s among them", recorded, want)
		}
	}

	// The app starts slowly: the stream shows the probes failing, then
	// passing.
	joined := strings.Join(healthLogs, "\n")
	if !strings.Contains(joined, "not healthy") || !strings.Contains(joined, "healthy (2/2)") {
		t.Fatalf("health log lines = %q, want failing probes then healthy (2/2)", healthLogs)
	}

	first, last := evs[0], evs[len(evs)-1]
	if first.ev.Type != controller.EventStatus || first.ev.Status != controller.StatusQueued.String() {
		t.Fatalf("first event = %+v, want status queued", first.ev)
	}
	if last.ev.Type != controller.EventStatus || last.ev.Status != controller.StatusSucceeded.String() {
		t.Fatalf("last event = %+v, want status succeeded", last.ev)
	}
	// Live, not replayed at the end: the health step's start reached the
	// client while the app was still sleeping through its startup delay.
	if healthStarted.IsZero() || last.at.Sub(healthStarted) < 2*time.Second {
		t.Fatalf("health step start read %s before the final status, want at least 2s (streamed live)", last.at.Sub(healthStarted))
	}
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/controller"
)

// longAnswer is what a long request through nginx got, and when.
type longAnswer struct {
	status int
	app    appAnswer
	at     time.Time
	err    error
}

// startLongRequest sends GET /sleep?ms= through nginx, whose answer comes
// after d; the channel gets the answer. The request ends with the test.
func (e *env) startLongRequest(d time.Duration) <-chan longAnswer {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	out := make(chan longAnswer, 1)
	var wg sync.WaitGroup
	e.t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		var a longAnswer
		defer func() { out <- a }()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/sleep?ms=%d", e.ng.URL, d.Milliseconds()), nil)
		if err != nil {
			a.err = err
			return
		}
		res, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
		if err != nil {
			a.err = err
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		a.status, a.at, a.err = res.StatusCode, time.Now(), err
		if err == nil && res.StatusCode == http.StatusOK {
			a.err = json.Unmarshal(b, &a.app)
		}
	}()
	return out
}

// waitInFlight waits until the traffic switch counts a request in flight
// on color.
func (d *daemon) waitInFlight(color string) {
	d.e.t.Helper()
	eventually(d.e.t, faultTimeout, "a request in flight on "+color, func() error {
		n, err := d.metricValue("deployd_switch_in_flight_requests", `color="`+color+`"`, `service="`+d.e.svc+`"`)
		if err != nil {
			return err
		}
		if n < 1 {
			return fmt.Errorf("in flight on %s: %v", color, n)
		}
		return nil
	})
}

// postLoad counts what keep-alive clients sending POSTs got.
type postLoad struct {
	mu       sync.Mutex
	ok       int
	failed   int
	firstErr error
	versions map[string]int
}

func (l *postLoad) record(a appAnswer, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed++
		if l.firstErr == nil {
			l.firstErr = err
		}
		return
	}
	l.ok++
	l.versions[a.Version+"/"+a.Color]++
}

// startPOSTClients runs n clients, each on its own keep-alive connection
// to nginx, sending POST / until the returned function is called (or the
// test ends); it returns the counts. Go's client does not retry a POST on
// a connection the server closed, so a reset counts as a failure.
func (e *env) startPOSTClients(n int) func() *postLoad {
	load := &postLoad{versions: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	body := []byte(`{"order":42,"items":["a","b"]}`)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			for ctx.Err() == nil {
				a, err := postOnce(ctx, c, e.ng.URL+"/", body)
				if ctx.Err() != nil {
					return // stopped mid-request: not the switch's failure
				}
				load.record(a, err)
			}
		}()
	}
	stop := sync.OnceFunc(func() {
		cancel()
		wg.Wait()
	})
	e.t.Cleanup(stop)
	return func() *postLoad {
		stop()
		return load
	}
}

func postOnce(ctx context.Context, c *http.Client, url string, body []byte) (appAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return appAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		return appAnswer{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return appAnswer{}, err
	}
	if res.StatusCode != http.StatusOK {
		return appAnswer{}, fmt.Errorf("POST /: status %d, body %q", res.StatusCode, b)
	}
	var a appAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return appAnswer{}, fmt.Errorf("POST /: body %q: %w", b, err)
	}
	return a, nil
}

// The promise of switch mode: under 16 keep-alive clients sending POSTs
// through nginx, deploys and rollbacks fail none of them and never reload
// nginx, and a request in flight at a switch finishes on the old color.
func TestSwitch_KeepAlivePOSTsSurviveSwitchesWithoutNginxReload(t *testing.T) {
	t.Parallel()
	const (
		clients  = 16
		switches = 10
	)
	e := newEnv(t, "v1", "v2")
	cfg := defaultSvc()
	cfg.Traffic = config.TrafficModeSwitch
	cfg.Drain = 10 * time.Second // the long request ends well within it
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	d.mustSucceed("v1")
	e.assertServes("v1", "blue")
	upstream := e.upstream()
	workers := e.nginxWorkers()
	if len(workers) == 0 {
		t.Fatal("nginx master has no workers")
	}

	stopLoad := e.startPOSTClients(clients)
	// Switch 1, a deploy, with a long request running on blue.
	// Long enough to outlast the deploy on a busy 2-CPU machine, well
	// within the drain.
	long := e.startLongRequest(6 * time.Second)
	d.waitInFlight("blue")
	v2 := d.mustSucceed("v2")
	sw := findStep(v2, controller.StepSwitch)
	if sw == nil || sw.FinishedAt == nil {
		t.Fatalf("steps = %s, want a finished switch", stepSummary(v2))
	}
	got := <-long
	if got.err != nil || got.status != http.StatusOK || got.app.Color != "blue" || got.app.Version != "v1" {
		t.Fatalf("long request: %d %+v (%v), want 200 from v1 on blue", got.status, got.app, got.err)
	}
	if !got.at.After(*sw.FinishedAt) {
		t.Fatalf("long request answered at %s, before the switch ended at %s", got.at, sw.FinishedAt)
	}
	drain := findStep(v2, controller.StepDrain)
	if drain == nil || !strings.HasPrefix(drain.Message, "waited for ") || strings.Contains(drain.Message, "timed out") {
		t.Fatalf("drain step = %+v, want it to say what it waited for, without a timeout", drain)
	}
	t.Logf("drain: %s; long request finished on blue %s after the switch", drain.Message, got.at.Sub(*sw.FinishedAt).Round(time.Millisecond))

	// Switches 2 to 10: rollbacks, back and forth between the warm colors.
	for i := 2; i <= switches; i++ {
		rb := d.waitDeployment(d.rollback().ID)
		if rb.Status != controller.StatusSucceeded {
			t.Fatalf("rollback %d: status = %s (%s), want succeeded; steps %s", i, rb.Status, rb.Error, stepSummary(rb))
		}
	}
	load := stopLoad()
	t.Logf("%d clients over %d switches: %d POSTs ok, %d failed, answers %v", clients, switches, load.ok, load.failed, load.versions)
	if load.failed != 0 {
		t.Errorf("failed POSTs = %d (first: %v), want 0", load.failed, load.firstErr)
	}
	if load.versions["v1/blue"] == 0 || load.versions["v2/green"] == 0 {
		t.Errorf("answers = %v, want both colors", load.versions)
	}
	if after := e.nginxWorkers(); !slices.Equal(after, workers) {
		t.Errorf("nginx workers = %v, want %v: nginx was reloaded", after, workers)
	}
	if b := e.upstream(); !bytes.Equal(b, upstream) {
		t.Errorf("upstream file changed:\n%s\nwant:\n%s", b, upstream)
	}
	// 9 rollbacks from green: v1 on blue serves.
	e.assertServes("v1", "blue")
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/internal/testenv"
)

// auditAll walks GET /api/v1/audit page by page, following next, and
// returns every entry, newest first.
func (d *daemon) auditAll(pageSize int) []api.AuditEntry {
	d.e.t.Helper()
	var all []api.AuditEntry
	before := ""
	for pages := 0; ; pages++ {
		if pages > 10000 {
			d.e.t.Fatal("audit paging does not end")
		}
		path := "/api/v1/audit?limit=" + strconv.Itoa(pageSize)
		if before != "" {
			path += "&before=" + url.QueryEscape(before)
		}
		status, b := d.request(http.MethodGet, path, nil, d.e.viewer)
		if status != http.StatusOK {
			d.e.t.Fatalf("GET %s: status = %d, want 200; body %s", path, status, b)
		}
		page := decode[api.AuditList](d.e.t, b)
		all = append(all, page.Entries...)
		if page.Next == "" {
			return all
		}
		before = page.Next
	}
}

// dirSize is the total size of the files under dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(_ string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.Type().IsRegular() {
			info, err := de.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("size of %s: %v", dir, err)
	}
	return total
}

// metricSum adds up the samples of a metric family in deployd's /metrics.
func (d *daemon) metricSum(name string) float64 {
	d.e.t.Helper()
	status, b := d.request(http.MethodGet, "/metrics", nil, d.e.viewer)
	if status != http.StatusOK {
		d.e.t.Fatalf("GET /metrics: status = %d", status)
	}
	var sum float64
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+]+)$`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			d.e.t.Fatalf("metric %s: %v", m[0], err)
		}
		sum += v
	}
	return sum
}

// An anonymous flood of the audited routes used to be one synced store
// write per request: in seconds it filled the audit view and pushed a real
// deploy's entry out of reach, and the data dir grew megabytes. Now such
// requests are counted, and the trail and the store do not move.
func TestAudit_AnonymousFloodLeavesTrailAndDataDirUnchanged(t *testing.T) {
	t.Parallel()
	e, d, v1, _ := webhookEnv(t, defaultSvc())
	trailBefore := d.auditAll(100)
	sizeBefore := dirSize(t, e.dataDir)
	countedBefore := d.metricSum("deployd_unaudited_requests_total")

	const floodSize, workers = 4000, 16
	body := []byte(`{"service":"` + e.svc + `","image":"` + repository + `:v1"}`)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	targets := []func() (*http.Request, error){
		func() (*http.Request, error) { // no token
			return http.NewRequest(http.MethodPost, d.url+"/api/v1/services/"+e.svc+"/deployments", bytes.NewReader(body))
		},
		func() (*http.Request, error) { // a wrong token
			r, err := http.NewRequest(http.MethodPost, d.url+"/api/v1/services/"+e.svc+"/rollback", nil)
			if err == nil {
				r.Header.Set("Authorization", "Bearer not-a-token-0123456789")
			}
			return r, err
		},
		func() (*http.Request, error) { // a bad signature, then rate limited
			r, err := http.NewRequest(http.MethodPost, d.url+"/hooks/deploy", bytes.NewReader(body))
			if err == nil {
				r.Header.Set("X-Deployd-Timestamp", ts)
				r.Header.Set("X-Hub-Signature-256", hmacHex("guessed-secret-0123456789", append([]byte(ts+"."), body...)))
				r.Header.Set("X-GitHub-Delivery", "flood")
			}
			return r, err
		},
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: workers}, Timeout: apiTimeout}
	var next atomic.Int64
	statuses := make([]map[int]int, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		statuses[w] = map[int]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > floodSize {
					return
				}
				req, err := targets[int(i)%len(targets)]()
				if err != nil {
					t.Errorf("request: %v", err)
					return
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("flood request %d: %v", i, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[w][resp.StatusCode]++
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	refused := map[int]int{}
	for _, m := range statuses {
		for k, v := range m {
			refused[k] += v
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if refused[http.StatusUnauthorized]+refused[http.StatusTooManyRequests] != floodSize {
		t.Fatalf("flood answers = %v, want %d refusals (401/429)", refused, floodSize)
	}

	trailAfter := d.auditAll(100)
	sizeAfter := dirSize(t, e.dataDir)
	counted := d.metricSum("deployd_unaudited_requests_total") - countedBefore
	t.Logf("%d anonymous POSTs in %s (%v): audit entries %d -> %d, data dir %d -> %d bytes, counted %v",
		floodSize, took.Round(time.Millisecond), refused, len(trailBefore), len(trailAfter), sizeBefore, sizeAfter, counted)
	if len(trailAfter) != len(trailBefore) {
		t.Errorf("audit trail grew from %d to %d entries during an anonymous flood", len(trailBefore), len(trailAfter))
	}
	// bbolt grows its file in steps; no step may be taken for the flood.
	if grown := sizeAfter - sizeBefore; grown > 64<<10 {
		t.Errorf("data dir grew %d bytes during an anonymous flood, want under 64 KiB", grown)
	}
	if counted != floodSize {
		t.Errorf("deployd_unaudited_requests_total rose by %v, want %d", counted, floodSize)
	}
	// The flood is summed up in a few lines, not one per request.
	if lines := strings.Count(d.stderr.String(), "counted, not audited"); lines < 1 || lines > int(took/(10*time.Second))+2 {
		t.Errorf("%d summary lines for the flood, want 1 per 10 s", lines)
	}
	// The real deploy's entry is still there, reachable by paging in
	// small pages too.
	found := false
	for _, a := range d.auditAll(7) {
		if a.Action == "deploy" && a.DeploymentID == v1.ID && a.Actor == "e2e" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the v1 deploy's audit entry (deployment %s) is not reachable through paging", v1.ID)
	}
}

// startAPIProxy starts a private nginx in front of the daemon's API that
// passes the client on as nginx's shipped site does
// ($proxy_add_x_forwarded_for), and returns its URL. The test's env has
// already found nginx (or skipped).
func startAPIProxy(t *testing.T, d *daemon) string {
	t.Helper()
	port, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	backend := strings.TrimPrefix(d.url, "http://")
	extra := fmt.Sprintf(`upstream deployd_api { server %s; }
    server {
        listen 127.0.0.1:%d;
        location / {
            proxy_pass http://deployd_api;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }`, backend, port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ng, err := lab.StartNginx(ctx, t.TempDir(), lab.NginxConfig{HTTPExtra: extra})
	if err != nil {
		t.Fatalf("start the API's nginx: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ng.Stop(ctx); err != nil {
			t.Errorf("stop the API's nginx: %v", err)
		}
		if t.Failed() {
			t.Logf("API nginx error log:\n%s", ng.ErrorLogTail())
		}
	})
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

// clientFrom returns an HTTP client whose connections come from the
// loopback address ip (any of 127.0.0.0/8 reaches a loopback listener), so
// nginx sees distinct clients.
func clientFrom(ip string) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{
		Transport: &http.Transport{Proxy: nil, DialContext: dialer.DialContext},
		Timeout:   apiTimeout,
		// The login answers with a redirect; its status is what counts.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func send(t *testing.T, c *http.Client, req *http.Request) int {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// Behind nginx every TCP peer is nginx. With trusted_proxies naming it,
// deployd takes the client from X-Forwarded-For, so one client's failed
// signatures and logins lock out that client only.
func TestTrustedProxies_OneClientsFailuresDoNotLockOutAnother(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := defaultSvc()
	cfg.Webhook = true
	cfg.AllowedRefs = []string{mainRef}
	cfg.TrustedProxies = []string{"127.0.0.1"}
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	proxy := startAPIProxy(t, d)
	waitHealthyAt(t, proxy)

	attacker, other := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	hook := func(secret, ref, forged string) *http.Request {
		body, err := json.Marshal(map[string]string{"service": e.svc, "image": repository + ":v1", "ref": ref})
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPost, proxy+"/hooks/deploy", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Delivery", "e2e-"+randomSecret(t)[:12])
		ts, sig := stamp(secret, body)
		req.Header.Set("X-Deployd-Timestamp", ts)
		req.Header.Set("X-Hub-Signature-256", sig)
		if forged != "" {
			// What a client claims goes left of what nginx appends.
			req.Header.Set("X-Forwarded-For", forged)
		}
		return req
	}
	login := func(token string) *http.Request {
		req, err := http.NewRequest(http.MethodPost, proxy+"/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return req
	}

	// The attacker exhausts its failures, then is refused even with
	// addresses of its choosing in front.
	for i := range 10 {
		if got := send(t, attacker, hook(randomSecret(t), mainRef, "")); got != http.StatusUnauthorized {
			t.Fatalf("bad signature %d: status %d, want 401", i, got)
		}
		if got := send(t, attacker, login("wrong-token-"+strconv.Itoa(i))); got != http.StatusUnauthorized {
			t.Fatalf("bad login %d: status %d, want 401", i, got)
		}
	}
	if got := send(t, attacker, hook(randomSecret(t), mainRef, "203.0.113.9")); got != http.StatusTooManyRequests {
		t.Fatalf("attacker's next signature with a forged X-Forwarded-For: status %d, want 429", got)
	}
	if got := send(t, attacker, login("wrong-token-x")); got != http.StatusTooManyRequests {
		t.Fatalf("attacker's next login: status %d, want 429", got)
	}

	// Another client through the same nginx is not locked out: its signed
	// delivery is verified (and refused for its ref, which starts
	// nothing), and its login succeeds.
	if got := send(t, other, hook(e.webhookSecret, "refs/heads/feature", "")); got != http.StatusForbidden {
		t.Fatalf("other client's signed delivery: status %d, want 403 (verified, ref not allowed), not 429", got)
	}
	if got := send(t, other, login(e.viewer)); got != http.StatusSeeOther {
		t.Fatalf("other client's login: status %d, want 303", got)
	}

	// The trail names the clients, not nginx.
	var addrs []string
	for _, a := range d.auditAll(100) {
		if a.Action == "webhook_deploy" {
			addrs = append(addrs, a.Address)
		}
	}
	if !slices.Equal(addrs, []string{"127.0.0.3"}) {
		t.Fatalf("audited webhook addresses = %v, want only the verified client's [127.0.0.3]", addrs)
	}
}

// waitHealthyAt polls base/healthz until it answers 200.
func waitHealthyAt(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, _, err := testenv.Get(context.Background(), base+"/healthz")
		if err == nil && status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/healthz: status %d, error %v after 20 s", base, status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A flood of /readyz used to run `nginx -t` per request: at ~230 calls a
// second the API's p50 went from 6 ms to 380 ms on 2 CPUs. The checks now
// run at most about once a second whatever the callers, so the status
// API's latency stays within a small factor of idle.
func TestReadyz_FloodKeepsStatusLatency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1")
	// The config test counts its runs, then runs the real one.
	runs := filepath.Join(e.dir, "nginx-t-runs")
	cfg := defaultSvc()
	cfg.TestCommand = []string{"sh", "-c", `echo x >> "$0" && exec "$@"`, runs}
	cfg.TestCommand = append(cfg.TestCommand, e.ng.TestCommand...)
	d, _, _ := activeV1(e, cfg)

	measure := func(n int) time.Duration {
		var took []time.Duration
		for range n {
			start := time.Now()
			if status, b := d.request(http.MethodGet, "/api/v1/services/"+e.svc, nil, e.viewer); status != http.StatusOK {
				t.Fatalf("GET service: status %d; body %s", status, b)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		return took[len(took)/2]
	}
	countRuns := func() int {
		b, err := os.ReadFile(runs)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return bytes.Count(b, []byte("x"))
	}
	measure(20) // warm up connections
	idle := measure(200)

	// About 250 calls a second, as in the report, from 8 probers.
	const probers, every = 8, 32 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var calls, unready atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: apiTimeout}
	runsBefore := countRuns()
	floodStart := time.Now()
	for range probers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"/readyz", nil)
				if err != nil {
					return
				}
				resp, err := client.Do(req)
				if err != nil {
					continue // cancelled at the end
				}
				var body map[string]string
				_ = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				calls.Add(1)
				if resp.StatusCode != http.StatusOK || body["error"] != "" {
					unready.Add(1)
				}
			}
		}()
	}
	flooded := measure(200)
	cancel()
	wg.Wait()
	floodFor := time.Since(floodStart)
	checks := countRuns() - runsBefore

	t.Logf("status API p50: idle %s, during a /readyz flood %s (%.1fx); %d /readyz calls in %s (%.0f/s) ran nginx -t %d times",
		idle, flooded, float64(flooded)/float64(idle), calls.Load(), floodFor.Round(time.Millisecond),
		float64(calls.Load())/floodFor.Seconds(), checks)
	if unready.Load() > 0 {
		t.Errorf("%d /readyz answers were not a plain ready", unready.Load())
	}
	if maxChecks := int(floodFor/time.Second) + 2; checks > maxChecks {
		t.Errorf("nginx -t ran %d times in %s of flood, want at most %d (about once a second)", checks, floodFor, maxChecks)
	}
	if limit := 4*idle + 5*time.Millisecond; flooded > limit {
		t.Errorf("status API p50 during the flood = %s, want under %s (4x idle %s, plus 5 ms)", flooded, limit, idle)
	}
}

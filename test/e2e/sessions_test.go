package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/lab"
)

const (
	// slowClients announce slowBodyLen each and send slowSent of it, in
	// slowChunks, then hold their connections open while the daemon's
	// memory is read.
	slowClients = 1000
	slowBodyLen = 1 << 20
	slowSent    = 256 << 10
	slowChunks  = 4
	// maxSlowBodiesGrowth is the bound on what they may cost.
	maxSlowBodiesGrowth = 100 << 20
)

// buildPlain builds deployd without the race detector into a temp dir of
// t, for measuring memory: under -race every goroutine carries the
// detector's own state, several times what it costs the daemon.
func buildPlain(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := lab.ModuleRoot(ctx)
	if err != nil {
		t.Fatalf("module root: %v", err)
	}
	bin, err := lab.BuildDeployd(ctx, root, t.TempDir(), false)
	if err != nil {
		t.Fatalf("build deployd without -race: %v", err)
	}
	return bin
}

// procMemory reads a field of /proc/<pid>/status in bytes (VmRSS, VmHWM).
func procMemory(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the daemon's memory: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("parse %s %q: %v", field, rest, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// A thousand anonymous connections announcing a 1 MiB body each and
// sending a quarter of it, slowly, must not make the daemon hold their
// bodies: it reads at most 8 KiB of each before the route has decided
// who the caller is. Before bodies were streamed, fasthttp reserved each
// announced megabyte as soon as the headers arrived.
func TestSlowBodies_DoNotCommitMemoryBeforeAuthentication(t *testing.T) {
	e := newEnv(t)
	e.bin = buildPlain(t)
	cfg := defaultSvc()
	cfg.Webhook = true
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	addr := strings.TrimPrefix(d.url, "http://")
	pid := d.PID()
	before := procMemory(t, pid, "VmRSS")

	// The routes an anonymous caller can post to: the API (refused before
	// its body is read), the webhook (its signature needs the body) and
	// the login form.
	heads := []string{
		"POST /api/v1/services/" + e.svc + "/deployments HTTP/1.1\r\nHost: deployd.test\r\nContent-Type: application/json\r\n",
		"POST /hooks/deploy HTTP/1.1\r\nHost: deployd.test\r\nContent-Type: application/json\r\nX-GitHub-Delivery: slow\r\nX-Hub-Signature-256: sha256=" + strings.Repeat("0", 64) + "\r\n",
		"POST /login HTTP/1.1\r\nHost: deployd.test\r\nContent-Type: application/x-www-form-urlencoded\r\n",
	}
	chunk := strings.Repeat("a", slowSent/slowChunks)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		answered = map[int]int{}
		conns    []net.Conn
	)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range slowClients {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			head := heads[i%len(heads)] + "Content-Length: " + strconv.Itoa(slowBodyLen) + "\r\n\r\n"
			if _, err := io.WriteString(conn, head); err != nil {
				return
			}
			for range slowChunks {
				// The daemon may answer and close before it has it all;
				// then the write fails, which is the point.
				if _, err := io.WriteString(conn, chunk); err != nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return
			}
			resp.Body.Close()
			mu.Lock()
			answered[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()

	peak := procMemory(t, pid, "VmHWM")
	growth := peak - before
	t.Logf("%d connections announcing %d KiB and sending %d KiB each: RSS %d MiB before, peak %d MiB, growth %d MiB; answers %v",
		slowClients, slowBodyLen>>10, slowSent>>10, before>>20, peak>>20, growth>>20, answered)
	if growth >= maxSlowBodiesGrowth {
		t.Errorf("the daemon's RSS grew by %d MiB, want under %d MiB", growth>>20, maxSlowBodiesGrowth>>20)
	}
	// Every connection was refused without its body: none was let in.
	for status := range answered {
		if status < 400 {
			t.Errorf("%d slow bodies answered %d, want refusals only", answered[status], status)
		}
	}
	// The daemon still serves.
	if status, _ := d.request(http.MethodGet, "/api/v1/services/"+e.svc, nil, e.viewer); status != http.StatusOK {
		t.Fatalf("GET service after the slow bodies: status = %d, want 200", status)
	}
}

// pageClient logs in to the status page with token through the login form
// and returns a client holding the session cookie.
func pageClient(t *testing.T, base, token string) (*http.Client, *http.Cookie) {
	t.Helper()
	noRedirect := &http.Client{
		Transport:     &http.Transport{Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       apiTimeout,
	}
	req, err := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("POST /login: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /login: status = %d, want 303", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			return noRedirect, c
		}
	}
	t.Fatalf("login set no %s cookie", sessionCookie)
	return nil, nil
}

// pageStatus GETs / with the session cookie: 200 while logged in, 303 to
// the login page otherwise.
func pageStatus(t *testing.T, client *http.Client, base string, cookie *http.Cookie) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(cookie)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Sessions live in the store: a restart of the daemon keeps operators
// logged in, and logins are in the audit trail.
func TestSessions_SurviveADaemonRestart(t *testing.T) {
	e := newEnv(t, "v1")
	cfgPath := e.writeConfig("deployd.yml", defaultSvc())
	d := e.startDaemon("first", cfgPath)

	client, operator := pageClient(t, d.url, e.token)
	_, viewer := pageClient(t, d.url, e.viewer)
	if got := pageStatus(t, client, d.url, operator); got != http.StatusOK {
		t.Fatalf("GET / logged in: status = %d, want 200", got)
	}
	// A deploy whose body claims someone else: the record names the token.
	status, b := d.request(http.MethodPost, "/api/v1/services/"+e.svc+"/deployments",
		map[string]string{"image": "v1", "actor": "admin (alice)"}, e.token)
	if status != http.StatusAccepted {
		t.Fatalf("deploy: status = %d, want 202; body %s", status, b)
	}
	dep := d.waitDeployment(decode[api.Deployment](t, b).ID)
	d.stop()
	if code := d.waitExit(0); code != 0 {
		t.Fatalf("first daemon exit code = %d, want 0", code)
	}

	d = e.startDaemon("second", cfgPath)
	for name, c := range map[string]*http.Cookie{"operator": operator, "viewer": viewer} {
		if got := pageStatus(t, client, d.url, c); got != http.StatusOK {
			t.Errorf("GET / with the %s's session after the restart: status = %d, want 200", name, got)
		}
	}
	got := d.deployment(dep.ID)
	if got.Trigger.Actor != "e2e" || got.Trigger.OnBehalfOf != "admin (alice)" {
		t.Errorf("trigger after restart = actor %q on behalf of %q, want actor e2e on behalf of %q",
			got.Trigger.Actor, got.Trigger.OnBehalfOf, "admin (alice)")
	}

	status, b = d.request(http.MethodGet, "/api/v1/audit?limit=1000", nil, e.viewer)
	if status != http.StatusOK {
		t.Fatalf("GET audit: status = %d; body %s", status, b)
	}
	logins := map[string]bool{}
	for _, entry := range decode[api.AuditList](t, b).Entries {
		if entry.Action == "login" && entry.Result == "ok" {
			logins[entry.Actor] = true
		}
	}
	if !logins["e2e"] || !logins["e2e-viewer"] {
		t.Errorf("audit trail logins = %v, want e2e and e2e-viewer", logins)
	}
}

// Every login of one token past its cap ends that token's own oldest
// session; another token's session survives any number of them.
func TestSessions_LoginFloodOfOneTokenKeepsAnothersSession(t *testing.T) {
	e := newEnv(t)
	d := e.startDaemon("main", e.writeConfig("deployd.yml", defaultSvc()))
	client, viewer := pageClient(t, d.url, e.viewer)
	var refused int
	for range 30 {
		req, err := http.NewRequest(http.MethodPost, d.url+"/login", strings.NewReader(url.Values{"token": {e.token}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", d.url)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST /login: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused != 20 {
		t.Errorf("logins refused = %d of 30, want 20 (10 a minute per token)", refused)
	}
	if got := pageStatus(t, client, d.url, viewer); got != http.StatusOK {
		t.Fatalf("the viewer's page after the operator's login flood: status = %d, want 200", got)
	}
}

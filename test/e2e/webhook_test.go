package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/testenv"
	"github.com/deployd/deployd/pkg/controller"
)

const mainRef = "refs/heads/main"

// requireTools skips the test, or fails it in CI, when a program it runs
// is not installed.
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if testenv.InCI() {
				t.Fatalf("%s is required in CI: %v", n, err)
			}
			t.Skipf("%s not installed: %v", n, err)
		}
	}
}

// webhookEnv starts a daemon whose service takes signed deliveries from
// refs/heads/main only, with v1 active on blue. It returns the daemon, the
// v1 deployment and the upstream file's bytes.
func webhookEnv(t *testing.T, cfg svcConfig, tags ...string) (*env, *daemon, api.Deployment, []byte) {
	t.Helper()
	e := newEnv(t, append([]string{"v1"}, tags...)...)
	cfg.Webhook = true
	cfg.AllowedRefs = []string{mainRef}
	d, v1, upstream := activeV1(e, cfg)
	return e, d, v1, upstream
}

// curlSignedScript is the example workflow's signing and sending, with
// its inputs in the environment: jq writes the body once, openssl signs
// the timestamp and that file, curl sends that file. The secret never appears in argv of
// this process nor in the test's output.
const curlSignedScript = `set -euo pipefail
jq -cn \
  --arg service "$SERVICE" --arg image "$IMAGE" --arg commit "$COMMIT" \
  --arg actor "$ACTOR" --arg ref "$REF" \
  '{service: $service, image: $image, commit: $commit, actor: $actor, ref: $ref}' > "$WORK/body.json"
ts="$(date +%s)"
sig="$({ printf '%s.' "$ts"; cat "$WORK/body.json"; } | openssl dgst -sha256 -hmac "$DEPLOYD_WEBHOOK_SECRET" | awk '{print $NF}')"
curl -sS --max-time 30 \
  -o "$WORK/response.json" -w '%{http_code}' \
  -H 'Content-Type: application/json' \
  -H "X-Deployd-Timestamp: ${ts}" \
  -H "X-Hub-Signature-256: sha256=${sig}" \
  -H "X-GitHub-Delivery: ${DELIVERY}" \
  --data-binary @"$WORK/body.json" \
  "${DEPLOYD_URL%/}/hooks/deploy"
`

// webhookDelivery is what the example workflow sends.
type webhookDelivery struct {
	Service, Image, Commit, Actor, Ref, Delivery string
}

// sendWithCurl runs curlSignedScript in bash and returns the HTTP status
// and the response body.
func (d *daemon) sendWithCurl(w webhookDelivery) (int, []byte) {
	t := d.e.t
	t.Helper()
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", curlSignedScript)
	cmd.Env = append(os.Environ(),
		"DEPLOYD_WEBHOOK_SECRET="+d.e.webhookSecret, "DEPLOYD_URL="+d.url, "WORK="+work,
		"SERVICE="+w.Service, "IMAGE="+w.Image, "COMMIT="+w.Commit, "ACTOR="+w.Actor, "REF="+w.Ref, "DELIVERY="+w.Delivery)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("signed curl: %v; stderr:\n%s", err, stderr.String())
	}
	status, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("curl printed %q, want an HTTP status", out)
	}
	body, err := os.ReadFile(filepath.Join(work, "response.json"))
	if err != nil {
		t.Fatalf("read curl's response: %v", err)
	}
	return status, body
}

// webhookResponse is the answer to an accepted delivery.
type webhookResponse struct {
	Deployment api.Deployment `json:"deployment"`
	URL        string         `json:"url"`
}

// deploymentIDs lists the service's deployments, newest first.
func (d *daemon) deploymentIDs() []string {
	d.e.t.Helper()
	status, b := d.request(http.MethodGet, "/api/v1/deployments?service="+d.e.svc+"&limit=100", nil, d.e.viewer)
	if status != http.StatusOK {
		d.e.t.Fatalf("GET deployments: status = %d, want 200; body %s", status, b)
	}
	var list struct {
		Deployments []api.Deployment `json:"deployments"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		d.e.t.Fatalf("decode deployments %q: %v", b, err)
	}
	ids := make([]string, 0, len(list.Deployments))
	for _, dep := range list.Deployments {
		ids = append(ids, dep.ID)
	}
	return ids
}

// audit returns the audit trail, newest first.
func (d *daemon) audit() []api.AuditEntry {
	d.e.t.Helper()
	status, b := d.request(http.MethodGet, "/api/v1/audit?limit=1000", nil, d.e.viewer)
	if status != http.StatusOK {
		d.e.t.Fatalf("GET audit: status = %d, want 200; body %s", status, b)
	}
	var list struct {
		Entries []api.AuditEntry `json:"entries"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		d.e.t.Fatalf("decode audit %q: %v", b, err)
	}
	return list.Entries
}

func TestWebhook_OpenSSLSignedRequestDeploysForReal(t *testing.T) {
	t.Parallel()
	requireTools(t, "bash", "jq", "openssl", "curl")
	e, d, _, _ := webhookEnv(t, defaultSvc(), "v2")
	before := d.deploymentIDs()

	w := webhookDelivery{
		Service: e.svc, Image: repository + ":v2", Commit: "0123456789abcdef0123456789abcdef01234567",
		Actor: "octocat", Ref: mainRef, Delivery: "e2e-" + randomSecret(t)[:12],
	}
	status, b := d.sendWithCurl(w)
	if status != http.StatusAccepted {
		t.Fatalf("signed delivery: status = %d, want %d; body %s", status, http.StatusAccepted, b)
	}
	resp := decode[webhookResponse](t, b)
	if want := "/api/v1/deployments/" + resp.Deployment.ID; resp.Deployment.ID == "" || resp.URL != want {
		t.Fatalf("response url = %q for deployment %q, want %q", resp.URL, resp.Deployment.ID, want)
	}

	dep := d.waitDeployment(resp.Deployment.ID)
	if dep.Status != controller.StatusSucceeded {
		t.Fatalf("webhook deploy: status = %s (%s), want succeeded; steps %s", dep.Status, dep.Error, stepSummary(dep))
	}
	e.assertServes("v2", "green")
	e.assertUpstreamIs(e.assertRunning("green", 1, dep.ID))
	// The secret's holder is the actor; the body's actor is only a claim.
	want := api.Trigger{Source: "webhook", Actor: "webhook", OnBehalfOf: w.Actor, Commit: w.Commit, Ref: w.Ref, Delivery: w.Delivery}
	if dep.Trigger != want {
		t.Fatalf("trigger = %+v, want %+v", dep.Trigger, want)
	}

	// GitHub redelivers with the same id; so does the workflow's retry.
	status, b = d.sendWithCurl(w)
	if status != http.StatusOK {
		t.Fatalf("replayed delivery: status = %d, want %d; body %s", status, http.StatusOK, b)
	}
	if got := decode[webhookResponse](t, b); got.Deployment.ID != dep.ID {
		t.Fatalf("replayed delivery: deployment = %q, want the first one %q", got.Deployment.ID, dep.ID)
	}
	after := d.deploymentIDs()
	if len(after) != len(before)+1 || after[0] != dep.ID {
		t.Fatalf("deployments = %v, want %v plus only %s", after, before, dep.ID)
	}
	e.assertServes("v2", "green")

	// Both deliveries are in the audit trail under the delivery's name.
	var statuses []int
	for _, a := range d.audit() {
		if a.Action != "webhook_deploy" {
			continue
		}
		if a.Actor != "webhook:"+w.Delivery || a.Target != e.svc || a.Result != "ok" || a.DeploymentID != dep.ID {
			t.Errorf("audit entry %+v, want actor webhook:%s target %s result ok deployment %s", a, w.Delivery, e.svc, dep.ID)
		}
		statuses = append(statuses, a.Status)
	}
	// Newest first: the replay, then the delivery.
	if !slices.Equal(statuses, []int{http.StatusOK, http.StatusAccepted}) {
		t.Fatalf("audited webhook statuses = %v, want [200 202]", statuses)
	}
}

// stamp returns the X-Deployd-Timestamp and X-Hub-Signature-256 values
// of body sent now.
func stamp(secret string, body []byte) (timestamp, signature string) {
	timestamp = strconv.FormatInt(time.Now().Unix(), 10)
	return timestamp, hmacHex(secret, append([]byte(timestamp+"."), body...))
}

// hmacHex is the signature header's value for payload.
func hmacHex(secret string, payload []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(payload)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// postHook sends body to /hooks/deploy with headers and returns the status
// and the response body.
func (d *daemon) postHook(body []byte, headers map[string]string) (int, []byte) {
	d.e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url+"/hooks/deploy", bytes.NewReader(body))
	if err != nil {
		d.e.t.Fatalf("request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if len(body) > 64<<10 {
		return d.postEarlyAnswered(req)
	}
	resp, err := d.Client().Do(req)
	if err != nil {
		d.e.t.Fatalf("POST /hooks/deploy: %v", err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	if _, err := out.ReadFrom(resp.Body); err != nil {
		d.e.t.Fatalf("POST /hooks/deploy: read body: %v", err)
	}
	return resp.StatusCode, out.Bytes()
}

// postEarlyAnswered sends req on its own connection and reads the answer
// while the body is still being written. A server refusing a body by its
// Content-Length answers and closes before reading it, and net/http's
// client then reports the broken pipe instead of the answer.
func (d *daemon) postEarlyAnswered(req *http.Request) (int, []byte) {
	d.e.t.Helper()
	var dialer net.Dialer
	conn, err := dialer.DialContext(req.Context(), "tcp", req.URL.Host)
	if err != nil {
		d.e.t.Fatalf("dial %s: %v", req.URL.Host, err)
	}
	defer conn.Close()
	if deadline, ok := req.Context().Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			d.e.t.Fatalf("set deadline: %v", err)
		}
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		// Fails with a broken pipe once the server has answered and
		// closed; the answer is what the test checks.
		_ = req.Write(conn)
	}()
	// Closing the connection ends the writer, whatever it is doing.
	defer func() {
		conn.Close()
		<-written
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		d.e.t.Fatalf("POST /hooks/deploy: read response: %v", err)
	}
	defer resp.Body.Close()
	// Read past the client, so checked here.
	d.contract.Check(resp)
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		d.e.t.Fatalf("POST /hooks/deploy: read body: %v", err)
	}
	return resp.StatusCode, out
}

func TestWebhook_BadInputsTouchNothing(t *testing.T) {
	t.Parallel()
	cfg := defaultSvc()
	// The deploy that keeps the service busy fails its health check only
	// after this long; the test cancels it well before.
	cfg.StartTimeout = 60 * time.Second
	e, d, v1, upstream := webhookEnv(t, cfg, "v2-fail")
	before := d.deploymentIDs()
	containersBefore := e.containers()

	body := func(service, image, ref string) []byte {
		b, err := json.Marshal(map[string]string{"service": service, "image": image, "ref": ref, "commit": "abc123", "actor": "e2e"})
		if err != nil {
			t.Fatalf("encode body: %v", err)
		}
		return b
	}
	good := body(e.svc, repository+":v1", mainRef)
	// Over 64 KiB, and valid JSON: only the size is wrong with it.
	huge := body(e.svc, repository+":v1", mainRef)
	huge = append(huge[:len(huge)-1], []byte(`,"padding":"`+strings.Repeat("x", 1<<20)+`"}`)...)

	tests := []struct {
		name       string
		body       []byte
		signWith   string // the secret to sign with; "" sends no signature
		headers    map[string]string
		wantStatus int
		wantCode   string
	}{
		{"no signature", good, "", nil, http.StatusUnauthorized, controller.EUNAUTHORIZED},
		{"wrong signature", good, randomSecret(t), nil, http.StatusUnauthorized, controller.EUNAUTHORIZED},
		{"bearer token instead", good, "", map[string]string{"Authorization": "Bearer " + e.token}, http.StatusUnauthorized, controller.EUNAUTHORIZED},
		{"malformed JSON", []byte(`{"service": "` + e.svc + `", "image":`), e.webhookSecret, nil, http.StatusBadRequest, controller.EINVALID},
		{"unknown service", body("nosuchsvc", repository+":v1", mainRef), e.webhookSecret, nil, http.StatusNotFound, controller.ENOTFOUND},
		{"image outside repository", body(e.svc, "someone-else/app:v1", mainRef), e.webhookSecret, nil, http.StatusForbidden, controller.EFORBIDDEN},
		{"ref not allowed", body(e.svc, repository+":v1", "refs/heads/feature"), e.webhookSecret, nil, http.StatusForbidden, controller.EFORBIDDEN},
		{"body over 64 KiB", huge, e.webhookSecret, nil, http.StatusRequestEntityTooLarge, ""},
	}
	// requestIDs maps each case's request id to its case, to find its
	// audit entry.
	requestIDs := map[string]int{}
	send := func(t *testing.T, i int, b []byte, signWith string, extra map[string]string) (int, []byte) {
		t.Helper()
		reqID := fmt.Sprintf("e2e-bad-%d-%s", i, randomSecret(t)[:8])
		requestIDs[reqID] = i
		h := map[string]string{"X-GitHub-Delivery": reqID, "X-Request-Id": reqID}
		if signWith != "" {
			h["X-Deployd-Timestamp"], h["X-Hub-Signature-256"] = stamp(signWith, b)
		}
		for k, v := range extra {
			h[k] = v
		}
		return d.postHook(b, h)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := send(t, i, tt.body, tt.signWith, tt.headers)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", status, tt.wantStatus, b)
			}
			if got := decode[apiError](t, b); tt.wantCode != "" && got.Code != tt.wantCode {
				t.Fatalf("code = %q, want %q (error %q)", got.Code, tt.wantCode, got.Error)
			}
		})
	}

	// Busy: a deploy that would run for a minute holds the service.
	slow := d.deploy("v2-fail")
	d.waitStep(slow.ID, controller.StepHealth)
	busy := len(tests)
	status, b := send(t, busy, good, e.webhookSecret, nil)
	if status != http.StatusConflict {
		t.Fatalf("busy service: status = %d, want %d; body %s", status, http.StatusConflict, b)
	}
	if got := decode[apiError](t, b); got.Code != controller.ECONFLICT || got.DeploymentID != slow.ID {
		t.Fatalf("busy service: code %q deployment_id %q, want %q %q", got.Code, got.DeploymentID, controller.ECONFLICT, slow.ID)
	}
	if status, b := d.request(http.MethodPost, "/api/v1/deployments/"+slow.ID+"/cancel", nil, e.token); status != http.StatusAccepted {
		t.Fatalf("cancel the slow deploy: status = %d, want %d; body %s", status, http.StatusAccepted, b)
	}
	if got := d.waitDeployment(slow.ID); got.Status != controller.StatusCancelled {
		t.Fatalf("slow deploy: status = %s (%s), want cancelled", got.Status, got.Error)
	}

	after := d.deploymentIDs()
	if want := append([]string{slow.ID}, before...); !slices.Equal(after, want) {
		t.Fatalf("deployments = %v, want %v (only the slow deploy added)", after, want)
	}
	if got := e.containers(); !slices.EqualFunc(got, containersBefore, func(a, b ctr) bool { return a.Name == b.Name && a.State == b.State }) {
		t.Fatalf("containers = %v, want %v", got, containersBefore)
	}
	assertUntouched(e, v1, upstream, slow.ID)

	// Every refusal of a verified delivery is in the audit trail, with its
	// result; unverified requests are only counted.
	wantResults := map[int]struct {
		status int
		result string
	}{busy: {http.StatusConflict, controller.ECONFLICT}}
	unverified := map[int]bool{}
	for i, tt := range tests {
		if tt.wantStatus == http.StatusRequestEntityTooLarge {
			continue // refused by the HTTP server while reading, before any handler
		}
		if tt.wantStatus == http.StatusUnauthorized {
			unverified[i] = true
			continue
		}
		wantResults[i] = struct {
			status int
			result string
		}{tt.wantStatus, tt.wantCode}
	}
	seen := map[int]bool{}
	for _, a := range d.audit() {
		i, ok := requestIDs[a.RequestID]
		if !ok {
			continue
		}
		seen[i] = true
		name := "busy service"
		if i < len(tests) {
			name = tests[i].name
		}
		if unverified[i] {
			t.Errorf("audit entry for unverified %q: %+v, want none (counted, not written)", name, a)
		}
		w, ok := wantResults[i]
		if !ok {
			continue
		}
		if a.Action != "webhook_deploy" || a.Status != w.status || a.Result != w.result {
			t.Errorf("audit entry for %q: action %q status %d result %q, want webhook_deploy %d %q", name, a.Action, a.Status, a.Result, w.status, w.result)
		}
		if a.Address != "127.0.0.1" {
			t.Errorf("audit entry for %q: address %q, want 127.0.0.1", name, a.Address)
		}
	}
	for i := range wantResults {
		if !seen[i] {
			name := "busy service"
			if i < len(tests) {
				name = tests[i].name
			}
			t.Errorf("audit has no entry for %q", name)
		}
	}
}

func TestWebhook_NoSecretConfiguredIs404(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.startDaemon("main", e.writeConfig("deployd.yml", defaultSvc()))

	b := []byte(`{"service":"` + e.svc + `","image":"` + repository + `:v1"}`)
	// Signed with the secret a configured daemon would use: without the
	// config naming it, it means nothing.
	status, resp := d.postHook(b, map[string]string{
		"X-Hub-Signature-256": hmacHex(e.webhookSecret, b),
		"X-GitHub-Delivery":   "e2e-no-secret",
	})
	if status != http.StatusNotFound {
		t.Fatalf("status = %d, want %d; body %s", status, http.StatusNotFound, resp)
	}
	if got := decode[apiError](t, resp); got.Code != controller.ENOTFOUND {
		t.Fatalf("code = %q, want %q", got.Code, controller.ENOTFOUND)
	}
	if ids := d.deploymentIDs(); len(ids) != 0 {
		t.Fatalf("deployments = %v, want none", ids)
	}
	if cs := e.containers(); len(cs) != 0 {
		t.Fatalf("containers = %v, want none", cs)
	}
}

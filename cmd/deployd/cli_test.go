package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

const cliToken = "cli-token-0123456789abcdef"

// fakeAPI is the part of deployd's API the CLI uses. The deployment d-1
// ends with outcome; its events are sent as server-sent events.
type fakeAPI struct {
	outcome controller.Status
	errMsg  string
	// schemaChange makes a rollback without confirm_schema_change answer
	// 409 schema_change, and one with it start.
	schemaChange bool

	mu       sync.Mutex
	requests []string
	bodies   []string
}

func (f *fakeAPI) deployment(status controller.Status) api.Deployment {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := api.Deployment{
		ID: "d-1", Service: "web", Kind: controller.KindDeploy, Image: "demoapp:v2",
		FromColor: controller.Blue, ToColor: controller.Green, Status: status,
		Steps:     []api.Step{},
		Trigger:   api.Trigger{Source: "api", Actor: "ci", Commit: "abc123"},
		CreatedAt: created,
	}
	if status.Done() {
		fin := created.Add(12 * time.Second)
		d.FinishedAt = &fin
		if status != controller.StatusSucceeded {
			d.Error = f.errMsg
		}
	}
	return d
}

func (f *fakeAPI) events() []api.Event {
	evs := []api.Event{
		{Type: controller.EventStatus, Status: "running"},
		{Type: controller.EventStep, Step: "pull", Status: "running"},
		{Type: controller.EventStep, Step: "pull", Status: "succeeded", Message: "demoapp:v2 present"},
		{Type: controller.EventStep, Step: "health", Status: "running"},
		{Type: controller.EventLog, Step: "health", Message: "web-green-1: healthy (1/2)"},
	}
	if f.outcome == controller.StatusSucceeded {
		evs = append(evs,
			api.Event{Type: controller.EventStep, Step: "health", Status: "succeeded"},
			api.Event{Type: controller.EventStep, Step: "switch", Status: "succeeded", Message: "nginx now sends web to green"},
		)
	} else {
		evs = append(evs, api.Event{Type: controller.EventStep, Step: "health", Status: "failed", Message: f.errMsg})
	}
	evs = append(evs, api.Event{Type: controller.EventStatus, Status: f.outcome.String(), Message: f.deployment(f.outcome).Error})
	for i := range evs {
		evs[i].Seq = i + 1
	}
	return evs
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.bodies = append(f.bodies, string(b))
	f.mu.Unlock()
	writeJSON := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.Header.Get("Authorization") != "Bearer "+cliToken {
		writeJSON(http.StatusUnauthorized, map[string]string{"error": "missing or invalid token", "code": "unauthorized"})
		return
	}
	switch r.Method + " " + r.URL.Path {
	case "POST /api/v1/services/web/deployments":
		writeJSON(http.StatusAccepted, f.deployment(controller.StatusQueued))
	case "POST /api/v1/services/web/rollback":
		switch {
		case !f.schemaChange:
			writeJSON(http.StatusConflict, map[string]string{"error": "service web is busy", "code": "conflict", "deployment_id": "d-9"})
		case strings.Contains(string(b), `"confirm_schema_change":true`):
			d := f.deployment(controller.StatusQueued)
			d.Kind = controller.KindRollback
			writeJSON(http.StatusAccepted, d)
		default:
			writeJSON(http.StatusConflict, map[string]string{"code": "schema_change", "error": "web's active demoapp:v2 applied " +
				"notes.0003_drop_legacy; the standby demoapp:v1 ran against the old schema and may fail. " +
				"Roll back with confirm_schema_change to do it anyway."})
		}
	case "POST /api/v1/deployments/d-1/cancel":
		writeJSON(http.StatusOK, f.deployment(controller.StatusRunning))
	case "GET /api/v1/deployments/d-1":
		writeJSON(http.StatusOK, f.deployment(f.outcome))
	case "GET /api/v1/deployments":
		writeJSON(http.StatusOK, map[string]any{"deployments": []api.Deployment{f.deployment(f.outcome)}})
	case "GET /api/v1/services":
		writeJSON(http.StatusOK, map[string]any{"services": []api.Service{f.view()}})
	case "GET /api/v1/services/web":
		writeJSON(http.StatusOK, f.view())
	case "GET /api/v1/deployments/d-1/events":
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range f.events() {
			data, _ := json.Marshal(ev)
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Type, data)
		}
	default:
		writeJSON(http.StatusNotFound, map[string]string{"error": "no route", "code": "not_found"})
	}
}

// view is the service view the fake answers; with schemaChange, a
// rollback would cross a breaking migration.
func (f *fakeAPI) view() api.Service {
	v := webView(f.deployment(f.outcome))
	if f.schemaChange {
		v.RollbackSchemaChange = &api.SchemaChange{Breaking: true, Migrations: []string{"notes.0003_drop_legacy"},
			Message: "web's active demoapp:v2 applied notes.0003_drop_legacy; ..."}
	}
	return v
}

func webView(d api.Deployment) api.Service {
	v := api.Service{
		Name: "web", ActiveColor: controller.Green, ActiveImage: "demoapp:v2",
		StandbyColor: controller.Blue, StandbyImage: "demoapp:v1",
		Colors: api.Colors{
			Blue:  api.ColorView{Image: "demoapp:v1", Containers: []api.Container{}},
			Green: api.ColorView{Image: "demoapp:v2", Containers: []api.Container{}},
		},
		StandbyWarm: true, StandbyState: controller.StandbyWarm,
		Deployment: &d,
	}
	if d.Status == controller.StatusFailed {
		v.LastFailure = &d
	}
	return v
}

func (f *fakeAPI) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// runFakeCLI runs args against a fake API with the token in the
// environment and the server either there or given as a flag.
func runFakeCLI(t *testing.T, fake *fakeAPI, env map[string]string, args ...string) cliResult {
	t.Helper()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	all := map[string]string{"DEPLOYD_SERVER": srv.URL, "DEPLOYD_TOKEN": cliToken}
	for k, v := range env {
		all[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := runCLIContext(ctx, args, &stdout, &stderr, envMap(all))
	r := cliResult{code, stdout.String(), stderr.String()}
	for name, out := range map[string]string{"stdout": r.stdout, "stderr": r.stderr} {
		if strings.Contains(out, cliToken) {
			t.Fatalf("%s reveals the token:\n%s", name, out)
		}
	}
	return r
}

func TestCLI_DeployWaitSucceededExitsZeroAndPrintsSteps(t *testing.T) {
	fake := &fakeAPI{outcome: controller.StatusSucceeded}
	r := runFakeCLI(t, fake, nil, "deploy", "--service", "web", "--image", "v2", "--commit", "abc123", "--on-behalf-of", "alice", "--wait")
	if r.code != 0 {
		t.Fatalf("exit = %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	want := strings.Join([]string{
		"deploy d-1 of web (demoapp:v2, blue -> green)",
		"  status     running",
		"  pull       running",
		"  pull       succeeded: demoapp:v2 present",
		"  health     running",
		"  health     web-green-1: healthy (1/2)",
		"  health     succeeded",
		"  switch     succeeded: nginx now sends web to green",
		"deploy d-1 of web succeeded in 12s",
		"",
	}, "\n")
	if r.stdout != want {
		t.Fatalf("stdout =\n%s\nwant\n%s", r.stdout, want)
	}
	if r.stderr != "" {
		t.Fatalf("stderr = %q, want nothing", r.stderr)
	}
	fake.mu.Lock()
	body := fake.bodies[0]
	fake.mu.Unlock()
	if want := `{"image":"v2","commit":"abc123","on_behalf_of":"alice"}`; body != want {
		t.Fatalf("deploy body = %s, want %s", body, want)
	}
}

func TestCLI_DeployWaitFailedExitsOneWithReasonOnStderr(t *testing.T) {
	for _, outcome := range []controller.Status{controller.StatusFailed, controller.StatusCancelled, controller.StatusInterrupted} {
		t.Run(outcome.String(), func(t *testing.T) {
			fake := &fakeAPI{outcome: outcome, errMsg: "health: web-green-1 never became healthy within 60s"}
			r := runFakeCLI(t, fake, nil, "deploy", "--service", "web", "--image", "v2", "--wait")
			if r.code != 1 {
				t.Fatalf("exit = %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			wantErr := "deployd deploy: deployment d-1 " + outcome.String() + ": health: web-green-1 never became healthy within 60s\n"
			if r.stderr != wantErr {
				t.Fatalf("stderr = %q, want %q", r.stderr, wantErr)
			}
			if !strings.Contains(r.stdout, "  health     failed: health: web-green-1 never became healthy") {
				t.Fatalf("stdout lacks the failed step:\n%s", r.stdout)
			}
			if !strings.HasSuffix(r.stdout, "deploy d-1 of web "+outcome.String()+" in 12s\n") {
				t.Fatalf("stdout does not end with the final status:\n%s", r.stdout)
			}
		})
	}
}

func TestCLI_CommandLineMistakesExitTwo(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{
			name: "missing token",
			env:  map[string]string{"DEPLOYD_TOKEN": ""},
			args: []string{"status"},
			want: "deployd status: DEPLOYD_TOKEN is not set: the API token is read only from the environment, never from a flag\n",
		},
		{
			name: "missing server",
			env:  map[string]string{"DEPLOYD_SERVER": ""},
			args: []string{"history"},
			want: "deployd history: no server: pass --server URL or set DEPLOYD_SERVER\n",
		},
		{
			name: "bad server URL",
			args: []string{"status", "--server", "deployd.example.com:7400"},
			want: "must start with http:// or https://",
		},
		{
			name: "token as a flag does not exist",
			args: []string{"status", "--token", "x"},
			want: "flag provided but not defined: -token",
		},
		{
			name: "deploy without image",
			args: []string{"deploy", "--service", "web"},
			want: "deployd deploy: deploy needs --service and --image\n",
		},
		{
			name: "rollback without service",
			args: []string{"rollback"},
			want: "rollback needs --service",
		},
		{
			name: "cancel without id",
			args: []string{"cancel"},
			want: "cancel needs --id",
		},
		{
			name: "stray argument",
			args: []string{"status", "web"},
			want: `deployd status: unexpected argument "web"`,
		},
		{
			name: "bad limit",
			args: []string{"history", "--limit", "0"},
			want: "--limit must be at least 1, got 0",
		},
		{
			name: "unknown command",
			args: []string{"deplo"},
			want: `deployd: unknown command "deplo"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeAPI{outcome: controller.StatusSucceeded}
			r := runFakeCLI(t, fake, tt.env, tt.args...)
			if r.code != 2 {
				t.Fatalf("exit = %d, want 2\nstderr:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("stderr = %q, want it to contain %q", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Fatalf("stdout = %q, want nothing", r.stdout)
			}
			if n := len(fake.seen()); n != 0 {
				t.Fatalf("requests = %v, want none", fake.seen())
			}
		})
	}
}

func TestCLI_ServerFlagOverridesEnv(t *testing.T) {
	fake := &fakeAPI{outcome: controller.StatusSucceeded}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	r := runFakeCLI(t, &fakeAPI{}, map[string]string{"DEPLOYD_SERVER": "http://127.0.0.1:1"}, "status", "--server", srv.URL)
	if r.code != 0 {
		t.Fatalf("exit = %d, want 0; stderr: %s", r.code, r.stderr)
	}
	if got := fake.seen(); !reflect.DeepEqual(got, []string{"GET /api/v1/services"}) {
		t.Fatalf("requests = %q, want the services list from --server", got)
	}
}

// decodeAny decodes JSON into plain maps and slices, for comparing shapes.
func decodeAny(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return v
}

func encodeAny(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAny(t, string(b))
}

func TestCLI_JSONPrintsTheAPIJSON(t *testing.T) {
	fake := &fakeAPI{outcome: controller.StatusSucceeded}
	tests := []struct {
		name string
		args []string
		want any
	}{
		{"status of all services", []string{"status", "--json"}, map[string]any{"services": []api.Service{webView(fake.deployment(fake.outcome))}}},
		{"status of one service", []string{"status", "--service", "web", "--json"}, webView(fake.deployment(fake.outcome))},
		{"history", []string{"history", "--service", "web", "--limit", "3", "--json"}, map[string]any{"deployments": []api.Deployment{fake.deployment(fake.outcome)}}},
		{"deploy without wait", []string{"deploy", "--service", "web", "--image", "v2", "--json"}, fake.deployment(controller.StatusQueued)},
		{"deploy with wait prints only the final deployment", []string{"deploy", "--service", "web", "--image", "v2", "--wait", "--json"}, fake.deployment(fake.outcome)},
		{"cancel", []string{"cancel", "--id", "d-1", "--json"}, fake.deployment(controller.StatusRunning)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runFakeCLI(t, fake, nil, tt.args...)
			if r.code != 0 {
				t.Fatalf("exit = %d, want 0; stderr: %s", r.code, r.stderr)
			}
			got, want := decodeAny(t, r.stdout), encodeAny(t, tt.want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("stdout JSON =\n%v\nwant\n%v", got, want)
			}
		})
	}
}

func TestCLI_HistorySendsServiceAndLimit(t *testing.T) {
	fake := &fakeAPI{outcome: controller.StatusSucceeded}
	r := runFakeCLI(t, fake, nil, "history", "--service", "web", "--limit", "3")
	if r.code != 0 {
		t.Fatalf("exit = %d; stderr: %s", r.code, r.stderr)
	}
	if got, want := fake.seen(), []string{"GET /api/v1/deployments?limit=3&service=web"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("requests = %q, want %q", got, want)
	}
	want := "ID   SERVICE  KIND    IMAGE       STATUS     DURATION  ACTOR\n" +
		"d-1  web      deploy  demoapp:v2  succeeded  12s       ci\n"
	if r.stdout != want {
		t.Fatalf("stdout =\n%s\nwant\n%s", r.stdout, want)
	}
}

func TestCLI_StatusTable(t *testing.T) {
	const table = "SERVICE  ACTIVE            STANDBY                 LAST DEPLOYMENT\n"
	tests := []struct {
		name string
		fake *fakeAPI
		want string
	}{
		{"a failure stays in view", &fakeAPI{outcome: controller.StatusFailed, errMsg: "boom"}, table +
			"web      green demoapp:v2  blue demoapp:v1 (warm)  deploy failed (d-1)\n" +
			"web: last deploy of demoapp:v2 failed by ci at 2026-01-02T03:04:05Z (d-1): boom\n"},
		{"a rollback across a breaking migration is named", &fakeAPI{outcome: controller.StatusSucceeded, schemaChange: true}, table +
			"web      green demoapp:v2  blue demoapp:v1 (warm)  deploy succeeded (d-1)\n" +
			"web: rollback crosses notes.0003_drop_legacy (breaking: a rollback needs --confirm-schema-change)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runFakeCLI(t, tt.fake, nil, "status")
			if r.code != 0 {
				t.Fatalf("exit = %d; stderr: %s", r.code, r.stderr)
			}
			if r.stdout != tt.want {
				t.Fatalf("stdout =\n%s\nwant\n%s", r.stdout, tt.want)
			}
		})
	}
}

func TestCLI_APIErrorsExitOneNamingTheBusyDeployment(t *testing.T) {
	r := runFakeCLI(t, &fakeAPI{}, nil, "rollback", "--service", "web", "--wait")
	if r.code != 1 {
		t.Fatalf("exit = %d, want 1", r.code)
	}
	want := "deployd rollback: roll back web: deployd answered 409 conflict: service web is busy (deployment d-9)\n"
	if r.stderr != want {
		t.Fatalf("stderr = %q, want %q", r.stderr, want)
	}
}

func TestCLI_WrongTokenExitsOneWithoutShowingIt(t *testing.T) {
	r := runFakeCLI(t, &fakeAPI{}, map[string]string{"DEPLOYD_TOKEN": "wrong-token-0123456789"}, "status")
	if r.code != 1 {
		t.Fatalf("exit = %d, want 1", r.code)
	}
	if !strings.Contains(r.stderr, "401 unauthorized: missing or invalid token") {
		t.Fatalf("stderr = %q, want the 401", r.stderr)
	}
	if strings.Contains(r.stderr, "wrong-token") {
		t.Fatalf("stderr %q shows the token", r.stderr)
	}
}

func TestCLI_CancelSaysItWasRequested(t *testing.T) {
	fake := &fakeAPI{}
	r := runFakeCLI(t, fake, nil, "cancel", "--id", "d-1")
	if r.code != 0 {
		t.Fatalf("exit = %d; stderr: %s", r.code, r.stderr)
	}
	if want := "cancel requested for deployment d-1 (running); it stops at its next safe point\n"; r.stdout != want {
		t.Fatalf("stdout = %q, want %q", r.stdout, want)
	}
	if got, want := fake.seen(), []string{"POST /api/v1/deployments/d-1/cancel"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("requests = %q, want %q", got, want)
	}
}

func TestCLI_WaitTimeoutLeavesTheDeploymentRunning(t *testing.T) {
	// A stream that never ends: --wait gives up after --timeout and says
	// how to find or stop the deployment.
	hang := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") {
			w.Header().Set("Content-Type", "text/event-stream")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		(&fakeAPI{}).ServeHTTP(w, r)
	})
	srv := httptest.NewServer(hang)
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	code := runCLIContext(context.Background(), []string{"deploy", "--service", "web", "--image", "v2", "--wait", "--timeout", "100ms"},
		&stdout, &stderr, envMap(map[string]string{"DEPLOYD_SERVER": srv.URL, "DEPLOYD_TOKEN": cliToken}))
	if code != 1 {
		t.Fatalf("exit = %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "stopped waiting for deployment d-1") || !strings.Contains(stderr.String(), "deployd cancel --id d-1") {
		t.Fatalf("stderr = %q, want it to say the deployment goes on", stderr.String())
	}
}

func TestEventLine(t *testing.T) {
	tests := []struct {
		ev   api.Event
		want string
	}{
		{api.Event{Type: "step", Step: "pre_deploy", Status: "running"}, "  pre_deploy running"},
		{api.Event{Type: "step", Step: "health", Status: "failed", Message: "timeout"}, "  health     failed: timeout"},
		{api.Event{Type: "log", Step: "health", Message: "web-green-1: healthy (1/2)"}, "  health     web-green-1: healthy (1/2)"},
		{api.Event{Type: "status", Status: "running"}, "  status     running"},
		{api.Event{Type: "status", Status: "succeeded"}, ""},
		{api.Event{Type: "something-new"}, ""},
	}
	for _, tt := range tests {
		if got := eventLine(tt.ev); got != tt.want {
			t.Errorf("eventLine(%+v) = %q, want %q", tt.ev, got, tt.want)
		}
	}
}

func TestRunCLI_MissingTokenExitsTwo(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := runCLI([]string{"deploy", "--server", "http://127.0.0.1:1", "--service", "web", "--image", "v2"}, &stdout, &stderr, noEnv)
	if code != 2 {
		t.Fatalf("exit = %d, want 2", code)
	}
	if want := "deployd deploy: DEPLOYD_TOKEN is not set"; !strings.HasPrefix(stderr.String(), want) {
		t.Fatalf("stderr = %q, want it to start with %q", stderr.String(), want)
	}
}

// feedAPI serves GET /api/v1/events: the frames once, then, on the
// reconnect, it records Last-Event-ID, calls reconnected and holds the
// stream open.
type feedAPI struct {
	frames      string
	reconnected func()

	mu      sync.Mutex
	lastIDs []string
	queries []string
}

func (f *feedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/events" || r.Header.Get("Authorization") != "Bearer "+cliToken {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.lastIDs = append(f.lastIDs, r.Header.Get("Last-Event-ID"))
	f.queries = append(f.queries, r.URL.RawQuery)
	n := len(f.lastIDs)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	if n == 1 {
		fmt.Fprint(w, f.frames)
		return
	}
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	f.reconnected()
	<-r.Context().Done()
}

const watchFrames = "id: e1-1\nevent: hello\ndata: {\"type\":\"hello\",\"time\":\"2026-01-02T03:04:05Z\",\"resumed\":false,\"heartbeat_ms\":5000}\n\n" +
	"id: e1-2\nevent: deployment\ndata: {\"type\":\"deployment\",\"time\":\"2026-01-02T03:04:05Z\",\"service\":\"web\",\"deployment\":\"d-1\",\"kind\":\"deploy\",\"image\":\"demoapp:v2\",\"status\":\"running\",\"actor\":\"ci\",\"message\":\"\"}\n\n" +
	"id: e1-2\nevent: heartbeat\ndata: {\"type\":\"heartbeat\",\"time\":\"2026-01-02T03:04:06Z\"}\n\n" +
	"id: e1-3\nevent: step\ndata: {\"type\":\"step\",\"time\":\"2026-01-02T03:04:06Z\",\"service\":\"web\",\"deployment\":\"d-1\",\"step\":\"health\",\"status\":\"succeeded\",\"message\":\"2 replica(s) healthy\"}\n\n" +
	"id: e1-4\nevent: log\ndata: {\"type\":\"log\",\"time\":\"2026-01-02T03:04:06Z\",\"service\":\"web\",\"deployment\":\"d-1\",\"step\":\"health\",\"message\":\"web-green-1: healthy (1/2)\"}\n\n" +
	"id: e1-5\nevent: containers\ndata: {\"type\":\"containers\",\"time\":\"2026-01-02T03:04:07Z\",\"service\":\"web\"}\n\n" +
	"id: e1-6\nevent: notice\ndata: {\"type\":\"notice\",\"time\":\"2026-01-02T03:04:07Z\",\"service\":\"web\",\"kind\":\"repair\",\"deployment\":\"\",\"actor\":\"reconciler\",\"message\":\"restarted web-green-1\"}\n\n" +
	"id: e2-0\nevent: reset\ndata: {\"type\":\"reset\",\"time\":\"2026-01-02T03:04:08Z\",\"reason\":\"restarted\"}\n\n"

// runWatch runs deployd watch against f until f sees the reconnect.
func runWatch(t *testing.T, f *feedAPI, args ...string) cliResult {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The reconnect stands in for Ctrl-C: the context ends as runCLI's
	// does on SIGINT.
	f.reconnected = cancel
	var stdout, stderr bytes.Buffer
	code := runCLIContext(ctx, append([]string{"watch"}, args...), &stdout, &stderr,
		envMap(map[string]string{"DEPLOYD_SERVER": srv.URL, "DEPLOYD_TOKEN": cliToken}))
	return cliResult{code, stdout.String(), stderr.String()}
}

func TestCLI_WatchPrintsALinePerEventAndExitsZeroOnInterrupt(t *testing.T) {
	f := &feedAPI{frames: watchFrames}
	r := runWatch(t, f, "--service", "web")
	if r.code != exitOK {
		t.Fatalf("exit = %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	// Times are shown in the local zone.
	at := func(sec int) string {
		return time.Date(2026, 1, 2, 3, 4, sec, 0, time.UTC).Local().Format(time.TimeOnly)
	}
	want := []string{
		at(5) + " web        deploy d-1 demoapp:v2 running",
		at(6) + " web        step health: succeeded (2 replica(s) healthy)",
		at(6) + " web        log health: web-green-1: healthy (1/2)",
		at(7) + " web        containers changed",
		at(7) + " web        repair: restarted web-green-1",
		at(8) + " -          events may have been missed (restarted); run deployd status to see where things stand",
	}
	if got := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("stdout:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lastIDs) != 2 || f.lastIDs[1] != "e2-0" {
		t.Errorf("Last-Event-IDs = %q, want the reconnect to resume after e2-0", f.lastIDs)
	}
	if f.queries[0] != "service=web" {
		t.Errorf("query = %q, want service=web", f.queries[0])
	}
}

func TestCLI_WatchJSONPrintsTheDataLinesWithoutHeartbeats(t *testing.T) {
	r := runWatch(t, &feedAPI{frames: watchFrames}, "--json")
	if r.code != exitOK {
		t.Fatalf("exit = %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 7 {
		t.Fatalf("%d lines, want 7 (every event but the heartbeat):\n%s", len(lines), r.stdout)
	}
	for _, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil || v["type"] == "heartbeat" {
			t.Errorf("line %q: %v, want one event's JSON, no heartbeat", l, err)
		}
	}
}

func TestCLI_RollbackAcrossABreakingSchemaChangeNeedsTheFlag(t *testing.T) {
	fake := &fakeAPI{schemaChange: true}
	r := runFakeCLI(t, fake, nil, "rollback", "--service", "web")
	if r.code != 1 {
		t.Fatalf("exit = %d, want 1", r.code)
	}
	want := "deployd rollback: not rolled back: web's active demoapp:v2 applied notes.0003_drop_legacy; " +
		"the standby demoapp:v1 ran against the old schema and may fail.\n" +
		"Run again with --confirm-schema-change to roll back anyway\n"
	if r.stderr != want {
		t.Fatalf("stderr =\n%s\nwant\n%s", r.stderr, want)
	}

	r = runFakeCLI(t, fake, nil, "rollback", "--service", "web", "--confirm-schema-change")
	if r.code != 0 {
		t.Fatalf("exit with --confirm-schema-change = %d, want 0\nstderr:\n%s", r.code, r.stderr)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if got := fake.bodies[len(fake.bodies)-1]; got != `{"confirm_schema_change":true}` {
		t.Errorf("body = %q, want the confirmation", got)
	}
	if got := fake.bodies[0]; got != "" {
		t.Errorf("body without the flag = %q, want none", got)
	}
}

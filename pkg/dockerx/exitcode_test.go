package dockerx

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/deployd/deployd/pkg/controller"
)

// inspectState answers an inspect of id with the given State.
func inspectState(id string, state map[string]any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"Id": id, "Name": "/web-green-1", "RestartCount": 1, "State": state})
	}
}

// dieEvents answers an events query with one die event per exit code,
// oldest first, then ends the stream as the engine does at "until".
func dieEvents(id string, codes ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		for _, code := range codes {
			_ = enc.Encode(map[string]any{"Type": "container", "Action": "die",
				"Actor": map[string]any{"ID": id, "Attributes": map[string]string{"exitCode": code}}})
		}
	}
}

func TestLastExitCode_RunningAgainReadsTheLastDieEventBetweenDeathAndRestart(t *testing.T) {
	f := newFakeEngine(t)
	f.handle("GET /containers/aaa111/json", inspectState("aaa111", map[string]any{
		"Status": "running", "Running": true, "ExitCode": 0,
		"StartedAt": "2025-03-01T10:00:05.5Z", "FinishedAt": "2025-03-01T10:00:05.25Z",
	}))
	f.handle("GET /events", dieEvents("aaa111", "1", "2"))
	c, _ := f.client(true)

	got, err := c.LastExitCode(context.Background(), "aaa111")
	if err != nil {
		t.Fatalf("LastExitCode: %v", err)
	}
	if got != 2 {
		t.Errorf("exit code = %d, want 2 (the last die event's)", got)
	}
	reqs := f.requests("GET /events")
	if len(reqs) != 1 {
		t.Fatalf("events requests = %d, want 1", len(reqs))
	}
	q := reqs[0].Query
	// The window is the engine's own times: FinishedAt to StartedAt.
	if since, until := q.Get("since"), q.Get("until"); since != "1740823205.250000000" || until != "1740823205.500000000" {
		t.Errorf("since, until = %s, %s; want the death's and the restart's times", since, until)
	}
	var filters map[string]map[string]bool
	if err := json.Unmarshal([]byte(q.Get("filters")), &filters); err != nil {
		t.Fatalf("filters %q: %v", q.Get("filters"), err)
	}
	if !filters["container"]["aaa111"] || !filters["event"]["die"] || !filters["type"]["container"] {
		t.Errorf("filters = %v, want container aaa111's die events", filters)
	}
}

func TestLastExitCode_StoppedContainerShowsItInItsState(t *testing.T) {
	for _, status := range []string{"exited", "restarting"} {
		t.Run(status, func(t *testing.T) {
			f := newFakeEngine(t)
			f.handle("GET /containers/aaa111/json", inspectState("aaa111", map[string]any{
				"Status": status, "ExitCode": 137,
				"StartedAt": "2025-03-01T10:00:00Z", "FinishedAt": "2025-03-01T10:00:05Z",
			}))
			c, _ := f.client(true)
			if got, err := c.LastExitCode(context.Background(), "aaa111"); err != nil || got != 137 {
				t.Errorf("LastExitCode = %d, %v; want 137", got, err)
			}
			if n := len(f.requests("GET /events")); n != 0 {
				t.Errorf("events requests = %d, want none", n)
			}
		})
	}
}

func TestLastExitCode_NoDeathOnRecordIsNotFound(t *testing.T) {
	tests := []struct {
		name   string
		state  map[string]any
		events http.HandlerFunc
	}{
		{"never died", map[string]any{"Status": "running", "Running": true,
			"StartedAt": "2025-03-01T10:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"}, nil},
		{"die event aged out", map[string]any{"Status": "running", "Running": true,
			"StartedAt": "2025-03-01T10:00:05Z", "FinishedAt": "2025-03-01T10:00:04Z"}, dieEvents("aaa111")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEngine(t)
			f.handle("GET /containers/aaa111/json", inspectState("aaa111", tt.state))
			if tt.events != nil {
				f.handle("GET /events", tt.events)
			}
			c, _ := f.client(true)
			if got, err := c.LastExitCode(context.Background(), "aaa111"); !errors.Is(err, controller.ErrNotFound) {
				t.Errorf("LastExitCode = %d, %v; want ErrNotFound", got, err)
			}
		})
	}
}

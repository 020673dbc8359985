package dockerx

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/deployd/deployd/pkg/controller"
)

// hijackExec answers an exec start the way the engine does: it upgrades the
// connection and writes a multiplexed stream, then closes it.
func hijackExec(t *testing.T, stdout, stderr string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer func() { _ = conn.Close() }()
		_, _ = buf.WriteString("HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		writeFrames(buf, stdout, stderr)
		_ = buf.Flush()
	}
}

func writeFrames(buf *bufio.ReadWriter, stdout, stderr string) {
	if stdout != "" {
		_, _ = stdcopy.NewStdWriter(buf, stdcopy.Stdout).Write([]byte(stdout))
	}
	if stderr != "" {
		_, _ = stdcopy.NewStdWriter(buf, stdcopy.Stderr).Write([]byte(stderr))
	}
}

func fakeNginxExec(t *testing.T, f *fakeEngine, exit int, stderr string) {
	f.handle("POST /containers/nginx/exec", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
		writeJSON(w, container.ExecCreateResponse{ID: "exec1"})
	})
	f.handle("POST /exec/exec1/start", hijackExec(t, "", stderr))
	f.handle("GET /exec/exec1/json", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"ID": "exec1", "Running": false, "ExitCode": exit})
	})
}

func TestNginxContainer_TestPassesOnExitZero(t *testing.T) {
	f := newFakeEngine(t)
	fakeNginxExec(t, f, 0, "nginx: configuration file /etc/nginx/nginx.conf test is successful\n")
	c, _ := f.client(false)

	if err := c.NginxContainer("nginx").Test(context.Background()); err != nil {
		t.Fatalf("Test: %v, want nil", err)
	}
	creates := f.requests("POST /containers/nginx/exec")
	if len(creates) != 1 || !strings.Contains(string(creates[0].Body), `"Cmd":["nginx","-t"]`) {
		t.Errorf("exec create = %+v, want one running nginx -t", creates)
	}
}

func TestNginxContainer_TestFailureCarriesNginxOutput(t *testing.T) {
	f := newFakeEngine(t)
	msg := `nginx: [emerg] unknown directive "upstrem" in /etc/nginx/conf.d/web.conf:1`
	fakeNginxExec(t, f, 1, msg+"\nnginx: configuration file /etc/nginx/nginx.conf test failed\n")
	c, _ := f.client(false)

	err := c.NginxContainer("nginx").Test(context.Background())
	if err == nil {
		t.Fatal("Test succeeded, want an error")
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("err = %q, want it to contain nginx's message %q", err, msg)
	}
}

func TestNginxContainer_ReloadSendsHUP(t *testing.T) {
	f := newFakeEngine(t)
	f.handle("POST /containers/nginx/kill", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	c, _ := f.client(false)

	if err := c.NginxContainer("nginx").Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	kills := f.requests("POST /containers/nginx/kill")
	if len(kills) != 1 || kills[0].Query.Get("signal") != "HUP" {
		t.Fatalf("kill requests = %+v, want one with signal HUP", kills)
	}
}

func TestNginxContainer_ReloadOfMissingContainerIsErrNotFound(t *testing.T) {
	f := newFakeEngine(t)
	c, _ := f.client(false)
	if err := c.NginxContainer("nginx").Reload(context.Background()); !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestNginxContainer_WorkersAreTheMastersChildren(t *testing.T) {
	f := newFakeEngine(t)
	f.handle("GET /containers/nginx/json", fixture(t, "inspect_aaa111.json")) // State.Pid 4242
	f.handle("GET /containers/nginx/top", fixture(t, "top_nginx.json"))
	c, _ := f.client(false)

	got, err := c.NginxContainer("nginx").Workers(context.Background())
	if err != nil {
		t.Fatalf("Workers: %v", err)
	}
	if want := []int{4309, 4310}; !slices.Equal(got, want) {
		t.Errorf("workers = %v, want %v", got, want)
	}
}

func TestChildPIDs(t *testing.T) {
	tests := []struct {
		name    string
		top     container.TopResponse
		want    []int
		wantErr bool
	}{
		{
			name: "ps -o pid,ppid",
			top:  container.TopResponse{Titles: []string{"PID", "PPID"}, Processes: [][]string{{"10", "1"}, {"11", "10"}, {"12", "10"}}},
			want: []int{11, 12},
		},
		{
			name: "no children",
			top:  container.TopResponse{Titles: []string{"PID", "PPID"}, Processes: [][]string{{"10", "1"}}},
			want: nil,
		},
		{
			name:    "no PPID column",
			top:     container.TopResponse{Titles: []string{"PID", "CMD"}, Processes: [][]string{{"10", "nginx"}}},
			wantErr: true,
		},
		{
			name:    "short row",
			top:     container.TopResponse{Titles: []string{"PID", "PPID"}, Processes: [][]string{{"10"}}},
			wantErr: true,
		},
		{
			name:    "non-numeric PID",
			top:     container.TopResponse{Titles: []string{"PID", "PPID"}, Processes: [][]string{{"x", "10"}}},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := childPIDs(tt.top, 10)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("pids = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNginxContainer_StoppedOrMissingIsErrUnavailable(t *testing.T) {
	f := newFakeEngine(t)
	f.handle("GET /containers/stopped/json", fixture(t, "inspect_bbb222.json"))
	f.handle("POST /containers/stopped/exec", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"message":"container stopped is not running"}`))
	})
	c, _ := f.client(false)
	for _, name := range []string{"stopped", "missing"} {
		_, err := c.NginxContainer(name).Workers(context.Background())
		if !errors.Is(err, controller.ErrUnavailable) {
			t.Errorf("Workers of %s nginx: err = %v, want ErrUnavailable", name, err)
		}
		// compose starts nginx after deployd: its config test then says
		// "down", so that the upstream waits for it, not "no such thing".
		if err := c.NginxContainer(name).Test(context.Background()); !errors.Is(err, controller.ErrUnavailable) {
			t.Errorf("Test of %s nginx: err = %v, want ErrUnavailable", name, err)
		}
	}
}

func TestRetired(t *testing.T) {
	top := container.TopResponse{
		Titles: []string{"UID", "PID", "PPID", "CMD"},
		Processes: [][]string{
			{"root", "10", "1", "nginx: master process nginx"},
			{"101", "11", "10", "nginx: worker process is shutting down"},
			{"101", "12", "10", "nginx: worker process"},
			{"101", "13", "10", "nginx: worker process"},
		},
	}
	tests := []struct {
		name string
		pids []int
		want bool
	}{
		{"gone", []int{20, 21}, true},
		{"shutting down or gone", []int{11, 20}, true},
		{"one still serving", []int{11, 12}, false},
		{"none asked", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := retired(top, tt.pids)
			if err != nil {
				t.Fatalf("retired: %v", err)
			}
			if got != tt.want {
				t.Errorf("retired(%v) = %v, want %v", tt.pids, got, tt.want)
			}
		})
	}
	if _, err := retired(container.TopResponse{Titles: []string{"PID"}}, []int{1}); err == nil {
		t.Error("retired without a CMD column succeeded, want an error")
	}
}

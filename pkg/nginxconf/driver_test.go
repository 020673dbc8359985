package nginxconf

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/deployd/deployd/pkg/controller"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name      string
		stat      string
		wantState string
		wantPPID  int
		ok        bool
	}{
		{"plain", "1234 (nginx) S 1200 1200 1200 0 -1", "S", 1200, true},
		{"comm with spaces", "1234 (nginx: worker process) S 77 1200 1200", "S", 77, true},
		{"comm with parentheses", "1234 (a) b) (c) R 42 1 1", "R", 42, true},
		{"comm ending in paren and digits", "1234 (x) 9 9) Z 5 1 1", "Z", 5, true},
		{"no closing paren", "1234 nginx S 1200", "", 0, false},
		{"truncated", "1234 (nginx) S", "", 0, false},
		{"non-numeric ppid", "1234 (nginx) S x", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, ppid, err := parseStat([]byte(tt.stat))
			if tt.ok != (err == nil) {
				t.Fatalf("parseStat(%q) error = %v, want ok=%v", tt.stat, err, tt.ok)
			}
			if state != tt.wantState || ppid != tt.wantPPID {
				t.Fatalf("parseStat(%q) = %q, %d; want %q, %d", tt.stat, state, ppid, tt.wantState, tt.wantPPID)
			}
		})
	}
}

func TestChildren_FindsProcessesOfParentInProcDir(t *testing.T) {
	proc := t.TempDir()
	for pid, stat := range map[string]string{
		"10":   "10 (nginx) S 1 10 10",
		"11":   "11 (nginx: worker (x)) S 10 10 10",
		"12":   "12 (nginx: worker) S 10 10 10",
		"13":   "13 (other) S 1 13 13",
		"self": "99 (ignored) S 10 1 1",
	} {
		if err := os.MkdirAll(filepath.Join(proc, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "stat"), []byte(stat+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A process that exits mid-scan leaves a directory without stat.
	if err := os.MkdirAll(filepath.Join(proc, "14"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := children(proc, 10)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []int{11, 12}; !slices.Equal(got, want) {
		t.Fatalf("children = %v, want %v", got, want)
	}
}

func TestExecDriver_WorkersListsChildrenOfPIDFileProcess(t *testing.T) {
	// This test process plays the master: its child is the "worker".
	pidFile := filepath.Join(t.TempDir(), "nginx.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	d := &ExecDriver{PIDFile: pidFile}
	got, err := d.Workers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, cmd.Process.Pid) {
		t.Fatalf("Workers = %v, want it to contain %d", got, cmd.Process.Pid)
	}
}

func TestExecDriver_NginxDownIsUnavailable(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	deadPID := filepath.Join(dir, "dead.pid")
	if err := os.WriteFile(deadPID, []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pid")
	if err := os.WriteFile(garbage, []byte("not a pid"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pidFile string
	}{
		{"missing pid file", filepath.Join(dir, "missing.pid")},
		{"dead master", deadPID},
		{"garbage pid file", garbage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &ExecDriver{PIDFile: tt.pidFile, ReloadCommand: []string{"true"}}
			if _, err := d.Workers(context.Background()); !errors.Is(err, controller.ErrUnavailable) {
				t.Errorf("Workers error = %v, want ErrUnavailable", err)
			}
			if err := d.Reload(context.Background()); !errors.Is(err, controller.ErrUnavailable) {
				t.Errorf("Reload error = %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestExecDriver_TestErrorCarriesOutput(t *testing.T) {
	d := &ExecDriver{TestCommand: []string{"sh", "-c", `echo 'nginx: [emerg] unknown directive "bogus"' >&2; exit 1`}}
	err := d.Test(context.Background())
	if err == nil || !strings.Contains(err.Error(), `unknown directive "bogus"`) {
		t.Fatalf("Test error = %v, want nginx's output", err)
	}
	if errors.Is(err, controller.ErrUnavailable) {
		t.Fatalf("Test error = %v; a rejected config is not unavailability", err)
	}
}

func TestExecDriver_MissingBinaryIsUnavailable(t *testing.T) {
	d := &ExecDriver{TestCommand: []string{filepath.Join(t.TempDir(), "no-such-nginx"), "-t"}}
	if err := d.Test(context.Background()); !errors.Is(err, controller.ErrUnavailable) {
		t.Fatalf("Test error = %v, want ErrUnavailable", err)
	}
}

func TestExecDriver_NoCommandConfiguredIsAnError(t *testing.T) {
	if err := (&ExecDriver{}).Test(context.Background()); err == nil {
		t.Fatal("Test with no command succeeded, want error")
	}
}

func TestRetired_OldWorkersShuttingDownOrGone(t *testing.T) {
	proc := t.TempDir()
	for pid, cmdline := range map[string]string{
		"20": "nginx: worker process\x00",
		"21": "nginx: worker process is shutting down\x00",
	} {
		if err := os.MkdirAll(filepath.Join(proc, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "cmdline"), []byte(cmdline), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		pids []int
		want bool
	}{
		{"exited", []int{22}, true},
		{"shutting down", []int{21, 22}, true},
		{"still serving", []int{20, 21}, false},
		{"none", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retired(proc, tt.pids); got != tt.want {
				t.Fatalf("retired(%v) = %v, want %v", tt.pids, got, tt.want)
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startServe runs serve in the background and returns its address and a
// channel closed when serve returns, with its error left in the buffer.
// The test's cleanup cancels serve and waits for it.
func startServe(t *testing.T, ctx context.Context, cfg config) (string, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	result := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		result <- serve(ctx, cfg, ready, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not return 10s after cancel")
		}
	})
	select {
	case addr := <-ready:
		_, port, _ := net.SplitHostPort(addr)
		return "127.0.0.1:" + port, result
	case err := <-result:
		t.Fatalf("serve ended before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve not listening after 10s")
	}
	return "", nil
}

func testConfig() config {
	c := defaultConfig()
	c.Port = 0 // any free port
	return c
}

func TestRun_MigratePrintsStepsAndExitsWithMigrateExit(t *testing.T) {
	tests := []struct {
		exit     string
		wantCode int
		wantOut  string
	}{
		{"", 0, "Applying app.0002_add_email... OK"},
		{"0", 0, "Applying app.0002_add_email... OK"},
		{"3", 3, "Applying app.0002_add_email... FAILED"},
	}
	for _, tt := range tests {
		t.Run("MIGRATE_EXIT="+tt.exit, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"migrate"}, envFrom(map[string]string{"MIGRATE_EXIT": tt.exit}), &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), "Applying app.0001_initial... OK") || !strings.Contains(stdout.String(), tt.wantOut) {
				t.Fatalf("stdout = %q, want the migration steps ending in %q", stdout.String(), tt.wantOut)
			}
		})
	}
}

func TestRun_MigrateDelayIsInterruptible(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	code := run(ctx, []string{"migrate"}, envFrom(map[string]string{"MIGRATE_DELAY": "1h"}), io.Discard, io.Discard)
	if code == 0 {
		t.Fatalf("exit code = 0, want non-zero after interruption")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("migrate took %v after its context ended", took)
	}
}

func TestRun_MigrateDelayDelays(t *testing.T) {
	start := time.Now()
	code := run(context.Background(), []string{"migrate"}, envFrom(map[string]string{"MIGRATE_DELAY": "200ms"}), io.Discard, io.Discard)
	if code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("migrate took %v, want at least 200ms", took)
	}
}

func TestRun_CrashAtStartExits1WithAMessage(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), nil, envFrom(map[string]string{"CRASH_AT_START": "1"}), io.Discard, &stderr)
	if code != 1 {
		t.Fatalf("exit code = %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "CRASH_AT_START") {
		t.Fatalf("stderr = %q, want it to say why", stderr.String())
	}
}

func TestRun_BadEnvironmentExits2(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), nil, envFrom(map[string]string{"HEALTH_MODE": "flaky"}), io.Discard, &stderr)
	if code != 2 {
		t.Fatalf("exit code = %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "HEALTH_MODE") {
		t.Fatalf("stderr = %q, want it to name HEALTH_MODE", stderr.String())
	}
}

func TestRun_UnknownCommandExits2(t *testing.T) {
	if code := run(context.Background(), []string{"runserver"}, envFrom(nil), io.Discard, io.Discard); code != 2 {
		t.Fatalf("exit code = %d, want 2", code)
	}
}

func TestServe_CrashAfterEndsWithErrorOnceServing(t *testing.T) {
	cfg := testConfig()
	cfg.CrashAfter = 300 * time.Millisecond
	addr, result := startServe(t, context.Background(), cfg)

	// Healthy first: the crash comes after the app has looked fine.
	if status := get(t, "http://"+addr+"/health"); status != http.StatusOK {
		t.Fatalf("status before the crash = %d, want 200", status)
	}
	if err := waitResult(t, result); !errors.Is(err, errCrash) {
		t.Fatalf("serve = %v, want errCrash", err)
	}
}

func TestServe_StartupDelayPostponesListening(t *testing.T) {
	cfg := testConfig()
	cfg.StartupDelay = 200 * time.Millisecond
	start := time.Now()
	startServe(t, context.Background(), cfg)
	if took := time.Since(start); took < cfg.StartupDelay {
		t.Fatalf("listening after %v, want at least %v", took, cfg.StartupDelay)
	}
}

func TestServeOn_ShutdownLetsInFlightRequestsFinish(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		w.WriteHeader(http.StatusOK)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	result := make(chan error, 1)
	go func() { result <- serveOn(ctx, ln, h, 0, io.Discard) }()

	statuses := make(chan int, 1)
	go func() { statuses <- get(t, "http://"+ln.Addr().String()+"/") }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("request never reached the handler")
	}
	stop()
	// Shutdown has begun once new connections are refused; only then let
	// the in-flight handler finish.
	waitRefused(t, ln.Addr().String())
	close(release)

	select {
	case status := <-statuses:
		if status != http.StatusOK {
			t.Fatalf("in-flight request status = %d, want 200", status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request did not finish")
	}
	if err := waitResult(t, result); err != nil {
		t.Fatalf("serveOn after graceful shutdown = %v, want nil", err)
	}
}

func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("listener still accepting 10s after shutdown began")
}

func waitResult(t *testing.T, result <-chan error) error {
	t.Helper()
	select {
	case err := <-result:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("serve still running after 10s")
		return nil
	}
}

func get(t *testing.T, url string) int {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func TestRun_BackupFakeWritesTheFileAndExits(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantCode int
		wantSize int // -1: no file
	}{
		{name: "default size", env: map[string]string{}, wantCode: 0, wantSize: 4096},
		{name: "empty dump", env: map[string]string{"BACKUP_FAKE_BYTES": "0"}, wantCode: 0, wantSize: 0},
		{name: "failing dump", env: map[string]string{"BACKUP_FAKE_BYTES": "10", "BACKUP_FAKE_EXIT": "3"}, wantCode: 3, wantSize: 10},
		{name: "bad size", env: map[string]string{"BACKUP_FAKE_BYTES": "lots"}, wantCode: 2, wantSize: -1},
		{name: "no file named", env: nil, wantCode: 2, wantSize: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "web-1.dump")
			env := map[string]string{}
			if tt.env != nil {
				maps.Copy(env, tt.env)
				env["DEPLOYD_BACKUP_FILE"] = file
			}
			code := run(context.Background(), []string{"backup-fake"}, envFrom(env), io.Discard, io.Discard)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", code, tt.wantCode)
			}
			fi, err := os.Stat(file)
			switch {
			case tt.wantSize < 0 && err == nil:
				t.Errorf("file written (%d bytes), want none", fi.Size())
			case tt.wantSize >= 0 && err != nil:
				t.Errorf("stat: %v, want a file of %d bytes", err, tt.wantSize)
			case tt.wantSize >= 0 && fi.Size() != int64(tt.wantSize):
				t.Errorf("size = %d, want %d", fi.Size(), tt.wantSize)
			}
		})
	}
}

func TestShowMigrations_PrintsTheVersionsPlanAllApplied(t *testing.T) {
	tests := []struct {
		version string
		want    string
	}{
		{"", "[X]  app.0001_initial\n"},
		{"v1", "[X]  app.0001_initial\n"},
		{"v2", "[X]  app.0001_initial\n[X]  app.0002_add_field2\n"},
		{"v3", "[X]  app.0001_initial\n[X]  app.0002_add_field2\n[X]  app.0003_drop_field3\n"},
		{"v3-beta", "[X]  app.0001_initial\n"},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"showmigrations"}, envFrom(map[string]string{"APP_VERSION": tt.version}), &stdout, &stderr)
			if code != 0 || stdout.String() != tt.want {
				t.Errorf("exit %d, stdout %q (stderr %q), want 0 and %q", code, stdout.String(), stderr.String(), tt.want)
			}
		})
	}
}

func TestRun_HealthcheckExitsByTheAppsHealth(t *testing.T) {
	tests := []struct {
		name       string
		healthMode string
		want       int
	}{
		{"healthy", "", 0},
		{"failing", "failing", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.healthMode != "" {
				cfg.HealthMode = tt.healthMode
			}
			addr, _ := startServe(t, context.Background(), cfg)
			_, port, _ := net.SplitHostPort(addr)
			env := map[string]string{"PORT": port, "HEALTH_MODE": tt.healthMode}
			var stderr bytes.Buffer
			if got := run(context.Background(), []string{"healthcheck"}, func(k string) string { return env[k] }, io.Discard, &stderr); got != tt.want {
				t.Errorf("healthcheck exit = %d (%s), want %d", got, stderr.String(), tt.want)
			}
		})
	}
	// Nothing listening: the check fails, naming why.
	port := freePort(t)
	var stderr bytes.Buffer
	env := map[string]string{"PORT": port}
	if got := run(context.Background(), []string{"healthcheck"}, func(k string) string { return env[k] }, io.Discard, &stderr); got != 1 || !strings.Contains(stderr.String(), "healthcheck:") {
		t.Errorf("healthcheck with nothing listening: exit %d, stderr %q; want 1 and a reason", got, stderr.String())
	}
}

// freePort returns a loopback port nothing listens on (just released).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

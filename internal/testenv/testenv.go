// Package testenv holds the helpers deployd's integration tests share: a
// Docker client, the demo app's binary and images, label-based cleanup, a
// private nginx, free ports and unique service names.
//
// Import it only from _test.go files: it calls t.Skip and t.Fatal and keeps
// per-process build caches, none of which belongs in the daemon.
//
// Outside CI a missing Docker engine or nginx skips the test with a message
// saying why; with CI=true it fails it, so a broken CI host cannot pass by
// skipping everything.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// InCI reports whether CI=true; in CI missing Docker/nginx is a failure,
// elsewhere a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// unavailable skips t, or fails it in CI, because a dependency is missing.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI=true, so this is a failure, not a skip)", msg)
	}
	t.Skipf("%s; skipping (with CI=true this fails)", msg)
}

// UniqueService returns a fresh valid service name ("t" and 8 random hex
// digits), so concurrent tests and leftovers of earlier runs never share
// containers or upstream files.
func UniqueService(t testing.TB) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random service name: %v", err)
	}
	return "t" + hex.EncodeToString(b[:])
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process may take it before the caller binds it; StartNginx
// retries for that reason.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatalf("release port %d: %v", port, err)
	}
	return port
}

// getTimeout bounds Get even when ctx has no deadline.
const getTimeout = 5 * time.Second

// maxBody bounds how much of a response Get keeps.
const maxBody = 1 << 20

// Get does GET url with a short timeout and returns status and body ("" and
// an error on failure). Each call uses a fresh connection, so a test sees
// what nginx serves now rather than what an old keep-alive connection to an
// old worker would answer.
func Get(ctx context.Context, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, getTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", url, err)
	}
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, "", fmt.Errorf("GET %s: read body: %w", url, err)
	}
	return resp.StatusCode, string(body), nil
}

// Package lab sets up what deployd's integration tests and its benchmark
// both need on a real host: the demo app's binary and images built through
// the Engine API, deployd's FROM scratch image, a private nginx and a
// private registry on loopback, free ports, and the local engine as a
// single-node swarm shared under one lock.
//
// Nothing here calls testing.T: internal/testenv wraps it for tests (with
// skips, fatals and cleanups), and the benchmark program uses it directly.
package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
)

// ErrNginxNotFound means no nginx binary was found on PATH or at the Debian
// location; callers decide whether that is a skip or a failure.
var ErrNginxNotFound = errors.New("nginx not found on PATH or at /usr/sbin/nginx (apt-get install nginx-light)")

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process may take it before the caller binds it.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("release port %d: %w", port, err)
	}
	return port, nil
}

// FindNginx returns the path of the nginx binary, or ErrNginxNotFound.
func FindNginx() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/nginx"
	if fi, err := os.Stat(debian); err == nil && fi.Mode().IsRegular() {
		return debian, nil
	}
	return "", ErrNginxNotFound
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return "\n" + string(ee.Stderr)
	}
	return ""
}

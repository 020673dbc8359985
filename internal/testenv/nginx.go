package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/pkg/controller"
)

const (
	// nginxStartTimeout covers lab.StartNginx's own retries on a taken port.
	nginxStartTimeout = 30 * time.Second
	nginxStopTimeout  = 10 * time.Second
)

// Nginx is a private nginx master started by the test (own prefix dir,
// loopback port). Its fields, PID and Reload are lab.Nginx's.
type Nginx = lab.Nginx

// StartNginx starts a private nginx for the test and stops it at
// t.Cleanup. It finds nginx on PATH or at /usr/sbin/nginx (skipping, or in
// CI failing, when there is none) and writes a config whose http block
// includes UpstreamDir/*.conf and has one server on 127.0.0.1:Port:
//
//   - location / proxies to upstream services[0];
//   - location /<name>/ proxies to each further service, with the prefix
//     stripped (GET /api/health reaches the app's /health);
//   - HTTP/1.1 with an empty Connection header, so upstream keepalive works.
//
// For every service without an upstream file it writes the placeholder
// `upstream <svc> { server 127.0.0.1:1 down; }`, which answers 502 (nginx
// finds no live server: "no live upstreams while connecting to upstream").
//
// nginx runs with `daemon off` as a child of the test process (master and
// workers in their own process group), writes its pid to PIDFile so that
// ReloadCommand and signal-based code under test work, and is stopped with
// SIGQUIT (what `-s quit` sends) and killed if it lingers. The error log is
// Prefix/logs/error.log; it is copied into the test log when the test fails.
func StartNginx(t testing.TB, services ...string) *Nginx {
	t.Helper()
	if _, err := lab.FindNginx(); err != nil {
		unavailable(t, "%v", err)
	}
	for _, s := range services {
		if !controller.ValidServiceName(s) {
			t.Fatalf("StartNginx: %q is not a valid service name", s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), nginxStartTimeout)
	defer cancel()
	n, err := lab.StartNginx(ctx, t.TempDir(), lab.NginxConfig{Services: services})
	if err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), nginxStopTimeout)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("stop nginx: %v", err)
		}
		if t.Failed() {
			t.Logf("nginx error log (tail):\n%s", n.ErrorLogTail())
		}
	})
	return n
}

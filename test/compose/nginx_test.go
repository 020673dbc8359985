package compose

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/testenv"
)

// nginxTestPrefix lays out what deploy/nginx/nginx.conf includes (site,
// deployd upstream placeholder, certificates) under a private prefix and
// returns the path of the main config, rewritten to that prefix.
func nginxTestPrefix(t *testing.T, site string) string {
	t.Helper()
	root := repoRoot(t)
	dir := t.TempDir()
	for _, d := range []string{"conf.d", "deployd", "certs", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
	}
	mainConf, err := os.ReadFile(filepath.Join(root, "deploy/nginx/nginx.conf"))
	if err != nil {
		t.Fatalf("read nginx.conf: %v", err)
	}
	siteConf, err := os.ReadFile(filepath.Join(root, "deploy/nginx", site))
	if err != nil {
		t.Fatalf("read %s: %v", site, err)
	}
	conf := strings.NewReplacer(
		"/etc/nginx/mime.types", "/etc/nginx/mime.types", // Debian's, as in the container
		"/etc/nginx/deployd/", dir+"/deployd/",
		"/etc/nginx/conf.d/", dir+"/conf.d/",
		"pid /run/nginx.pid;", "pid "+dir+"/nginx.pid;",
		// The test runs as whoever runs it; "user" only matters as root.
		"user nginx;", "",
	).Replace(string(mainConf))
	siteOut := strings.ReplaceAll(string(siteConf), "/etc/nginx/certs/", dir+"/certs/")
	// What deployd writes before the first deploy.
	placeholder := "upstream web {\n    server 127.0.0.1:1 down;\n    keepalive 16;\n}\n"
	for path, body := range map[string]string{
		"nginx.conf":       conf,
		"conf.d/site.conf": siteOut,
		"deployd/web.conf": placeholder,
	} {
		if err := os.WriteFile(filepath.Join(dir, path), []byte(body), 0o644); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
	}
	if strings.Contains(site, "tls") {
		selfSignedCert(t, filepath.Join(dir, "certs"))
	}
	return filepath.Join(dir, "nginx.conf")
}

func TestNginxSites_PassNginxTest(t *testing.T) {
	nginx := requireTool(t, "nginx", "/usr/sbin/nginx")
	for _, site := range []string{"site-http.conf", "site-tls.conf"} {
		t.Run(site, func(t *testing.T) {
			conf := nginxTestPrefix(t, site)
			prefix := filepath.Dir(conf)
			out, err := runErr(prefix, nil, time.Minute, nginx, "-t", "-p", prefix+"/", "-c", conf,
				"-e", prefix+"/logs/error.log")
			if err != nil {
				t.Fatalf("nginx -t on %s failed: %v\n%s", site, err, out)
			}
		})
	}
}

// The site must carry what the issue asks of a production proxy; a
// rewrite that drops one of these would still pass nginx -t.
func TestNginxSites_KeepHeadersAndKeepalive(t *testing.T) {
	root := repoRoot(t)
	common := []string{
		"proxy_pass http://web;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`,
		"proxy_set_header Host $host;", "proxy_set_header X-Real-IP $remote_addr;",
		"proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
		"proxy_set_header X-Forwarded-Proto $scheme;", "proxy_read_timeout", "proxy_connect_timeout",
		"X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Content-Security-Policy",
		"limit_req zone=deployd_login", "limit_req zone=deployd_hooks", "limit_conn deployd_conn",
	}
	tests := []struct {
		file string
		want []string
	}{
		{"site-http.conf", common},
		{"site-tls.conf", append([]string{"return 301 https://", "listen 443 ssl http2", "ssl_certificate ",
			"ssl_certificate_key ", "Strict-Transport-Security"}, common...)},
		{"nginx.conf", []string{"worker_shutdown_timeout", "include /etc/nginx/deployd/*.conf;", "include /etc/nginx/conf.d/*.conf;",
			"zone=deployd_login:", "zone=deployd_hooks:", "zone=deployd_conn:", "limit_req_status 429;"}},
	}
	for _, tt := range tests {
		b, err := os.ReadFile(filepath.Join(root, "deploy/nginx", tt.file))
		if err != nil {
			t.Fatalf("read %s: %v", tt.file, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q", tt.file, w)
			}
		}
	}
}

// The limits are nginx's own behaviour, so they are tested on a running
// nginx with the shipped files: one client's flood of logins or webhook
// posts gets 429 from nginx, while the rest of deployd's routes do not.
func TestNginxSites_LimitLoginAndWebhookPerClient(t *testing.T) {
	nginx := requireTool(t, "nginx", "/usr/sbin/nginx")
	var hits atomic.Int64
	deployd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(deployd.Close)

	conf := nginxTestPrefix(t, "site-http.conf")
	prefix := filepath.Dir(conf)
	port := strconv.Itoa(testenv.FreePort(t))
	site := filepath.Join(prefix, "conf.d/site.conf")
	b, err := os.ReadFile(site)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.NewReplacer(
		"listen 80 default_server;", "listen 127.0.0.1:"+port+" default_server;",
		"listen 80;", "listen 127.0.0.1:"+port+";",
		"http://deployd-api:7400", deployd.URL,
	).Replace(string(b))
	mustWrite(t, site, body, 0o644)

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, nginx, "-p", prefix+"/", "-c", conf, "-e", prefix+"/logs/error.log", "-g", "daemon off;")
	// A SIGKILL to the master (CommandContext's default) leaves its workers
	// running and listening: stop it as `nginx -s quit` does, and kill its
	// process group only if it lingers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})

	get := func(method, path string) int {
		req, err := http.NewRequest(method, "http://127.0.0.1:"+port+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "deployd.example"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for get(http.MethodGet, "/healthz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("nginx did not answer within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	tests := []struct {
		method, path string
		n            int
		wantLimited  bool
	}{
		{http.MethodPost, "/login", 30, true},
		{http.MethodPost, "/hooks/deploy", 60, true},
		{http.MethodGet, "/api/v1/services", 60, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			before := hits.Load()
			limited := 0
			for range tt.n {
				switch code := get(tt.method, tt.path); code {
				case http.StatusTooManyRequests:
					limited++
				case http.StatusOK:
				default:
					t.Fatalf("%s %s: status %d", tt.method, tt.path, code)
				}
			}
			if got := limited > 0; got != tt.wantLimited {
				t.Fatalf("%d of %d %s %s got 429, want limited %v", limited, tt.n, tt.method, tt.path, tt.wantLimited)
			}
			if reached := hits.Load() - before; reached != int64(tt.n-limited) {
				t.Errorf("deployd saw %d requests, want the %d nginx let through", reached, tt.n-limited)
			}
		})
	}
}

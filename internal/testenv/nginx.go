package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

const (
	nginxStartTimeout = 10 * time.Second
	nginxStopTimeout  = 10 * time.Second
	// nginxStartAttempts covers FreePort's race: another process may bind
	// the port between FreePort and nginx's listen.
	nginxStartAttempts = 3
)

// Nginx is a private nginx master started by the test (own prefix dir,
// loopback port).
type Nginx struct {
	Prefix        string // temp dir holding nginx.conf, logs, temp dirs, pid file
	Port          int    // 127.0.0.1 port of the site
	URL           string // "http://127.0.0.1:<Port>"
	UpstreamDir   string // Prefix + "/upstreams", included by nginx.conf as upstreams/*.conf
	ConfPath      string
	PIDFile       string
	TestCommand   []string // {nginxBin, "-p", Prefix, "-c", ConfPath, "-t"}
	ReloadCommand []string // {nginxBin, "-p", Prefix, "-c", ConfPath, "-s", "reload"}
}

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
	bin := findNginx(t)
	for _, s := range services {
		if !controller.ValidServiceName(s) {
			t.Fatalf("StartNginx: %q is not a valid service name", s)
		}
	}

	prefix := t.TempDir()
	n := &Nginx{
		Prefix:      prefix,
		UpstreamDir: filepath.Join(prefix, "upstreams"),
		ConfPath:    filepath.Join(prefix, "nginx.conf"),
		PIDFile:     filepath.Join(prefix, "nginx.pid"),
	}
	n.TestCommand = []string{bin, "-p", prefix, "-c", n.ConfPath, "-t"}
	n.ReloadCommand = []string{bin, "-p", prefix, "-c", n.ConfPath, "-s", "reload"}
	for _, d := range []string{"logs", "temp", "upstreams"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatalf("nginx prefix: %v", err)
		}
	}
	for _, s := range services {
		if err := writePlaceholder(n.UpstreamDir, s); err != nil {
			t.Fatalf("nginx placeholder: %v", err)
		}
	}

	var lastErr error
	for range nginxStartAttempts {
		n.Port = FreePort(t)
		n.URL = "http://127.0.0.1:" + strconv.Itoa(n.Port)
		if err := writeNginxConf(n, services); err != nil {
			t.Fatalf("nginx config: %v", err)
		}
		lastErr = startNginx(t, bin, n)
		if lastErr == nil {
			return n
		}
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
	}
	t.Fatalf("start nginx: %v", lastErr)
	return nil
}

func findNginx(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	const debian = "/usr/sbin/nginx"
	if fi, err := os.Stat(debian); err == nil && fi.Mode().IsRegular() {
		return debian
	}
	unavailable(t, "nginx not found on PATH or at %s (apt-get install nginx-light)", debian)
	return ""
}

func writePlaceholder(dir, service string) error {
	path := filepath.Join(dir, service+".conf")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	conf := fmt.Sprintf("upstream %s { server 127.0.0.1:1 down; }\n", service)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

var nginxConfTmpl = template.Must(template.New("nginx.conf").Parse(`# Private nginx of one test.
{{if .Root}}# Running as root: workers must still read the test's private (0700) prefix.
user root;
{{end -}}
daemon off;
worker_processes 1;
pid {{.N.PIDFile}};
error_log {{.N.Prefix}}/logs/error.log notice;

events {
    worker_connections 256;
}

http {
    access_log {{.N.Prefix}}/logs/access.log;
    client_body_temp_path {{.N.Prefix}}/temp/client_body;
    proxy_temp_path {{.N.Prefix}}/temp/proxy;
    fastcgi_temp_path {{.N.Prefix}}/temp/fastcgi;
    uwsgi_temp_path {{.N.Prefix}}/temp/uwsgi;
    scgi_temp_path {{.N.Prefix}}/temp/scgi;

    include {{.N.UpstreamDir}}/*.conf;

    server {
        listen 127.0.0.1:{{.N.Port}};

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_connect_timeout 2s;
{{range $i, $s := .Services}}{{if eq $i 0}}
        location / {
            proxy_pass http://{{$s}};
        }
{{else}}
        location /{{$s}}/ {
            proxy_pass http://{{$s}}/;
        }
{{end}}{{else}}
        location / {
            return 404;
        }
{{end}}    }
}
`))

func writeNginxConf(n *Nginx, services []string) error {
	var buf bytes.Buffer
	err := nginxConfTmpl.Execute(&buf, struct {
		N        *Nginx
		Root     bool
		Services []string
	}{n, os.Geteuid() == 0, services})
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	if err := os.WriteFile(n.ConfPath, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", n.ConfPath, err)
	}
	return nil
}

var errPortTaken = errors.New("port already in use")

// startNginx starts the master and waits until it listens and has written
// its pid file. On success the master is owned by t.Cleanup.
func startNginx(t testing.TB, bin string, n *Nginx) error {
	t.Helper()
	stderrPath := filepath.Join(n.Prefix, "logs", "stderr.log")
	out, err := os.OpenFile(stderrPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", stderrPath, err)
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(bin, "-p", n.Prefix, "-c", n.ConfPath)
	cmd.Stdout = out
	cmd.Stderr = out
	// Its own process group, so a last-resort kill reaches the workers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
			return
		case <-time.After(nginxStopTimeout):
		}
		t.Errorf("nginx (pid %d) still running %s after SIGQUIT; killing it", cmd.Process.Pid, nginxStopTimeout)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}

	deadline := time.Now().Add(nginxStartTimeout)
	for {
		select {
		case err := <-exited:
			msg := readTail(stderrPath) + readTail(filepath.Join(n.Prefix, "logs", "error.log"))
			if strings.Contains(msg, "Address already in use") {
				return fmt.Errorf("127.0.0.1:%d: %w", n.Port, errPortTaken)
			}
			return fmt.Errorf("nginx exited at start (%v):\n%s", err, msg)
		default:
		}
		if nginxReady(n) {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("nginx not answering on 127.0.0.1:%d after %s:\n%s", n.Port, nginxStartTimeout, readTail(stderrPath))
		}
		time.Sleep(10 * time.Millisecond)
	}

	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("nginx error log (tail):\n%s", readTail(filepath.Join(n.Prefix, "logs", "error.log")))
		}
	})
	return nil
}

// nginxReady reports whether the master wrote its pid file and the site's
// port accepts connections.
func nginxReady(n *Nginx) bool {
	b, err := os.ReadFile(n.PIDFile)
	if err != nil || strings.TrimSpace(string(b)) == "" {
		return false
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(n.Port), 200*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// readTail returns the last few KB of a log file, or a note why not.
func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	const maxTail = 4 << 10
	if len(b) > maxTail {
		b = b[len(b)-maxTail:]
	}
	return string(b)
}

// PID returns the master's pid from PIDFile.
func (n *Nginx) PID() (int, error) {
	b, err := os.ReadFile(n.PIDFile)
	if err != nil {
		return 0, fmt.Errorf("read nginx pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse nginx pid file %s: %w", n.PIDFile, err)
	}
	return pid, nil
}

// Reload runs ReloadCommand; tests that rewrite UpstreamDir by hand use it.
func (n *Nginx) Reload(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, n.ReloadCommand[0], n.ReloadCommand[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx reload: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

package lab

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
	"text/template"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

const (
	nginxStartTimeout = 10 * time.Second
	// nginxStartAttempts covers FreePort's race: another process may bind
	// the port between FreePort and nginx's listen.
	nginxStartAttempts = 3
)

// NginxConfig is what a caller varies in a private nginx's config.
type NginxConfig struct {
	// Services get an upstream each (see StartNginx for the routing).
	Services []string
	// WorkerProcesses defaults to 1.
	WorkerProcesses int
	// WorkerConnections defaults to 256.
	WorkerConnections int
	// HTTPExtra is raw directives added to the http block (e.g.
	// "keepalive_timeout 5s;"); the caller vouches for their syntax.
	HTTPExtra string
	// MainExtra is raw directives added to the main context (e.g.
	// "worker_shutdown_timeout 1s;").
	MainExtra string
	// PrefixedOnly routes Services[0] under /<name>/ like the others, so
	// that every service's path costs nginx the same (the benchmark
	// compares them); / then answers 404.
	PrefixedOnly bool
}

// Nginx is a private nginx master (own prefix dir, loopback port), started
// by StartNginx and owned by its caller until Stop.
type Nginx struct {
	Prefix        string // directory holding nginx.conf, logs, temp dirs, pid file
	Port          int    // 127.0.0.1 port of the site
	URL           string // "http://127.0.0.1:<Port>"
	UpstreamDir   string // Prefix + "/upstreams", included by nginx.conf as upstreams/*.conf
	ConfPath      string
	PIDFile       string
	TestCommand   []string // {nginxBin, "-p", Prefix, "-c", ConfPath, "-t"}
	ReloadCommand []string // {nginxBin, "-p", Prefix, "-c", ConfPath, "-s", "reload"}

	cmd    *exec.Cmd
	exited chan error // receives Wait's result once
	err    error      // Wait's result, after exited was read
	done   bool
}

// StartNginx starts a private nginx in prefix (an existing, empty
// directory the caller owns) and returns once it listens. It writes a
// config whose http block includes UpstreamDir/*.conf and has one server
// on 127.0.0.1:Port:
//
//   - location / proxies to upstream Services[0] (unless PrefixedOnly);
//   - location /<name>/ proxies to each further service, with the prefix
//     stripped (GET /api/health reaches the app's /health);
//   - HTTP/1.1 with an empty Connection header, so upstream keepalive works.
//
// For every service without an upstream file it writes the placeholder
// `upstream <svc> { server 127.0.0.1:1 down; }`, which answers 502.
//
// nginx runs with `daemon off` as a child of this process (master and
// workers in their own process group) and writes its pid to PIDFile so
// that ReloadCommand works. It returns ErrNginxNotFound when there is no
// nginx. The caller must call Stop.
func StartNginx(ctx context.Context, prefix string, cfg NginxConfig) (*Nginx, error) {
	bin, err := FindNginx()
	if err != nil {
		return nil, err
	}
	for _, s := range cfg.Services {
		if !controller.ValidServiceName(s) {
			return nil, fmt.Errorf("start nginx: %q is not a valid service name", s)
		}
	}
	if cfg.WorkerProcesses <= 0 {
		cfg.WorkerProcesses = 1
	}
	if cfg.WorkerConnections <= 0 {
		cfg.WorkerConnections = 256
	}

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
			return nil, fmt.Errorf("nginx prefix: %w", err)
		}
	}
	for _, s := range cfg.Services {
		if err := writePlaceholder(n.UpstreamDir, s); err != nil {
			return nil, fmt.Errorf("nginx placeholder: %w", err)
		}
	}

	var lastErr error
	for range nginxStartAttempts {
		if n.Port, err = FreePort(); err != nil {
			return nil, err
		}
		n.URL = "http://127.0.0.1:" + strconv.Itoa(n.Port)
		if err := writeNginxConf(n, cfg); err != nil {
			return nil, fmt.Errorf("nginx config: %w", err)
		}
		lastErr = n.start(ctx, bin)
		if lastErr == nil {
			return n, nil
		}
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
	}
	return nil, fmt.Errorf("start nginx: %w", lastErr)
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
worker_processes {{.C.WorkerProcesses}};
pid {{.N.PIDFile}};
error_log {{.N.Prefix}}/logs/error.log notice;
{{with .C.MainExtra}}{{.}}
{{end}}
events {
    worker_connections {{.C.WorkerConnections}};
}

http {
    access_log {{.N.Prefix}}/logs/access.log;
    client_body_temp_path {{.N.Prefix}}/temp/client_body;
    proxy_temp_path {{.N.Prefix}}/temp/proxy;
    fastcgi_temp_path {{.N.Prefix}}/temp/fastcgi;
    uwsgi_temp_path {{.N.Prefix}}/temp/uwsgi;
    scgi_temp_path {{.N.Prefix}}/temp/scgi;
{{with .C.HTTPExtra}}    {{.}}
{{end}}
    include {{.N.UpstreamDir}}/*.conf;

    server {
        listen 127.0.0.1:{{.N.Port}};

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_connect_timeout 2s;
{{range $i, $s := .C.Services}}{{if and (eq $i 0) (not $.C.PrefixedOnly)}}
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

func writeNginxConf(n *Nginx, cfg NginxConfig) error {
	var buf bytes.Buffer
	err := nginxConfTmpl.Execute(&buf, struct {
		N    *Nginx
		Root bool
		C    NginxConfig
	}{n, os.Geteuid() == 0, cfg})
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	if err := os.WriteFile(n.ConfPath, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", n.ConfPath, err)
	}
	return nil
}

var errPortTaken = errors.New("port already in use")

// start runs the master and waits until it listens and has written its
// pid file.
func (n *Nginx) start(ctx context.Context, bin string) error {
	stderrPath := filepath.Join(n.Prefix, "logs", "stderr.log")
	out, err := os.OpenFile(stderrPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", stderrPath, err)
	}
	defer out.Close() // the child has its own copy
	// Not CommandContext: the master outlives ctx, which only bounds the
	// start; Stop ends it.
	cmd := exec.Command(bin, "-p", n.Prefix, "-c", n.ConfPath)
	cmd.Stdout = out
	cmd.Stderr = out
	// Its own process group, so a last-resort kill reaches the workers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", bin, err)
	}
	n.cmd = cmd
	n.done = false
	n.exited = make(chan error, 1)
	exited := n.exited
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(nginxStartTimeout)
	for {
		select {
		case err := <-exited:
			n.done, n.err = true, err
			msg := readTail(stderrPath) + readTail(filepath.Join(n.Prefix, "logs", "error.log"))
			if strings.Contains(msg, "Address already in use") {
				return fmt.Errorf("127.0.0.1:%d: %w", n.Port, errPortTaken)
			}
			return fmt.Errorf("nginx exited at start (%v):\n%s", err, msg)
		case <-ctx.Done():
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = n.Stop(stopCtx)
			return fmt.Errorf("wait for nginx to listen: %w", ctx.Err())
		default:
		}
		if nginxReady(n) {
			return nil
		}
		if time.Now().After(deadline) {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = n.Stop(stopCtx)
			return fmt.Errorf("nginx not answering on 127.0.0.1:%d after %s:\n%s", n.Port, nginxStartTimeout, readTail(stderrPath))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop ends nginx with SIGQUIT (what `-s quit` sends: graceful) and kills
// the whole process group if it still runs when ctx ends; it returns an
// error only in that case. Safe to call more than once.
func (n *Nginx) Stop(ctx context.Context) error {
	if n.cmd == nil || n.done {
		return nil
	}
	_ = n.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case n.err = <-n.exited:
		n.done = true
		return nil
	case <-ctx.Done():
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	n.err = <-n.exited
	n.done = true
	return fmt.Errorf("nginx (pid %d) still running after SIGQUIT; killed it: %w", n.cmd.Process.Pid, ctx.Err())
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

// ErrorLogTail returns the last few KB of nginx's error log, or a note
// why not.
func (n *Nginx) ErrorLogTail() string {
	return readTail(filepath.Join(n.Prefix, "logs", "error.log"))
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

// Reload runs ReloadCommand (`nginx -s reload`), which returns once the
// signal is sent, not when new workers run.
func (n *Nginx) Reload(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, n.ReloadCommand[0], n.ReloadCommand[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx reload: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

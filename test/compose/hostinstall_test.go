package compose

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/deployd/deployd/internal/testenv"
)

// The shipped paths the host install names, which the test swaps for its own.
const (
	shippedDeployd = "/usr/local/bin/deployd"
	shippedHelper  = "/usr/local/libexec/deployd-nginx-helper"
	shippedSocket  = "/run/deployd-nginx.sock"
)

// TestHostInstall_UnprivilegedDeploydTestsAndReloadsRootNginx is the host
// install as the README ships it, minus systemd itself: a root nginx with a
// non-default pid path, a system user for deployd, the helper started per
// connection exactly as deployd-nginx.socket and deployd-nginx@.service
// say, and deploy/deployd.yml's own test and reload commands run as that
// user under no_new_privs, as the unit's NoNewPrivileges=yes runs them.
func TestHostInstall_UnprivilegedDeploydTestsAndReloadsRootNginx(t *testing.T) {
	if os.Geteuid() != 0 {
		msg := "needs root: it creates a system user and runs nginx as root, as a host does"
		if testenv.InCI() {
			t.Fatalf("%s; CI=true runs as root, so this is a failure", msg)
		}
		t.Skipf("%s (with CI=true this fails)", msg)
	}
	nginxBin := requireTool(t, "nginx", "/usr/sbin/nginx")
	requireTool(t, "setpriv")
	requireTool(t, "bash")
	root := repoRoot(t)

	// Everything the unprivileged user runs or reads lives here, 0755 like
	// /usr/local; the pid file and logs below stay root's.
	dir, err := os.MkdirTemp("", "deployd-hostinstall-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	u := systemUser(t)
	bin := filepath.Join(dir, "deployd")
	run(t, root, []string{"CGO_ENABLED=0"}, 5*time.Minute, "go", "build", "-o", bin, "./cmd/deployd")

	ng := startRootNginx(t, nginxBin, dir, u)

	t.Run("nginx -t as the deployd user fails without the helper", func(t *testing.T) {
		out, err := runAs(u, nil, nginxBin, "-p", ng.prefix, "-c", ng.conf, "-t")
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Fatalf("nginx -t as %s: err %v, output %q; want a permission error (the reported failure)", u.name, err, out)
		}
	})

	sock := serveHelperUnits(t, root, dir, u, []string{
		"DEPLOYD_NGINX=" + nginxBin, "DEPLOYD_NGINX_ARGS=-p " + ng.prefix + " -c " + ng.conf,
	})
	shipped := shippedHostConfig(t, root)
	if shipped.Nginx.PIDFile != "" {
		t.Fatalf("deploy/deployd.yml sets nginx.pid_file %q; the host install reads nginx's own", shipped.Nginx.PIDFile)
	}
	local := func(cmd []string) []string {
		if len(cmd) < 2 || cmd[0] != shippedDeployd || cmd[1] != "nginx" {
			t.Fatalf("shipped command %q does not go through %s nginx", cmd, shippedDeployd)
		}
		return append([]string{bin, "nginx", "--socket", sock}, cmd[2:]...)
	}

	t.Run("test_command", func(t *testing.T) {
		out, err := runAs(u, nil, local(shipped.Nginx.TestCommand)...)
		if err != nil || !strings.Contains(out, "syntax is ok") {
			t.Fatalf("test_command as %s: err %v, output %q; want nginx's syntax is ok", u.name, err, out)
		}
	})

	t.Run("reload_command replaces the workers", func(t *testing.T) {
		before := workerPIDs(t, ng.master(t))
		if len(before) == 0 {
			t.Fatal("nginx master has no workers")
		}
		out, err := runAs(u, nil, local(shipped.Nginx.ReloadCommand)...)
		if err != nil {
			t.Fatalf("reload_command as %s: %v\n%s", u.name, err, out)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			now := workerPIDs(t, ng.master(t))
			if len(now) > 0 && !slices.ContainsFunc(now, func(p int) bool { return slices.Contains(before, p) }) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("workers %v still include some of %v after the reload", now, before)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("deployd check reads the non-default pid path through the helper", func(t *testing.T) {
		cfg := filepath.Join(dir, "deployd.yml")
		body := strings.ReplaceAll(shipped.raw, `"`+shippedDeployd+`", "nginx"`, `"`+bin+`", "nginx", "--socket", "`+sock+`"`)
		mustWrite(t, cfg, body, 0o644)
		env := []string{"DEPLOYD_ADMIN_TOKEN=" + randomHex(t), "DEPLOYD_CI_TOKEN=" + randomHex(t), "DEPLOYD_WEBHOOK_SECRET=" + randomHex(t)}
		out, err := runAs(u, env, bin, "check", "--config", cfg)
		want := "nginx pid file: " + ng.pidFile + " (matches nginx's config)"
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("deployd check as %s: err %v\n%s\nwant %q", u.name, err, out, want)
		}
	})

	t.Run("the helper runs nothing else", func(t *testing.T) {
		master := ng.master(t)
		for _, req := range []string{"-s stop", "stop", "reload; id", "-c /tmp/evil.conf", "-t -c /tmp/evil.conf", "", "$(id)"} {
			out, err := rawRequest(sock, req)
			if err != nil || !strings.Contains(out, "refused") || !strings.HasSuffix(out, "status=2\n") {
				t.Errorf("request %q: answer %q, err %v; want a refusal with status=2", req, out, err)
			}
		}
		// Past the helper's 64 bytes the rest goes unread, so the answer
		// may be lost to a reset; what matters is that nothing ran.
		if out, err := rawRequest(sock, "reload"+strings.Repeat(" ", 4096)); strings.Contains(out, "status=0") {
			t.Errorf("over-long request: answer %q, err %v; want no nginx run", out, err)
		}
		if got := ng.master(t); got != master || !alive(master) {
			t.Errorf("nginx master %d -> %d (alive %v) after refused requests, want it untouched", master, got, alive(master))
		}
	})
}

// user is a system user made for the test.
type user struct {
	name     string
	uid, gid int
}

// systemUser creates a system user with its own group, as the README's
// useradd line does, and removes both when the test ends.
func systemUser(t *testing.T) user {
	t.Helper()
	useradd := requireTool(t, "useradd")
	userdel := requireTool(t, "userdel")
	name := "dpdt" + randomHex(t)[:12]
	run(t, "/", nil, time.Minute, useradd, "--system", "--user-group", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name)
	t.Cleanup(func() {
		if out, err := runErr("/", nil, time.Minute, userdel, name); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := osuser.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return user{name: name, uid: uid, gid: gid}
}

// runAs runs argv as u with only u's own group and no_new_privs, with a
// clean environment plus env, and returns the combined output.
func runAs(u user, env []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"--reuid=" + strconv.Itoa(u.uid), "--regid=" + strconv.Itoa(u.gid), "--clear-groups",
		"--no-new-privs", "--inh-caps=-all", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "setpriv", args...)
	cmd.Dir = "/"
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/nonexistent"}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// rootNginx is an nginx master running as root, laid out as a
// distribution's: the prefix, pid file and logs are root's, the upstream
// directory deployd's.
type rootNginx struct {
	prefix, conf, pidFile string
}

func startRootNginx(t *testing.T, bin, dir string, u user) *rootNginx {
	t.Helper()
	prefix := filepath.Join(dir, "nginx") + "/"
	for _, d := range []string{"logs", "run", "deployd"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(prefix, "deployd"), u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	ng := &rootNginx{prefix: prefix, conf: filepath.Join(prefix, "nginx.conf"), pidFile: filepath.Join(prefix, "run/nginx-hostinstall.pid")}
	// Not /run/nginx.pid: deployd must learn the path from nginx.
	mustWrite(t, ng.conf, "pid "+ng.pidFile+";\nerror_log "+prefix+"logs/error.log;\nworker_processes 1;\nevents {}\n"+
		"http {\n    access_log off;\n    include "+prefix+"deployd/*.conf;\n"+
		"    server { listen 127.0.0.1:"+strconv.Itoa(testenv.FreePort(t))+"; location / { return 200 \"ok\\n\"; } }\n}\n", 0o644)
	mustWrite(t, filepath.Join(prefix, "deployd/web.conf"), "upstream web {\n    server 127.0.0.1:1 down;\n}\n", 0o644)
	if err := os.Chown(filepath.Join(prefix, "deployd/web.conf"), u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	run(t, "/", nil, time.Minute, bin, "-p", prefix, "-c", ng.conf)
	t.Cleanup(func() {
		pid, err := ng.pid()
		if err != nil {
			return
		}
		if out, err := runErr("/", nil, time.Minute, bin, "-p", prefix, "-c", ng.conf, "-s", "quit"); err != nil {
			t.Logf("nginx -s quit: %v\n%s", err, out)
		}
		for deadline := time.Now().Add(10 * time.Second); alive(pid) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			_ = syscallKill(pid)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pid, err := ng.pid(); err == nil && len(workerPIDs(t, pid)) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nginx wrote no pid file or started no worker within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ng
}

func (n *rootNginx) pid() (int, error) {
	b, err := os.ReadFile(n.pidFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func (n *rootNginx) master(t *testing.T) int {
	t.Helper()
	pid, err := n.pid()
	if err != nil {
		t.Fatalf("nginx pid: %v", err)
	}
	return pid
}

// workerPIDs lists ppid's children from /proc, as deployd's ExecDriver
// does.
func workerPIDs(t *testing.T, ppid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// unitKeys reads a systemd unit's Key=Value lines; a key given more than
// once keeps every value.
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			keys[k] = append(keys[k], v)
		}
	}
	return keys
}

// serveHelperUnits does for the test what systemd does with the shipped
// deployd-nginx.socket and deployd-nginx@.service, read from deploy/systemd:
// it listens on the socket with the unit's owner, group and mode (the group
// is the deployd user's) and, for every connection, runs the service's
// ExecStart as root with its Environment, the connection as stdin and
// stdout. env adds to the unit's environment (last wins), as a drop-in
// would. It returns the socket's path.
func serveHelperUnits(t *testing.T, root, dir string, u user, env []string) string {
	t.Helper()
	sockUnit := unitKeys(t, filepath.Join(root, "deploy/systemd/deployd-nginx.socket"))
	svcUnit := unitKeys(t, filepath.Join(root, "deploy/systemd/deployd-nginx@.service"))
	for _, want := range []struct {
		keys       map[string][]string
		key, value string
	}{
		{sockUnit, "ListenStream", shippedSocket}, {sockUnit, "Accept", "yes"}, {sockUnit, "SocketUser", "root"},
		{sockUnit, "SocketGroup", "deployd"}, {svcUnit, "StandardInput", "socket"}, {svcUnit, "StandardOutput", "socket"},
		{svcUnit, "ExecStart", shippedHelper},
	} {
		if got := want.keys[want.key]; len(got) != 1 || got[0] != want.value {
			t.Fatalf("unit has %s=%q, want %q", want.key, got, want.value)
		}
	}
	if u, ok := svcUnit["User"]; ok && (len(u) != 1 || u[0] != "root") {
		t.Fatalf("helper service runs as %q; nginx -t on a root nginx needs root", u)
	}
	mode, err := strconv.ParseUint(sockUnit["SocketMode"][0], 8, 32)
	if err != nil {
		t.Fatalf("SocketMode: %v", err)
	}
	helper := filepath.Join(root, "deploy/systemd/deployd-nginx-helper")
	unitEnv := append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, svcUnit["Environment"]...)

	sock := filepath.Join(dir, "deployd-nginx.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(sock, 0, u.gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, os.FileMode(mode)); err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		journal bytes.Buffer
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := conn.(*net.UnixConn).File()
				_ = conn.Close()
				if err != nil {
					return
				}
				defer f.Close()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				var stderr bytes.Buffer
				cmd := exec.CommandContext(ctx, helper)
				cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, &stderr
				cmd.Env = append(slices.Clone(unitEnv), env...)
				_ = cmd.Run()
				mu.Lock()
				journal.Write(stderr.Bytes())
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		t.Logf("helper's journal:\n%s", journal.String())
	})
	return sock
}

// rawRequest sends one request line to the helper, as any member of the
// socket's group could, and returns the answer read until the helper
// closed the connection.
func rawRequest(sock, req string) (string, error) {
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return "", err
	}
	if _, err := conn.Write([]byte(req + "\n")); err != nil {
		return "", err
	}
	var out bytes.Buffer
	_, err = out.ReadFrom(conn)
	return out.String(), err
}

// hostConfig is deploy/deployd.yml: its text and the nginx keys the test
// runs.
type hostConfig struct {
	raw   string
	Nginx struct {
		TestCommand   []string `yaml:"test_command"`
		ReloadCommand []string `yaml:"reload_command"`
		PIDFile       string   `yaml:"pid_file"`
	} `yaml:"nginx"`
}

func shippedHostConfig(t *testing.T, root string) hostConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy/deployd.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c hostConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("parse deploy/deployd.yml: %v", err)
	}
	c.raw = string(b)
	return c
}

package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/lab"
)

// The images DeploydImage and NginxImage build; a test that runs deployd
// or nginx in containers names them.
const (
	DeploydImageRef = "deployd-ci:latest"
	NginxImageRef   = "deployd-ci-nginx:latest"
)

// DeploydImage builds deployd statically from the repository and wraps it
// in a FROM scratch image laid out like the shipped Dockerfile's (see
// lab.BuildDeploydImage). It returns DeploydImageRef.
func DeploydImage(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := lab.BuildDeploydImage(ctx, repoRoot(t), t.TempDir(), DeploydImageRef); err != nil {
		t.Fatalf("%v", err)
	}
	return DeploydImageRef
}

// lddPath matches the library paths in ldd's output: "libz.so.1 =>
// /lib/x86_64-linux-gnu/libz.so.1 (0x...)" and "/lib64/ld-linux-x86-64.so.2
// (0x...)".
var lddPath = regexp.MustCompile(`(?m)(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)`)

// NginxImage assembles a FROM scratch nginx image out of the host's Debian
// nginx binary and the shared libraries it links, with the users, files
// and directories nginx expects. It answers `nginx -t` by exec and reloads
// on SIGHUP like the official image. It returns NginxImageRef.
func NginxImage(t testing.TB) string {
	t.Helper()
	nginx, err := exec.LookPath("/usr/sbin/nginx")
	if err != nil {
		if nginx, err = exec.LookPath("nginx"); err != nil {
			unavailable(t, "nginx is not installed (scripts/ensure-deps.sh installs it)")
		}
	}
	ldd := runTool(t, "", nil, "ldd", nginx)
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	files := []string{nginx, "/etc/nginx/mime.types"}
	for _, m := range lddPath.FindAllStringSubmatch(ldd, -1) {
		files = append(files, m[1])
	}
	for _, f := range files {
		copyFile(t, f, filepath.Join(rootfs, strings.TrimPrefix(f, "/")))
	}
	if filepath.Join(rootfs, "usr/sbin/nginx") != filepath.Join(rootfs, strings.TrimPrefix(nginx, "/")) {
		copyFile(t, nginx, filepath.Join(rootfs, "usr/sbin/nginx"))
	}
	// uid 101 as in the official image; deploy/nginx/nginx.conf runs its
	// workers as "nginx".
	writeFile(t, filepath.Join(rootfs, "etc/passwd"), "root:x:0:0:root:/root:/sbin/nologin\nnginx:x:101:101:nginx:/nonexistent:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n", 0o644)
	writeFile(t, filepath.Join(rootfs, "etc/group"), "root:x:0:\nnginx:x:101:\nnogroup:x:65534:\n", 0o644)
	// Upstream servers are container names: resolve them through Docker's
	// DNS (resolv.conf and hosts are provided by the engine).
	writeFile(t, filepath.Join(rootfs, "etc/nsswitch.conf"), "passwd: files\ngroup: files\nhosts: files dns\n", 0o644)
	for _, d := range []string{"var/lib/nginx", "var/log/nginx", "run", "tmp", "etc/nginx/conf.d", "etc/nginx/deployd", "etc/nginx/certs"} {
		writeFile(t, filepath.Join(rootfs, d, ".keep"), "", 0o644)
	}
	writeFile(t, filepath.Join(dir, "Dockerfile"), `FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
`, 0o644)
	runTool(t, dir, nil, "docker", "build", "-q", "-t", NginxImageRef, dir)
	return NginxImageRef
}

// repoRoot is the module's directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// runTool runs a build tool in dir and returns its output; a failure fails
// the test with the output.
func runTool(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t testing.TB, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("mkdir for %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// copyFile copies src (following symlinks) to dst, keeping its mode.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	if err := copyFileErr(src, dst); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

func copyFileErr(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", dst, cerr)
		}
	}()
	_, err = io.Copy(out, in)
	return err
}

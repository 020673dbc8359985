package nginxconf

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/internal/testenv"
)

func TestParsePIDDirective(t *testing.T) {
	tests := []struct {
		name      string
		dump      string
		want      string
		wantFound bool
		wantErr   bool
	}{
		{"main file", "# configuration file /etc/nginx/nginx.conf:\nuser www-data;\npid /run/nginx/nginx.pid;\nevents {}\n", "/run/nginx/nginx.pid", true, false},
		{"nginx's own lines before the dump are skipped",
			"nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\nnginx: configuration file /etc/nginx/nginx.conf test is successful\n" +
				"# configuration file /etc/nginx/nginx.conf:\npid /var/run/custom.pid;\n", "/var/run/custom.pid", true, false},
		{"no pid directive", "# configuration file /etc/nginx/nginx.conf:\nevents {}\nhttp { server { listen 80; } }\n", "", false, false},
		{"quoted path", "# configuration file /etc/nginx/nginx.conf:\npid \"/run/with space.pid\";\n", "/run/with space.pid", true, false},
		{"single quotes and an escape", "# configuration file /etc/nginx/nginx.conf:\npid '/run/a\\'b.pid';\n", "/run/a'b.pid", true, false},
		{"commented out", "# configuration file /etc/nginx/nginx.conf:\n# pid /run/old.pid;\npid /run/new.pid; # the real one\n", "/run/new.pid", true, false},
		{"a pid inside a block is not the master's", "# configuration file /etc/nginx/nginx.conf:\nhttp { map $x $pid { pid 1; } }\n", "", false, false},
		{"directive split across lines", "# configuration file /etc/nginx/nginx.conf:\npid\n    /run/split.pid\n;\n", "/run/split.pid", true, false},
		{"in a file included at the top level",
			"# configuration file /etc/nginx/nginx.conf:\ninclude /etc/nginx/main.d/*.conf;\nevents {}\n\n" +
				"# configuration file /etc/nginx/main.d/pid.conf:\npid /run/included.pid;\n", "/run/included.pid", true, false},
		{"included http file with a brace in a string does not shift depth",
			"# configuration file /etc/nginx/nginx.conf:\npid /run/n.pid;\nhttp { include conf.d/*.conf; }\n\n" +
				"# configuration file /etc/nginx/conf.d/a.conf:\nserver { return 200 \"}\"; }\n", "/run/n.pid", true, false},
		{"not a dump", "nginx: [emerg] unknown directive \"bogus\"\n", "", false, true},
		{"unterminated quote", "# configuration file /etc/nginx/nginx.conf:\npid \"/run/x.pid;\n", "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found, err := ParsePIDDirective([]byte(tt.dump))
			if (err != nil) != tt.wantErr || got != tt.want || found != tt.wantFound {
				t.Fatalf("ParsePIDDirective = %q, %v, %v; want %q, %v, error %v", got, found, err, tt.want, tt.wantFound, tt.wantErr)
			}
		})
	}
}

func FuzzParsePIDDirective(f *testing.F) {
	f.Add([]byte("# configuration file /etc/nginx/nginx.conf:\npid /run/nginx.pid;\n"))
	f.Add([]byte("# configuration file a:\nhttp { pid x; }\n# configuration file b:\n'\\"))
	f.Add([]byte("nginx: ok\n# configuration file a:\n\"}\" { pid \"q\";"))
	f.Fuzz(func(t *testing.T, dump []byte) {
		path, found, err := ParsePIDDirective(dump)
		if err != nil && (found || path != "") {
			t.Fatalf("error %v with a result %q, %v", err, path, found)
		}
		if !found && path != "" {
			t.Fatalf("path %q without found", path)
		}
	})
}

func TestWithFlag_ReplacesOnlyTheTestFlag(t *testing.T) {
	tests := []struct {
		test []string
		want []string
	}{
		{[]string{"nginx", "-t"}, []string{"nginx", "-T"}},
		{[]string{"/usr/sbin/nginx", "-p", "/srv/ng", "-c", "/srv/ng/nginx.conf", "-t"}, []string{"/usr/sbin/nginx", "-p", "/srv/ng", "-c", "/srv/ng/nginx.conf", "-T"}},
		{[]string{"/usr/local/bin/deployd", "nginx", "-t"}, []string{"/usr/local/bin/deployd", "nginx", "-T"}},
		{[]string{"sudo", "nginx", "-q", "-t"}, []string{"sudo", "nginx", "-q", "-T"}},
		{[]string{"/usr/local/bin/check-nginx"}, nil},
	}
	for _, tt := range tests {
		got, ok := WithFlag(tt.test, "-T")
		if !slices.Equal(got, tt.want) || ok != (tt.want != nil) {
			t.Errorf("WithFlag(%q, -T) = %q, %v; want %q", tt.test, got, ok, tt.want)
		}
	}
}

// nginxPrefix writes conf (with an error log and events block of its own)
// into a fresh prefix and returns nginx's binary and the test command for
// it. No master is started: nginx -T reads the files only.
func nginxPrefix(t *testing.T, conf string, files map[string]string) (string, []string) {
	t.Helper()
	bin, err := lab.FindNginx()
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("%v; CI=true, so this is a failure", err)
		}
		t.Skipf("%v", err)
	}
	prefix := t.TempDir()
	for _, d := range []string{"logs", "run", "main.d"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files["nginx.conf"] = "error_log " + prefix + "/logs/error.log;\n" + conf + "\nevents {}\n"
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(prefix, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return bin, []string{bin, "-p", prefix + "/", "-c", filepath.Join(prefix, "nginx.conf"), "-t"}
}

func TestConfiguredPIDFile_RealNginx(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Run("absolute pid directive", func(t *testing.T) {
		_, cmd := nginxPrefix(t, "pid PREFIX/run/custom.pid;", map[string]string{})
		prefix := cmd[2]
		conf := strings.ReplaceAll(mustRead(t, cmd[4]), "PREFIX/", prefix)
		mustWriteFile(t, cmd[4], conf)
		got, err := ConfiguredPIDFile(ctx, cmd)
		if want := filepath.Join(prefix, "run/custom.pid"); err != nil || got != want {
			t.Fatalf("ConfiguredPIDFile = %q, %v; want %q", got, err, want)
		}
	})
	t.Run("relative pid directive is under -p", func(t *testing.T) {
		_, cmd := nginxPrefix(t, "pid run/rel.pid;", map[string]string{})
		got, err := ConfiguredPIDFile(ctx, cmd)
		if want := filepath.Join(cmd[2], "run/rel.pid"); err != nil || got != want {
			t.Fatalf("ConfiguredPIDFile = %q, %v; want %q", got, err, want)
		}
	})
	t.Run("pid in a file included at the top level", func(t *testing.T) {
		_, cmd := nginxPrefix(t, "include main.d/*.conf;", map[string]string{"main.d/pid.conf": "pid run/inc.pid;\n"})
		got, err := ConfiguredPIDFile(ctx, cmd)
		if want := filepath.Join(cmd[2], "run/inc.pid"); err != nil || got != want {
			t.Fatalf("ConfiguredPIDFile = %q, %v; want %q", got, err, want)
		}
	})
	t.Run("no pid directive: the build's --pid-path", func(t *testing.T) {
		bin, cmd := nginxPrefix(t, "", map[string]string{})
		v, err := exec.CommandContext(ctx, bin, "-V").CombinedOutput()
		if err != nil {
			t.Fatalf("nginx -V: %v\n%s", err, v)
		}
		want := buildOption(v, "pid-path")
		if want == "" {
			want = "logs/nginx.pid"
		}
		if !filepath.IsAbs(want) {
			want = filepath.Join(cmd[2], want)
		}
		got, err := ConfiguredPIDFile(ctx, cmd)
		if err != nil || got != want {
			t.Fatalf("ConfiguredPIDFile = %q, %v; want %q", got, err, want)
		}
	})
	t.Run("a config nginx rejects is an error with nginx's message", func(t *testing.T) {
		_, cmd := nginxPrefix(t, "bogus_directive on;", map[string]string{})
		_, err := ConfiguredPIDFile(ctx, cmd)
		if err == nil || !strings.Contains(err.Error(), "bogus_directive") {
			t.Fatalf("err = %v, want nginx's complaint about bogus_directive", err)
		}
	})
	t.Run("a test command without -t", func(t *testing.T) {
		if _, err := ConfiguredPIDFile(ctx, []string{"true"}); !errors.Is(err, ErrNoTestFlag) {
			t.Fatalf("err = %v, want ErrNoTestFlag", err)
		}
	})
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustWriteFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

package nginxconf

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestRender_DefaultTemplateMatchesGolden(t *testing.T) {
	tests := []struct {
		golden  string
		service string
		addrs   []string
	}{
		{"placeholder.golden", "web", nil},
		{"one_server.golden", "web", []string{"127.0.0.1:32768"}},
		{"mixed_servers.golden", "api_v2", []string{"web-green-1:8000", "[::1]:8080", "10.0.0.7:8000", "10.0.0.7:8000"}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			got, err := Render(DefaultTemplate(), tt.service, tt.addrs)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Render =\n%s\nwant (%s)\n%s", got, path, want)
			}
		})
	}
}

func TestValidateAddress(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:8000", true},
		{"10.1.2.3:65535", true},
		{"[::1]:80", true},
		{"[2001:db8::7]:8080", true},
		{"web-green-1:8000", true},
		{"web_green.internal:1", true},
		{"Web1:80", true},
		{"unix:/etc/nginx/deployd/web.switch.sock", true},
		{"unix:/run/d_1/web-2.sock", true},

		{"unix:relative.sock", false},
		{"unix:/run//web.sock", false},
		{"unix:/run/web.sock;", false},
		{"unix:/run/my web.sock", false},
		{"unix:/run/{web}.sock", false},
		{"unix:", false},

		{"127.0.0.1", false},
		{"127.0.0.1:", false},
		{"127.0.0.1:0", false},
		{"127.0.0.1:65536", false},
		{"127.0.0.1:080", false},
		{"127.0.0.1:+80", false},
		{"127.0.0.1:-1", false},
		{"127.0.0.1:8o", false},
		{"999.1.1.1:80", false},
		{"1.2.3:80", false},
		{"::1:80", false},
		{"[::1]80", false},
		{"[::1]:", false},
		{"[1.2.3.4]:80", false},
		{"[fe80::1%eth0]:80", false},
		{"[::1]]:80", false},
		{"[web]:80", false},
		{"-web:80", false},
		{".web:80", false},
		{":80", false},
		{"", false},
		{"web:80;", false},
		{"web;:80", false},
		{"web{:80", false},
		{"web}:80", false},
		{"web#:80", false},
		{`web":80`, false},
		{"web':80", false},
		{"we b:80", false},
		{"web\t:80", false},
		{"web\n:80", false},
		{"$host:80", false},
		{"web:80 backup", false},
		{"wéb:80", false},
		{strings.Repeat("a", 254) + ":80", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := ValidateAddress(tt.addr)
			if tt.ok && err != nil {
				t.Fatalf("ValidateAddress(%q) = %v, want nil", tt.addr, err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidateAddress(%q) = %v, want ErrInvalid", tt.addr, err)
			}
		})
	}
}

func TestValidateService(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"web", true},
		{"a", true},
		{"api_v2-blue", true},
		{"a" + strings.Repeat("b", 62), true},
		{"a" + strings.Repeat("b", 63), false},
		{"", false},
		{"Web", false},
		{"1web", false},
		{"-web", false},
		{"web.conf", false},
		{"../web", false},
		{"web ", false},
		{"web\n", false},
		{"web;", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateService(tt.name)
			if tt.ok != (err == nil) {
				t.Fatalf("ValidateService(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
		})
	}
}

func TestRender_RejectsBadTemplateOutput(t *testing.T) {
	tests := []struct {
		name string
		text string
	}{
		{"empty output", "{{/* nothing */}}"},
		{"whitespace only", "  \n\t\n"},
		{"NUL byte", "upstream {{.Service}} { server 127.0.0.1:1 down; }\x00"},
		{"invalid UTF-8", "# \xff\nupstream {{.Service}} { server 127.0.0.1:1 down; }"},
		{"unknown field", "upstream {{.Service}} { {{.Nope}} }"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := ParseTemplate("user.tmpl", tt.text)
			if err != nil {
				t.Fatalf("ParseTemplate: %v", err)
			}
			if out, err := Render(tmpl, "web", []string{"127.0.0.1:80"}); err == nil {
				t.Fatalf("Render = %q, want error", out)
			}
		})
	}
}

var serverLine = regexp.MustCompile(`^\s*server\s+(\S+)\s+max_fails=0;$`)

func FuzzRender(f *testing.F) {
	seeds := [][3]string{
		{"web", "127.0.0.1:8000", "[::1]:8001"},
		{"web", "127.0.0.1:80; include /etc/shadow", ""},
		{"web", "127.0.0.1:80\n}\nserver { listen 80; }", ""},
		{"web } upstream evil {", "127.0.0.1:80", ""},
		{"web", "evil.example:80 backup", "a:1"},
		{"web", "$remote_addr:80", "`x`:80"},
		{"web", "[::1]:80]", "[fe80::1%25eth0]:80"},
		{"web", "host#comment:80", "'q':80"},
		{"web\x00", "127.0.0.1:80\x00", "\"x\":80"},
		{"web", "127.0.0.1:99999", "127.0.0.1:0"},
		{"", "", ""},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	tmpl := DefaultTemplate()
	f.Fuzz(func(t *testing.T, service, a1, a2 string) {
		var addrs []string
		for _, a := range []string{a1, a2} {
			if a != "" {
				addrs = append(addrs, a)
			}
		}
		out, err := Render(tmpl, service, addrs)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Render error = %v, want ErrInvalid", err)
			}
			return
		}
		for _, in := range append([]string{service}, addrs...) {
			if i := strings.IndexAny(in, ";{}#\"'`$ \t\r\n\x00\\"); i >= 0 {
				t.Fatalf("accepted input %q with forbidden byte %q", in, in[i])
			}
		}
		want := map[string]bool{}
		for _, a := range addrs {
			want[a] = true
		}
		got := map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.Contains(line, "server ") {
				continue
			}
			if len(addrs) == 0 {
				continue // the placeholder's fixed server line
			}
			m := serverLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("server line %q has unexpected shape in\n%s", line, out)
			}
			if !want[m[1]] {
				t.Fatalf("server %q is not one of the inputs %q", m[1], addrs)
			}
			got[m[1]] = true
		}
		if len(got) != len(want) {
			t.Fatalf("rendered servers %v, want %v", got, want)
		}
		if n := strings.Count(string(out), "{"); n != 1 {
			t.Fatalf("output has %d '{', want 1:\n%s", n, out)
		}
	})
}

package compose

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	}
	tests := []struct {
		file string
		want []string
	}{
		{"site-http.conf", common},
		{"site-tls.conf", append([]string{"return 301 https://", "listen 443 ssl http2", "ssl_certificate ",
			"ssl_certificate_key ", "Strict-Transport-Security"}, common...)},
		{"nginx.conf", []string{"worker_shutdown_timeout", "include /etc/nginx/deployd/*.conf;", "include /etc/nginx/conf.d/*.conf;"}},
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

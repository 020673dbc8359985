package compose

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/deployd/deployd/internal/config"
)

// deployd's API must be reachable from nginx only, never from the app's
// containers on the backend network: the shipped stack puts it on a
// network of its own and listens there alone.
func TestComposeFile_APIListensOnlyOnANetworkTheAppsAreNotOn(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]struct {
			Networks    yaml.Node `yaml:"networks"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
		Networks map[string]struct {
			Name     string `yaml:"name"`
			Internal bool   `yaml:"internal"`
		} `yaml:"networks"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	// networks is a list of names or a map of name to settings.
	networksOf := func(n yaml.Node) map[string][]string {
		out := map[string][]string{}
		switch n.Kind {
		case yaml.SequenceNode:
			for _, c := range n.Content {
				out[c.Value] = nil
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				var settings struct {
					Aliases []string `yaml:"aliases"`
				}
				if err := n.Content[i+1].Decode(&settings); err != nil {
					t.Fatalf("networks of a service: %v", err)
				}
				out[n.Content[i].Value] = settings.Aliases
			}
		}
		return out
	}

	cfg, err := config.Load(filepath.Join(root, "deploy", "compose", "deployd.yml"), func(string) string { return "" })
	if err != nil {
		t.Fatalf("load deploy/compose/deployd.yml: %v", err)
	}
	host, _, _ := strings.Cut(cfg.Listen, ":")
	var apiNet string
	for name, aliases := range networksOf(file.Services["deployd"].Networks) {
		if slices.Contains(aliases, host) {
			apiNet = name
		}
	}
	if apiNet == "" {
		t.Fatalf("listen %s names no alias deployd has on one of its networks", cfg.Listen)
	}
	for name, svc := range file.Services {
		_, on := networksOf(svc.Networks)[apiNet]
		if want := name == "deployd" || name == "nginx"; on != want {
			t.Errorf("service %s on deployd's API network %s: %v, want %v", name, apiNet, on, want)
		}
	}
	if !file.Networks[apiNet].Internal {
		t.Errorf("network %s is not internal", apiNet)
	}
	for name, svc := range cfg.Services {
		if svc.Network == file.Networks[apiNet].Name {
			t.Errorf("services.%s.network puts the app on deployd's API network %s", name, svc.Network)
		}
	}
	if hc := strings.Join(file.Services["deployd"].Healthcheck.Test, " "); !strings.Contains(hc, "//"+cfg.Listen+"/") {
		t.Errorf("deployd's healthcheck %q does not ask the address it listens on (%s)", hc, cfg.Listen)
	}
	for _, site := range []string{"site-http.conf", "site-tls.conf"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy", "nginx", site))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "http://"+cfg.Listen+";") {
			t.Errorf("%s does not proxy to %s", site, cfg.Listen)
		}
	}
}

package api

import (
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var routeParam = regexp.MustCompile(`:([a-z]+)`)

func TestOpenAPI_DocumentsExactlyTheRegisteredRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("parse openapi.yaml: %v", err)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}

	h := newHarness(t)
	var registered []string
	for _, r := range h.srv.App().GetRoutes(true) {
		if r.Method == "HEAD" {
			continue // fiber adds HEAD to every GET
		}
		if !isAPIPath(r.Path) {
			continue // the status page's routes serve HTML, not the API
		}
		registered = append(registered, r.Method+" "+routeParam.ReplaceAllString(r.Path, "{$1}"))
	}
	sort.Strings(documented)
	sort.Strings(registered)
	if strings.Join(documented, "\n") != strings.Join(registered, "\n") {
		t.Errorf("documented routes:\n%s\nregistered routes:\n%s", strings.Join(documented, "\n"), strings.Join(registered, "\n"))
	}
}

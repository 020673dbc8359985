package compose

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// configKeys lists the leaf keys of a config document as dotted paths:
// services' names become <name>, list items [], and env (free-form) is a
// leaf itself.
func configKeys(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			configKeys(c, prefix, out)
		}
	case yaml.SequenceNode:
		if len(n.Content) > 0 && n.Content[0].Kind == yaml.MappingNode {
			for _, c := range n.Content {
				configKeys(c, prefix+"[]", out)
			}
			return
		}
		out[prefix] = true
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i].Value, n.Content[i+1]
			path := key
			if prefix != "" {
				path = prefix + "." + key
			}
			if prefix == "services" {
				path = "services.<name>"
			}
			if key == "env" && strings.HasPrefix(prefix, "services.") {
				out[path] = true
				continue
			}
			configKeys(val, path, out)
		}
	default:
		out[prefix] = true
	}
}

// The README's configuration reference and the annotated full example
// (which internal/config's tests load against the config struct) name the same
// keys, so neither can drift from the code unnoticed.
func TestReadmeReference_ListsEveryConfigKey(t *testing.T) {
	root := repoRoot(t)
	full, err := os.ReadFile(filepath.Join(root, "internal/config/testdata/full.yml"))
	if err != nil {
		t.Fatalf("read full.yml: %v", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(full, &doc); err != nil {
		t.Fatalf("parse full.yml: %v", err)
	}
	inExample := map[string]bool{}
	configKeys(&doc, "", inExample)

	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatalf("read README: %v", err)
	}
	_, section, ok := strings.Cut(string(readme), "### Configuration reference\n")
	if !ok {
		t.Fatal(`README has no "### Configuration reference" section`)
	}
	section, _, _ = strings.Cut(section, "\n#")
	inReadme := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(section, -1) {
		inReadme[m[1]] = true
	}
	if len(inReadme) == 0 {
		t.Fatal("the README's configuration reference has no rows")
	}
	for _, k := range sortedKeys(inExample) {
		if !inReadme[k] {
			t.Errorf("config key %s (in full.yml) is missing from the README's reference", k)
		}
	}
	for _, k := range sortedKeys(inReadme) {
		if !inExample[k] {
			t.Errorf("README's reference lists %s, which full.yml does not have", k)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

package debimage

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Each version of the example carries its whole migration history; the
// files a version shares with the one before must be the same bytes, or
// two images would disagree about what a migration did.
func TestDjangoExample_EachVersionExtendsThePreviousHistory(t *testing.T) {
	var prev []string
	var prevDir string
	for i, v := range ExampleVersions {
		dir := filepath.Join(exampleDir, "versions", v, "migrations")
		names, err := filepath.Glob(filepath.Join(dir, "0*.py"))
		if err != nil {
			t.Fatal(err)
		}
		for j := range names {
			names[j] = filepath.Base(names[j])
		}
		slices.Sort(names)
		if len(names) != i+1 {
			t.Fatalf("%s has migrations %v, want %d", v, names, i+1)
		}
		if !slices.Equal(names[:len(prev)], prev) {
			t.Fatalf("%s migrations %v do not extend %v", v, names, prev)
		}
		for _, n := range prev {
			a, errA := os.ReadFile(filepath.Join(prevDir, n))
			b, errB := os.ReadFile(filepath.Join(dir, n))
			if errA != nil || errB != nil || !bytes.Equal(a, b) {
				t.Fatalf("%s/%s differs from the previous version's (%v, %v)", v, n, errA, errB)
			}
		}
		prev, prevDir = names, dir
	}
	// The schema tooling reads the kind of change from the name.
	if !strings.Contains(prev[1], "add") || !strings.Contains(prev[2], "drop") {
		t.Fatalf("migrations %v: want \"add\" in the second's name and \"drop\" in the third's", prev)
	}
}

func TestExampleFiles_SendOnlyTheAppNotCachesOrLocalSecrets(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"Dockerfile", "manage.py", "notes/__pycache__/views.cpython-311.pyc", "notes/views.pyc", ".env", "web.env", "docker-compose.yml", "staticfiles/x.css", "notesite/settings.py", "versions/v1/models.py"} {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := exampleFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.name)
	}
	want := []string{"Dockerfile", "manage.py", "notesite/settings.py", "versions/v1/models.py"}
	if !slices.Equal(got, want) {
		t.Fatalf("build context = %v, want %v", got, want)
	}
}

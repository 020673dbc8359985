package debimage

import (
	"regexp"
	"testing"
)

func TestTags_AreStableForTheSameInputs(t *testing.T) {
	o := Options{Suite: "bookworm", Mirror: "http://archive.example.test/debian"}
	a, b := planFor(o), planFor(o)
	if a != b {
		t.Fatalf("two plans for the same options differ:\n%+v\n%+v", a, b)
	}
	// The form scripts and the README rely on.
	for _, tag := range []string{a.Base, a.Django, a.Postgres} {
		if !regexp.MustCompile(`^deployd-(debian:bookworm|django|postgres):[0-9a-f]{12}$|^deployd-debian:bookworm-[0-9a-f]{12}$`).MatchString(tag) {
			t.Fatalf("tag %q does not have the documented form", tag)
		}
	}
}

func TestTags_ChangeWithEveryInput(t *testing.T) {
	base := Options{Suite: "bookworm", Mirror: "http://archive.example.test/debian"}
	want := planFor(base)
	tests := []struct {
		name                string
		change              func(*inputs)
		base, django, pgsql bool // which tags must change
	}{
		{"mirror", func(in *inputs) { in.mirror = "http://other.example.test/debian" }, true, true, true},
		{"suite", func(in *inputs) { in.suite = "trixie" }, true, true, true},
		{"variant", func(in *inputs) { in.variant = "buildd" }, true, true, true},
		{"base tweaks", func(in *inputs) { in.baseTweaks += "#" }, true, true, true},
		{"django packages", func(in *inputs) { in.djangoPackages = append(in.djangoPackages, "python3-yaml") }, false, true, false},
		{"django Dockerfile", func(in *inputs) { in.djangoDockerfile += "\n# changed" }, false, true, false},
		{"postgres packages", func(in *inputs) { in.postgresPackages = in.postgresPackages[1:] }, false, false, true},
		{"postgres Dockerfile", func(in *inputs) { in.postgresDockerfile += "\n# changed" }, false, false, true},
		{"postgres entrypoint", func(in *inputs) { in.postgresEntrypoint += "\n# changed" }, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := defaultInputs(base)
			tt.change(&in)
			got := in.plan()
			for _, c := range []struct {
				what       string
				got, was   string
				mustChange bool
			}{
				{"base", got.Base, want.Base, tt.base},
				{"django", got.Django, want.Django, tt.django},
				{"postgres", got.Postgres, want.Postgres, tt.pgsql},
			} {
				if changed := c.got != c.was; changed != c.mustChange {
					t.Errorf("%s tag %s -> %s: changed = %v, want %v", c.what, c.was, c.got, changed, c.mustChange)
				}
			}
		})
	}
}

func TestTags_IgnorePackageOrder(t *testing.T) {
	in := defaultInputs(Options{Suite: "bookworm", Mirror: "http://archive.example.test/debian"})
	want := in.plan()
	in.djangoPackages = []string{in.djangoPackages[2], in.djangoPackages[0], in.djangoPackages[1], in.djangoPackages[3]}
	if got := in.plan(); got != want {
		t.Fatalf("reordered packages changed the tags: %+v, want %+v", got, want)
	}
}

func TestContentHash_NamesAndLengthsSeparateInputs(t *testing.T) {
	a := contentHash(input{"a", "bc"}, input{"d", ""})
	b := contentHash(input{"a", "b"}, input{"d", "c"})
	if a == b {
		t.Fatalf("different inputs hash alike: %s", a)
	}
}

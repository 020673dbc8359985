package debimage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMirror_FindsTheSuitesArchiveInBothFormats(t *testing.T) {
	tests := []struct {
		file  string
		suite string
		want  string // "" means ErrNoMirror
	}{
		{"deb822-debian.sources", "bookworm", "http://archive.example.test/debian"},
		{"deb822-debian.sources", "bookworm-security", "http://security.example.test/debian-security"},
		{"deb822-debian.sources", "trixie", ""},
		// deb-src only, disabled and the security suite are skipped;
		// continuation lines are read.
		{"deb822-security-first.sources", "bookworm", "http://multi-line.example.test/debian"},
		{"deb822-other-suite.sources", "bookworm", ""},
		// Comments, deb-src and the security suite are skipped; options
		// in brackets are not the URL.
		{"classic.list", "bookworm", "http://archive.example.test/debian"},
		{"classic-other-suite.list", "bookworm", ""},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.suite, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			parse := ParseSourcesList
			if filepath.Ext(tt.file) == ".sources" {
				parse = ParseDeb822
			}
			got, err := parse(f, tt.suite)
			if tt.want == "" {
				if !errors.Is(err, ErrNoMirror) {
					t.Fatalf("got %q, %v; want ErrNoMirror", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("mirror = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestMirrorIn_PrefersDeb822AndFallsBackToSourcesList(t *testing.T) {
	tests := []struct {
		host string
		want string
	}{
		{"host-deb822", "http://archive.example.test/debian"},
		{"host-classic", "http://archive.example.test/debian"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			dir := filepath.Join("testdata", tt.host)
			got, err := mirrorIn(filepath.Join(dir, "sources.list"), filepath.Join(dir, "sources.list.d"), "bookworm")
			if err != nil || got != tt.want {
				t.Fatalf("mirror = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	_, err := mirrorIn(filepath.Join(t.TempDir(), "sources.list"), t.TempDir(), "bookworm")
	if !errors.Is(err, ErrNoMirror) {
		t.Fatalf("empty host: err = %v, want ErrNoMirror", err)
	}
}

func FuzzParseDeb822(f *testing.F) {
	for _, name := range []string{"deb822-debian.sources", "deb822-security-first.sources"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, s string) {
		url, err := ParseDeb822(strings.NewReader(s), "bookworm")
		if err == nil && url == "" {
			t.Fatalf("no error and no URL")
		}
	})
}

func FuzzParseSourcesList(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "classic.list"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add("deb [ broken http://x bookworm main")
	f.Fuzz(func(t *testing.T, s string) {
		url, err := ParseSourcesList(strings.NewReader(s), "bookworm")
		if err == nil && url == "" {
			t.Fatalf("no error and no URL")
		}
	})
}

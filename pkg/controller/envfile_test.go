package controller

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseEnvFile(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{"empty", "", map[string]string{}, ""},
		{"comments and blank lines", "# header\n\n   \n  # indented comment\nA=1\n", map[string]string{"A": "1"}, ""},
		{"export prefix", "export A=1\nexport  B=2\n", map[string]string{"A": "1", "B": "2"}, ""},
		{"double quotes removed", `A="hello world"`, map[string]string{"A": "hello world"}, ""},
		{"single quotes removed", `A='it''s'`, map[string]string{"A": "it''s"}, ""},
		{"mismatched quotes kept", `A="x'`, map[string]string{"A": `"x'`}, ""},
		{"lone quote kept", `A="`, map[string]string{"A": `"`}, ""},
		{"only one pair removed", `A=""x""`, map[string]string{"A": `"x"`}, ""},
		{"empty value", "A=\nB=\"\"", map[string]string{"A": "", "B": ""}, ""},
		{"equals in value", "URL=postgres://u:p@db/x?a=b", map[string]string{"URL": "postgres://u:p@db/x?a=b"}, ""},
		{"hash inside value is not a comment", "A=x#y", map[string]string{"A": "x#y"}, ""},
		{"space around key", "  A =1", map[string]string{"A": "1"}, ""},
		{"later line wins", "A=1\nA=2", map[string]string{"A": "2"}, ""},
		{"crlf line endings", "A=1\r\nB=2\r\n", map[string]string{"A": "1", "B": "2"}, ""},

		{"no equals", "A=1\nSECRET_LINE_WITHOUT_EQUALS", nil, "line 2: want KEY=VALUE"},
		{"key with space", "API KEY=hunter2", nil, "line 1: want KEY=VALUE"},
		{"key starting with digit", "1A=hunter2", nil, "line 1: want KEY=VALUE"},
		{"empty key", "=hunter2", nil, "line 1: want KEY=VALUE"},
		{"line numbers count comments", "# c\n\nbad hunter2", nil, "line 3: want KEY=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnvFile([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("parseEnvFile(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "SECRET") {
					t.Errorf("error %q echoes the line's content", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseEnvFile(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseEnvFile(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestReadEnvFile_ErrorNamesFileButNotValue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.env")
	if err := os.WriteFile(path, []byte("OK=1\nPASSWORD hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := readEnvFile(path)
	if err == nil {
		t.Fatal("readEnvFile: no error, want one for line 2")
	}
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "line 2") || strings.Contains(msg, "hunter2") {
		t.Errorf("error = %q, want the path and line 2 without the value", msg)
	}
	if _, err := readEnvFile(filepath.Join(t.TempDir(), "missing.env")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("readEnvFile(missing) error = %v, want one wrapping a not-exist error", err)
	}
}

func FuzzParseEnvFile(f *testing.F) {
	for _, s := range []string{"A=1", "export A='x'", "# c\nB=\"y\"", "bad line", "=x", "A=\"", "\xff=1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		vars, err := parseEnvFile(b)
		if err != nil {
			return
		}
		for k := range vars {
			if !envKeyRE.MatchString(k) {
				t.Errorf("parseEnvFile(%q) accepted key %q", b, k)
			}
		}
	})
}

package controller

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The cases are the ones compose users write.
func TestParseEnvFile(t *testing.T) {
	const badKey = "want KEY=VALUE, with KEY made of letters, digits and _"
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{"empty", "", map[string]string{}, ""},
		{"comments and blank lines", "# header\n\n   \n  # indented comment\nA=1\n", map[string]string{"A": "1"}, ""},
		{"export prefix", "export A=1\nexport  B=2\n", map[string]string{"A": "1", "B": "2"}, ""},
		{"double quotes", `A="hello world"`, map[string]string{"A": "hello world"}, ""},
		{"single quotes", `A='hello world'`, map[string]string{"A": "hello world"}, ""},
		{"single quotes are literal", `A='a\nb $B'`, map[string]string{"A": `a\nb $B`}, ""},
		{"escapes in double quotes", `A="line1\nline2 say \"hi\" now"`, map[string]string{"A": "line1\nline2 say \"hi\" now"}, ""},
		{"no escapes unquoted", `A=a\nb`, map[string]string{"A": `a\nb`}, ""},
		{"double quotes span lines", "A=\"l1\nl2\"\nB=2", map[string]string{"A": "l1\nl2", "B": "2"}, ""},
		{"inline comment", "A=1 # the answer\nB=2\t# tab", map[string]string{"A": "1", "B": "2"}, ""},
		{"hash without a space before is the value's", "A=x#y", map[string]string{"A": "x#y"}, ""},
		{"hash inside double quotes", `A="a # b"`, map[string]string{"A": "a # b"}, ""},
		{"hash inside single quotes", `A='a # b'`, map[string]string{"A": "a # b"}, ""},
		{"comment after a quoted value", `A="x" # c`, map[string]string{"A": "x"}, ""},
		{"empty values", "A=\nB=\"\"\nC=''", map[string]string{"A": "", "B": "", "C": ""}, ""},
		{"spaces around =", "A = 1\n  B =  two words  ", map[string]string{"A": "1", "B": "two words"}, ""},
		{"equals in value", "URL=postgres://u:p@db/x?a=b", map[string]string{"URL": "postgres://u:p@db/x?a=b"}, ""},
		{"keys defined above are expanded", "A=1\nB=${A}2\nC=\"$A$A\"\nD=$NOPE\nE=pa\\$WORD\nF='$A'",
			map[string]string{"A": "1", "B": "12", "C": "11", "D": "", "E": "pa$WORD", "F": "$A"}, ""},
		{"later line wins", "A=1\nA=2", map[string]string{"A": "2"}, ""},
		{"crlf line endings", "A=1\r\nB=\"x\"\r\n", map[string]string{"A": "1", "B": "x"}, ""},

		{"no equals", "A=1\nSECRET_LINE_WITHOUT_EQUALS", nil, "line 2: " + badKey},
		{"key with space", "API KEY=hunter2", nil, "line 1: " + badKey},
		{"key starting with digit", "1A=hunter2", nil, "line 1: " + badKey},
		{"key with a dot", "A.B=hunter2", nil, "line 1: " + badKey},
		{"empty key", "=hunter2", nil, "line 1: " + badKey},
		{"line numbers count comments", "# c\n\nbad hunter2", nil, "line 3: " + badKey},
		{"line numbers count multi-line values", "A=\"x\ny\"\nbad hunter2", nil, "line 3: " + badKey},
		{"unterminated quote", "A=1\nB=\"hunter2\nC=3", nil, "line 2: a quoted value has no closing quote"},
		{"mismatched quotes", `A="hunter2'`, nil, "line 1: a quoted value has no closing quote"},
		{"text after a closing quote", `A='hunter2''s'`, nil, "line 1: " + badKey},
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
				t.Errorf("parseEnvFile(%q) = %q, want %q", tt.in, got, tt.want)
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
	for _, s := range []string{"A=1", "export A='x'", "# c\nB=\"y\"", "bad line", "=x", "A=\"", "\xff=1",
		"A=\"l1\nl2\" # c\r\nB=${A}x", "A='a#b' # c\nB=\"\\n\\\"\""} {
		f.Add([]byte(s))
	}
	errRE := regexp.MustCompile(`^line [1-9][0-9]*: [a-zA-Z =,_]+$`)
	f.Fuzz(func(t *testing.T, b []byte) {
		vars, err := parseEnvFile(b)
		if err != nil {
			// Only the line and a fixed message: never the file's content.
			if !errRE.MatchString(err.Error()) {
				t.Errorf("parseEnvFile(%q) error %q says more than a line and a reason", b, err)
			}
			return
		}
		for k := range vars {
			if !envKeyRE.MatchString(k) {
				t.Errorf("parseEnvFile(%q) accepted key %q", b, k)
			}
		}
	})
}

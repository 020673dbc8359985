package controller

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The prune script runs in the backup image's sh; the host's sh proves
// what it removes.
func TestPruneScript_KeepsTheNewestOfTheService(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this host")
	}
	tests := []struct {
		name  string
		files []string
		keep  string
		want  []string
		out   string
	}{
		{
			name: "older beyond keep go, other services and files stay",
			files: []string{
				"web-20260101T000000.000000Z-aaaaaa.dump", "web-20260102T000000.000000Z-bbbbbb.dump",
				"web-20260103T000000.000000Z-cccccc.dump", "web-api-20250101T000000.000000Z-dddddd.dump",
				"web-manual.dump", "notes.txt",
			},
			keep: "2",
			want: []string{
				"notes.txt", "web-20260102T000000.000000Z-bbbbbb.dump", "web-20260103T000000.000000Z-cccccc.dump",
				"web-api-20250101T000000.000000Z-dddddd.dump", "web-manual.dump",
			},
			out: "kept 2",
		},
		{
			name:  "fewer than keep",
			files: []string{"web-20260101T000000.000000Z-aaaaaa.dump"},
			keep:  "5",
			want:  []string{"web-20260101T000000.000000Z-aaaaaa.dump"},
			out:   "kept 1",
		},
		{name: "empty volume", keep: "5", out: "kept 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(sh, "-c", pruneScript, "prune", dir, "web", tt.keep)
			cmd.Env = []string{"LC_ALL=C", "PATH=" + os.Getenv("PATH")}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("script: %v\n%s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tt.out {
				t.Errorf("output = %q, want %q", got, tt.out)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Name())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("files left = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{2516582, "2.4 MiB"},
		{3 << 30, "3.0 GiB"},
	}
	for _, tt := range tests {
		if got := formatBytes(tt.n); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

package compose

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/deployd/deployd/internal/testenv"
)

// The images deploy/compose/ci.override.yml names.
const (
	deploydCIImage = testenv.DeploydImageRef
	nginxCIImage   = testenv.NginxImageRef
)

func buildDeploydImage(t *testing.T) { testenv.DeploydImage(t) }

func buildNginxImage(t *testing.T) {
	requireTool(t, "/usr/sbin/nginx", "nginx")
	testenv.NginxImage(t)
}

func mustWrite(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("mkdir for %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

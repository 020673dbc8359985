package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// deploydDockerfile lays the image out like the shipped Dockerfile (same
// user, same directories owned by it), FROM scratch because the shipped
// multi-stage build needs a registry to pull its builder from.
const deploydDockerfile = `FROM scratch
COPY deployd /deployd
COPY --chown=65532:65532 data/ /var/lib/deployd/
COPY --chown=65532:65532 upstreams/ /etc/nginx/deployd/
USER 65532:65532
ENV DEPLOYD_CONFIG=/etc/deployd/deployd.yml
ENTRYPOINT ["/deployd"]
CMD ["serve"]
`

// DeploydImageUID is the user the deployd image runs as, and the owner
// of its directories: a directory bind-mounted into it must let this
// user write.
const DeploydImageUID = 65532

// BuildDeploydImage builds ./cmd/deployd of the module at root statically
// (CGO_ENABLED=0, version "ci") into dir, an empty directory the caller
// owns, and wraps it in a FROM scratch image tagged ref with `docker
// build`.
func BuildDeploydImage(ctx context.Context, root, dir, ref string) error {
	if err := runTool(ctx, root, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version=ci", "-o", filepath.Join(dir, "deployd"), "./cmd/deployd"); err != nil {
		return err
	}
	// COPY of a directory copies its contents; a marker file makes sure the
	// directory itself is created even by builders that skip empty ones.
	for _, d := range []string{"data", "upstreams"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("deployd image context: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, d, ".keep"), nil, 0o644); err != nil {
			return fmt.Errorf("deployd image context: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(deploydDockerfile), 0o644); err != nil {
		return fmt.Errorf("deployd image context: %w", err)
	}
	return runTool(ctx, dir, nil, "docker", "build", "-q", "-t", ref, dir)
}

// runTool runs a build tool in dir with env added to this process's and
// returns an error holding its output when it fails.
func runTool(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
)

const (
	demoPackage = "github.com/deployd/deployd/examples/demoapp"
	// ImageLabel marks images built here, so they can be found and pruned
	// by hand (`docker image prune -a --filter label=deployd.test`).
	ImageLabel = "deployd.test"
)

// DemoApp is a built demo app binary and the directory of its sources
// (which holds the Dockerfile).
type DemoApp struct {
	SrcDir string
	Binary string
}

// ImageBuilder is the one Engine API call BuildImage needs.
type ImageBuilder interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
}

// BuildDemoApp builds examples/demoapp (static, CGO_ENABLED=0, for the
// host's architecture). It must run with a working directory inside this
// module, since it locates the sources with `go list`. The binary lives in
// a directory under os.TempDir() named after a hash of the sources and the
// Go version, so repeated runs reuse it instead of leaving a copy behind
// each time; concurrent processes each write their own temp file and
// rename it into place.
func BuildDemoApp(ctx context.Context) (DemoApp, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-f", "{{.Dir}}", demoPackage).Output()
	if err != nil {
		return DemoApp{}, fmt.Errorf("locate %s: %w%s", demoPackage, err, stderrOf(err))
	}
	srcDir := strings.TrimSpace(string(out))

	key, err := sourceHash(srcDir)
	if err != nil {
		return DemoApp{}, err
	}
	dir := filepath.Join(os.TempDir(), "deployd-demoapp-"+key[:16])
	app := DemoApp{SrcDir: srcDir, Binary: filepath.Join(dir, "demoapp")}
	if fi, err := os.Stat(app.Binary); err == nil && fi.Mode().IsRegular() {
		return app, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return DemoApp{}, fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "demoapp-*.tmp")
	if err != nil {
		return DemoApp{}, fmt.Errorf("create temp binary: %w", err)
	}
	tmpPath := tmp.Name()
	if err := tmp.Close(); err != nil {
		return DemoApp{}, fmt.Errorf("close %s: %w", tmpPath, err)
	}
	defer os.Remove(tmpPath) // a no-op once renamed

	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmpPath, ".")
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return DemoApp{}, fmt.Errorf("go build in %s: %w\n%s", srcDir, err, out)
	}
	if err := os.Rename(tmpPath, app.Binary); err != nil {
		return DemoApp{}, fmt.Errorf("install %s: %w", app.Binary, err)
	}
	return app, nil
}

// sourceHash identifies a demo app build: every file of its directory that
// is not a test or a local build output, plus the toolchain.
func sourceHash(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", dir, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", runtime.Version(), runtime.GOARCH)
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("hash demo app sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// BuildImage builds an image named ref from the demo app's Dockerfile with
// the given build args (e.g. {"APP_VERSION":"v2"}) through the Engine API.
// The image carries ImageLabel.
func (a DemoApp) BuildImage(ctx context.Context, cli ImageBuilder, ref string, buildArgs map[string]string) error {
	tarball, err := buildContext(a.Binary, filepath.Join(a.SrcDir, "Dockerfile"))
	if err != nil {
		return err
	}
	args := make(map[string]*string, len(buildArgs))
	for k, v := range buildArgs {
		args[k] = &v
	}
	resp, err := cli.ImageBuild(ctx, bytes.NewReader(tarball), build.ImageBuildOptions{
		Tags:        []string{ref},
		Dockerfile:  "Dockerfile",
		BuildArgs:   args,
		Labels:      map[string]string{ImageLabel: "demoapp"},
		Remove:      true,
		ForceRemove: true,
		// The engine here is 20.10 with the classic builder; BuildKit
		// would need a session the plain API call does not provide.
		Version: build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("image build request for %s: %w", ref, err)
	}
	defer resp.Body.Close()
	if err := ReadBuildStream(resp.Body); err != nil {
		return fmt.Errorf("build %s: %w", ref, err)
	}
	return nil
}

// ReadBuildStream consumes the engine's JSON progress messages (of a build
// or an import) and returns the error the stream reports, with the tail of
// the build output. A failed build still answers 200; the failure is an
// "error" message in the stream.
func ReadBuildStream(r io.Reader) error {
	var log []string
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read build output: %w", err)
		}
		if s := strings.TrimSpace(msg.Stream); s != "" {
			log = append(log, s)
		}
		if msg.Error != "" || msg.ErrorDetail.Message != "" {
			tail := log[max(0, len(log)-10):]
			return fmt.Errorf("%s%s\nbuild output (tail):\n%s", msg.Error, detail(msg.ErrorDetail.Message, msg.Error), strings.Join(tail, "\n"))
		}
	}
}

func detail(d, e string) string {
	if d == "" || d == e {
		return ""
	}
	return ": " + d
}

// buildContext is a tar holding the Dockerfile and the binary as "demoapp",
// which is all the Dockerfile copies.
func buildContext(binPath, dockerfilePath string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name, path string
		mode       int64
	}{
		{"Dockerfile", dockerfilePath, 0o644},
		{"demoapp", binPath, 0o755},
	} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("build context: %w", err)
		}
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(b)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("build context: %s: %w", f.name, err)
		}
		if _, err := tw.Write(b); err != nil {
			return nil, fmt.Errorf("build context: %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	return buf.Bytes(), nil
}

package debimage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/deployd/deployd/internal/lab"
)

// Engine is the part of the Docker Engine API that Build uses.
type Engine interface {
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageImport(ctx context.Context, source image.ImportSource, ref string, options image.ImportOptions) (io.ReadCloser, error)
	lab.ImageBuilder
}

// inspectTimeout bounds the short engine calls; builds and imports take as
// long as they take, bounded by the caller's context.
const inspectTimeout = 10 * time.Second

// Build makes sure the base, Django and PostgreSQL images exist and returns
// their tags. Images whose tag exists are reused; the others are built,
// one process at a time per tag (see ensure), so concurrent callers wait
// for the first one's build instead of repeating it. The first build takes
// minutes: debootstrap downloads the base system and the images' packages
// from the mirror. It needs root, debootstrap and tar for the base.
func Build(ctx context.Context, cli Engine, o Options, log logrus.FieldLogger) (Tags, error) {
	if o.Suite == "" {
		o.Suite = DefaultSuite
	}
	if o.Mirror == "" {
		m, err := HostMirror(o.Suite)
		if err != nil {
			return Tags{}, fmt.Errorf("find the Debian mirror (set Options.Mirror): %w", err)
		}
		o.Mirror = m
	}
	in := defaultInputs(o)
	tags := in.plan()

	err := ensure(ctx, cli, tags.Base, log, func(ctx context.Context) error {
		return buildBase(ctx, cli, in, o.WorkDir, tags.Base)
	})
	if err != nil {
		return Tags{}, err
	}
	// Both download their packages from the mirror; side by side they
	// take about as long as the slower one.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return ensure(gctx, cli, tags.Django, log, func(ctx context.Context) error {
			return buildDockerfile(ctx, cli, tags.Django, "django", in.djangoDockerfile, nil, map[string]string{
				"BASE_IMAGE": tags.Base,
				"PACKAGES":   packageList(in.djangoPackages),
			})
		})
	})
	g.Go(func() error {
		return ensure(gctx, cli, tags.Postgres, log, func(ctx context.Context) error {
			return buildDockerfile(ctx, cli, tags.Postgres, "postgres", in.postgresDockerfile,
				[]contextFile{{"entrypoint.sh", []byte(in.postgresEntrypoint), 0o755}},
				map[string]string{
					"BASE_IMAGE": tags.Base,
					"PACKAGES":   packageList(in.postgresPackages),
				})
		})
	})
	if err := g.Wait(); err != nil {
		return Tags{}, err
	}
	return tags, nil
}

// ensure runs build unless an image tagged tag exists. The check and the
// build happen under a per-tag lock file, so that of several processes
// asking at once one builds and the others find its image. The engine
// tags an image only once its build or import has finished, so a build
// that fails or is cancelled leaves no tag behind.
func ensure(ctx context.Context, cli Engine, tag string, log logrus.FieldLogger, build func(context.Context) error) error {
	if ok, err := exists(ctx, cli, tag); err != nil || ok {
		return err
	}
	unlock, err := lockTag(ctx, tag)
	if err != nil {
		return err
	}
	defer unlock()
	if ok, err := exists(ctx, cli, tag); err != nil || ok {
		return err
	}
	log = log.WithField("image", tag)
	log.Info("building image")
	start := time.Now()
	if err := build(ctx); err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	log.WithField("took", time.Since(start).Round(time.Second).String()).Info("built image")
	return nil
}

func exists(ctx context.Context, cli Engine, tag string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, inspectTimeout)
	defer cancel()
	_, err := cli.ImageInspect(ctx, tag)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("inspect image %s: %w", tag, err)
	}
}

// buildBase debootstraps the suite into a temporary directory and imports
// the tree as an image tagged tag.
func buildBase(ctx context.Context, cli Engine, in inputs, workDir, tag string) (err error) {
	for _, tool := range []string{"debootstrap", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed for the base image (apt-get install %s): %w", tool, tool, err)
		}
	}
	if workDir == "" {
		workDir = os.TempDir()
	}
	dir, err := os.MkdirTemp(workDir, "deployd-debootstrap-")
	if err != nil {
		return fmt.Errorf("create the debootstrap directory: %w", err)
	}
	defer func() {
		if rerr := removeTree(dir); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()

	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant="+in.variant, in.suite, dir, in.mirror)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap %s from %s: %w\n%s", in.suite, in.mirror, err, tail(out.String(), 20))
	}
	if err := tweakTree(dir); err != nil {
		return err
	}
	return importTree(ctx, cli, dir, tag)
}

// tweakTree writes baseTweaks and drops what debootstrap downloaded (the
// .debs and the package index): the images' builds fetch a fresh index.
func tweakTree(dir string) error {
	for _, t := range baseTweaks {
		p := filepath.Join(dir, t.path)
		if err := os.WriteFile(p, []byte(t.content), os.FileMode(t.mode)); err != nil {
			return fmt.Errorf("write %s into the base tree: %w", t.path, err)
		}
	}
	for _, pattern := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*", "var/cache/apt/*.bin"} {
		matches, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return fmt.Errorf("clean the base tree: %w", err)
		}
		for _, m := range matches {
			if err := os.Remove(m); err != nil {
				return fmt.Errorf("clean the base tree: %w", err)
			}
		}
	}
	return nil
}

// importTree streams `tar -c` of dir into the engine's image import. tar
// (rather than archive/tar) keeps device nodes, hard links, owners and
// extended attributes exactly as debootstrap made them.
func importTree(ctx context.Context, cli Engine, dir, tag string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stderr bytes.Buffer
	tarCmd := exec.CommandContext(ctx, "tar", "--one-file-system", "--numeric-owner", "-C", dir, "-c", ".")
	tarCmd.Stderr = &stderr
	stream, err := tarCmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	if err := tarCmd.Start(); err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	importErr := func() error {
		resp, err := cli.ImageImport(ctx, image.ImportSource{Source: stream, SourceName: "-"}, tag, image.ImportOptions{
			Changes: []string{"LABEL " + Label + "=base", `CMD ["bash"]`},
		})
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer resp.Close()
		if err := lab.ReadBuildStream(resp); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		return nil
	}()
	if importErr != nil {
		// tar may be blocked writing to a reader nobody reads any more.
		cancel()
	}
	if err := tarCmd.Wait(); err != nil && importErr == nil {
		return fmt.Errorf("tar %s: %w\n%s", dir, err, stderr.String())
	}
	return importErr
}

// contextFile is a file of a build context besides the Dockerfile.
type contextFile struct {
	name string
	data []byte
	mode int64
}

// buildDockerfile builds dockerfile with files beside it, through the
// Engine API, as tag.
//
// RUN steps use the engine's default bridge network: its NAT reaches the
// mirror (checked on this project's machines: apt-get update in a bridge
// build fetches the index), so the builds do not need --network host,
// which would hand build steps the host's network stack.
func buildDockerfile(ctx context.Context, cli Engine, tag, kind, dockerfile string, files []contextFile, args map[string]string) error {
	all := append([]contextFile{{"Dockerfile", []byte(dockerfile), 0o644}}, files...)
	tarball, err := tarOf(all)
	if err != nil {
		return err
	}
	return buildContext(ctx, cli, tag, kind, bytes.NewReader(tarball), args)
}

func buildContext(ctx context.Context, cli Engine, tag, kind string, tarball io.Reader, args map[string]string) error {
	buildArgs := make(map[string]*string, len(args))
	for k, v := range args {
		buildArgs[k] = &v
	}
	resp, err := cli.ImageBuild(ctx, tarball, build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		BuildArgs:   buildArgs,
		Labels:      map[string]string{Label: kind},
		Remove:      true,
		ForceRemove: true,
		// The classic builder: BuildKit would need a session that the plain
		// API call does not provide. Nothing is pulled: FROM names a local
		// image.
		Version: build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("image build request: %w", err)
	}
	defer resp.Body.Close()
	return lab.ReadBuildStream(resp.Body)
}

// tarOf is a tar of files, with fixed times so that the same files make
// the same context.
func tarOf(files []contextFile) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("build context: %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("build context: %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	return buf.Bytes(), nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

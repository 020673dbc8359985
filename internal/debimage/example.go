package debimage

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
)

// ExampleVersions are the versions of the Django example app
// (examples/django/versions/<version>).
var ExampleVersions = []string{"v1", "v2", "v3"}

// BuildExample builds the Django example app in dir (examples/django) at
// version (one of ExampleVersions) on the Django image djangoTag, unless
// it exists, and returns its tag: deployd-django-example:<version>-<hash>,
// the hash covering djangoTag, the version and every file sent to the
// build. It takes seconds: the example adds only its code.
func BuildExample(ctx context.Context, cli Engine, djangoTag, dir, version string, log logrus.FieldLogger) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "versions", version)); err != nil {
		return "", fmt.Errorf("example version %s: %w", version, err)
	}
	files, err := exampleFiles(dir)
	if err != nil {
		return "", err
	}
	ins := []input{{"base", djangoTag}, {"version", version}}
	for _, f := range files {
		ins = append(ins, input{f.name, string(f.data)})
	}
	tag := "deployd-django-example:" + version + "-" + contentHash(ins...)
	err = ensure(ctx, cli, tag, log, func(ctx context.Context) error {
		tarball, err := tarOf(files)
		if err != nil {
			return err
		}
		return buildContext(ctx, cli, tag, "example", bytes.NewReader(tarball), map[string]string{
			"BASE_IMAGE":  djangoTag,
			"APP_VERSION": version,
		})
	})
	return tag, err
}

// exampleContext is what the example's image is built from, as its
// .dockerignore says: the Dockerfile and the app. The compose files and
// local secrets (.env, web.env) beside them are never sent, and editing
// them rebuilds nothing.
var exampleContext = []string{"Dockerfile", "manage.py", "notesite", "notes", "versions"}

// exampleFiles reads the example's build context (exampleContext below
// dir) in lexical order, without Python caches.
func exampleFiles(dir string) ([]contextFile, error) {
	var files []contextFile
	for _, top := range exampleContext {
		err := filepath.WalkDir(filepath.Join(dir, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				if name == "__pycache__" {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(name, ".pyc") || !d.Type().IsRegular() {
				return nil
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files = append(files, contextFile{filepath.ToSlash(rel), b, int64(info.Mode().Perm())})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read the example in %s: %w", dir, err)
		}
	}
	return files, nil
}

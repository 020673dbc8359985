// Command build-images builds deployd's reference images from Debian
// packages (see package debimage) unless they exist, and prints their tags,
// one "name=tag" a line, for scripts and CI. Each image is also tagged with
// its stable name (deployd-postgres:latest, deployd-django-example:v2, see
// debimage.AliasOf), the one the example's files name:
//
//	go run ./internal/debimage/cmd/build-images
//	go run ./internal/debimage/cmd/build-images -example examples/django
//
// With -example it also builds the Django example's v1, v2 and v3. It needs
// root (debootstrap) the first time; later runs only inspect the images.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/docker/docker/client"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/debimage"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "build-images:", err)
		os.Exit(1)
	}
}

func run() error {
	var o debimage.Options
	var example string
	flag.StringVar(&o.Suite, "suite", debimage.DefaultSuite, "Debian suite")
	flag.StringVar(&o.Mirror, "mirror", "", "Debian mirror URL (default: the one the host's apt uses for the suite)")
	flag.StringVar(&o.WorkDir, "workdir", "", "directory for the debootstrap tree (default: the system's temp directory)")
	flag.StringVar(&example, "example", "", "also build the Django example's versions from this directory (examples/django)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logrus.New()
	log.SetOutput(os.Stderr)

	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()

	tags, err := debimage.Build(ctx, cli, o, log)
	if err != nil {
		return err
	}
	built := []struct{ name, tag string }{{"base", tags.Base}, {"django", tags.Django}, {"postgres", tags.Postgres}}
	if example != "" {
		for _, v := range debimage.ExampleVersions {
			tag, err := debimage.BuildExample(ctx, cli, tags.Django, example, v, log)
			if err != nil {
				return err
			}
			built = append(built, struct{ name, tag string }{"example-" + v, tag})
		}
	}
	for _, b := range built {
		alias, err := debimage.Alias(ctx, cli, b.tag)
		if err != nil {
			return err
		}
		fmt.Printf("%s=%s\n", b.name, b.tag)
		log.Infof("%s is also %s", b.tag, alias)
	}
	return nil
}

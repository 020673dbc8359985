// Package debimage builds deployd's reference images without a registry:
// a Debian base made with debootstrap from the mirror the host's apt
// already uses, and on top of it an image for Django apps and one for
// PostgreSQL, both from Debian's packages. Every tag carries a hash of all
// of its inputs, and an image whose tag exists is reused, so only the first
// build on a machine pays (minutes for the base; nothing afterwards).
//
// Build needs root (debootstrap), the debootstrap and tar commands and a
// Docker engine. The example app's images (BuildExample) build on the
// Django image in seconds.
package debimage

import (
	_ "embed"
	"runtime"
)

// Images this package builds carry Label=<kind> ("base", "django",
// "postgres", "example"), so they can be listed and pruned by hand:
// `docker image prune -a --filter label=deployd.debimage`.
const Label = "deployd.debimage"

// Defaults of Options.
const (
	DefaultSuite = "bookworm"
	// minbase: essential packages and apt, nothing else (about 200 MB).
	DefaultVariant = "minbase"
)

// The packages the images add to the base. python3-whitenoise serves the
// collected static files from gunicorn, so a Django image needs no second
// web server.
var (
	DjangoPackages   = []string{"python3-django", "python3-psycopg2", "gunicorn", "python3-whitenoise"}
	PostgresPackages = []string{"postgresql", "postgresql-client"}
)

var (
	//go:embed images/django.Dockerfile
	djangoDockerfile string
	//go:embed images/postgres.Dockerfile
	postgresDockerfile string
	//go:embed images/postgres-entrypoint.sh
	postgresEntrypoint string
)

// baseTweaks are written into the debootstrapped tree before it is
// imported, as the official Debian image does: services are not started by
// package installs (there is no init), and apt keeps no downloaded .debs.
var baseTweaks = []struct {
	path, content string
	mode          uint32
}{
	{"usr/sbin/policy-rc.d", "#!/bin/sh\n# No init system in a container: packages must not start services.\nexit 101\n", 0o755},
	{"etc/apt/apt.conf.d/docker-clean", `DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
`, 0o644},
	{"etc/apt/apt.conf.d/docker-no-recommends", "APT::Install-Recommends \"false\";\nAPT::Install-Suggests \"false\";\n", 0o644},
}

// Options say what to build from. The zero value builds bookworm minbase
// from the host's mirror.
type Options struct {
	// Suite is the Debian release; default DefaultSuite.
	Suite string
	// Mirror is the archive URL; default HostMirror(Suite).
	Mirror string
	// WorkDir holds the debootstrap tree while the base is built (about
	// 200 MB, removed afterwards); default os.TempDir().
	WorkDir string
}

// Tags are the images' references, e.g. deployd-debian:bookworm-0123456789ab,
// deployd-django:0123456789ab and deployd-postgres:0123456789ab.
type Tags struct {
	Base, Django, Postgres string
}

// inputs is everything an image's content depends on; its hashes name the
// tags.
type inputs struct {
	suite, variant, mirror, arch string
	baseTweaks                   string
	djangoPackages               []string
	djangoDockerfile             string
	postgresPackages             []string
	postgresDockerfile           string
	postgresEntrypoint           string
}

func defaultInputs(o Options) inputs {
	var tweaks string
	for _, t := range baseTweaks {
		tweaks += t.path + "\n" + t.content
	}
	return inputs{
		suite:              o.Suite,
		variant:            DefaultVariant,
		mirror:             o.Mirror,
		arch:               runtime.GOARCH,
		baseTweaks:         tweaks,
		djangoPackages:     DjangoPackages,
		djangoDockerfile:   djangoDockerfile,
		postgresPackages:   PostgresPackages,
		postgresDockerfile: postgresDockerfile,
		postgresEntrypoint: postgresEntrypoint,
	}
}

// plan names the three images. Each image built on another hashes that
// one's tag, so a new base renames everything above it.
func (in inputs) plan() Tags {
	base := "deployd-debian:" + in.suite + "-" + contentHash(
		input{"suite", in.suite},
		input{"variant", in.variant},
		input{"mirror", in.mirror},
		input{"arch", in.arch},
		input{"tweaks", in.baseTweaks},
	)
	return Tags{
		Base: base,
		Django: "deployd-django:" + contentHash(
			input{"base", base},
			input{"packages", packageList(in.djangoPackages)},
			input{"Dockerfile", in.djangoDockerfile},
		),
		Postgres: "deployd-postgres:" + contentHash(
			input{"base", base},
			input{"packages", packageList(in.postgresPackages)},
			input{"Dockerfile", in.postgresDockerfile},
			input{"entrypoint", in.postgresEntrypoint},
		),
	}
}

func planFor(o Options) Tags { return defaultInputs(o).plan() }

#!/usr/bin/env bash
# Makes sure what deployd's tests and demo need is here: nginx (Debian's
# nginx-light), Chromium for the status page's browser tests, debootstrap
# for the reference images built from Debian packages (internal/debimage)
# and a Docker engine that answers. Installs and starts what is missing when run as root;
# otherwise says what to do.
set -euo pipefail

log() { printf 'ensure-deps: %s\n' "$*" >&2; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		log "need root to run: $*"; return 1
	fi
}

apt_updated=""
apt_install() {
	if [ -z "$apt_updated" ]; then
		as_root apt-get update -qq
		apt_updated=1
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v go >/dev/null; then
	log "the Go toolchain is missing (go 1.26 or newer)"
	exit 1
fi

for tool in curl openssl jq; do
	command -v "$tool" >/dev/null || apt_install "$tool"
done

# The shipped systemd units are checked with systemd-analyze verify, and
# the host-install test runs the daemon's side under setpriv.
command -v systemd-analyze >/dev/null || apt_install systemd
command -v setpriv >/dev/null || apt_install util-linux

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
	log "installing nginx-light"
	apt_install nginx-light
fi

# The Debian base of the reference images (internal/debimage) is made with
# debootstrap; no registry is needed.
if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
	log "installing debootstrap (the reference images' Debian base)"
	apt_install debootstrap
fi

if ! command -v chromium >/dev/null && [ ! -x /usr/bin/chromium ]; then
	log "installing chromium (the status page's browser tests drive it headless)"
	apt_install chromium
fi

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

if ! docker_answers; then
	if ! command -v dockerd >/dev/null; then
		log "installing docker.io"
		apt_install docker.io
	fi
	if ! docker_answers; then
		log "starting dockerd"
		as_root sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
		for _ in $(seq 1 60); do
			docker_answers && break
			sleep 0.5
		done
	fi
fi
if ! docker_answers; then
	log "the Docker engine does not answer (see /var/log/dockerd.log)"
	exit 1
fi
log "nginx $(nginx -v 2>&1 | sed 's/.*\///'), docker engine $(docker version --format '{{.Server.Version}}')"

# The compose stack's test (test/compose) runs the docker-compose command
# (Debian ships 1.29; the Compose v2 plugin alone does not provide it).
if ! command -v docker-compose >/dev/null; then
	log "installing docker-compose"
	apt_install docker-compose
fi

# The registry tests (internal/testenv.StartRegistry, pull and digest
# pinning against a real registry) run Debian's distribution registry as a
# child process on a free loopback port; the packaged service is not used.
if [ ! -x /usr/bin/docker-registry ]; then
	log "installing docker-registry (the registry tests run their own instance)"
	apt_install docker-registry
fi

# promtool checks the shipped alert rules; Debian ships it in the prometheus
# package. Without an init system nothing starts the server it brings.
if ! command -v promtool >/dev/null; then
	log "installing prometheus (for promtool)"
	apt_install prometheus
fi

# The reference images (a Debian base, Django and PostgreSQL from Debian's
# packages, and the Django example's versions) are built unless an image of
# the same inputs exists. Only a machine's first run pays for them (a few
# minutes on the mirror); they are built here, before the suite, so that
# their build does not compete with the suite's timed tests.
log "reference images"
(cd "$(dirname "$0")/.." && go run ./internal/debimage/cmd/build-images -example examples/django)

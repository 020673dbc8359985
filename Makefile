# deployd: build, test and demo.
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test lint demo demo-stop clean bench bench-short

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/deployd ./cmd/deployd

# The test command: unit tests, integration tests on the real Docker engine
# and a private nginx, and the Swarm tests, all under the race detector.
# The engine is made a single-node swarm before the first test starts and
# left after the last one (with-test-swarm): a swarm set up or left while
# other packages' containers run can break their name resolution for a
# moment. The longest packages are named first so that they start first
# and the rest fill in beside them.
LONG_PKGS := ./test/e2e/ ./test/swarm/ ./test/compose/ ./bench/ ./pkg/swarmx/
test:
	bash scripts/ensure-deps.sh
	$(GO) vet ./...
	$(GO) run ./internal/lab/cmd/with-test-swarm $(GO) test -race -count=1 -timeout 20m $(LONG_PKGS) ./...

# The zero-downtime benchmark (real Docker engine and nginx): deployd's
# blue-green switch in both traffic modes (reload, switch), the switch with
# the service on a single-node swarm (the engine joins or inits one, under
# the swarm tests' lock), against recreate and a bare nginx reload, under a
# mixed and an all-POST load.
# Writes bench/results/<name>.json and .svg.
BENCH_DATE ?= $(shell date -u +%Y-%m-%d)
bench:
	$(GO) run ./bench -k 10 -c 16 -name full-$(BENCH_DATE)

bench-short:
	$(GO) run ./bench -k 2 -duration-per-cycle short -name short

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

demo: build
	bash scripts/demo.sh

demo-stop:
	bash scripts/demo.sh stop

clean:
	rm -rf bin run

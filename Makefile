# deployd: build, test and demo.
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test lint demo demo-stop clean bench bench-short

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/deployd ./cmd/deployd

# The packages whose tests turn the engine into a swarm (and leave it);
# the benchmark's test does too, for its deployd-swarm strategy.
# They run after the others: a swarm initialised or left while other
# packages' containers run can break those containers' name resolution
# for a moment, which their tests would take for a failure.
SWARM_PKGS := ./internal/testenv/ ./pkg/swarmx/ ./test/swarm/ ./bench/

# The test command: unit tests, integration tests on the real Docker engine
# and a private nginx, all under the race detector, then the swarm tests.
# The end-to-end package, by far the longest, is named first so that it
# starts first and the rest run beside it.
test:
	bash scripts/ensure-deps.sh
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./test/e2e/ $$($(GO) list ./... | grep -v -x -F $(foreach p,$(SWARM_PKGS),-e github.com/deployd/deployd/$(patsubst ./%/,%,$(p))))
	$(GO) test -race -count=1 -timeout 15m $(SWARM_PKGS)

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

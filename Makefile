# Everyday entry points; the real work is in hack/*.sh and hack/bench.
# Go is taken from /usr/local/go/bin when it is there.

export PATH := /usr/local/go/bin:$(PATH)

GO      ?= go
BIN     := bin/skiff

.PHONY: all build test bench vet fmt-check up down clean

all: build

## build: compile bin/skiff
build:
	./hack/build.sh $(BIN)

## test: install missing test dependencies, then go vet and go test ./...
test:
	./hack/test.sh

## bench: build, start servers on free ports, measure API latencies, RSS, scheduler throughput and the node agent (pod start-up, memory, hollow nodes; real node as root), services (proxy rule delay and resync as root, DNS queries/s) (BENCH_FLAGS="--suite agent" for one suite)
bench: build
	$(GO) run ./hack/bench --skiff $(BIN) $(BENCH_FLAGS)

## vet: go vet ./...
vet:
	$(GO) vet ./...

## fmt-check: fail when a Go file is not gofmt-clean
fmt-check:
	@out="$$(gofmt -l cmd internal test hack)"; \
	if [ -n "$$out" ]; then echo "not gofmt-clean:"; echo "$$out"; exit 1; fi

## up: install what is missing, build and start a single-node cluster
up:
	./hack/up.sh

## down: stop the server hack/up.sh started
down:
	./hack/down.sh

## clean: remove build output
clean:
	rm -rf bin

#!/usr/bin/env bash
# Runs every test: installs what the tests need when missing, then
# `go vet ./...` and `go test ./...` (test/hae2e after the rest, alone),
# with go test's normal output so CI can read the summary.
#
# Usage: hack/test.sh [go test flags or packages]
#   e.g. hack/test.sh -run TestSystemNamespacesExist ./test/integration
# Environment: GO_TEST_TIMEOUT (default 10m) bounds each test binary, so a hung
# test fails well inside CI's 30 minutes.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SKIFF_ROOT"

skiff::install_deps
skiff::ensure_go

args=("$@")
# With no arguments: every package, then the HA end-to-end tests on their
# own, since they time failovers against goals and should not share the
# two CI cores with the rest.
serial=()
what="${args[*]}"
# Packages named on the command line are vetted too; flags are go test's.
vet_pkgs=()
for a in "${args[@]}"; do
	[[ "$a" == ./* || "$a" == github.com/* ]] && vet_pkgs+=("$a")
done
((${#vet_pkgs[@]})) || vet_pkgs=(./...)
if ((${#args[@]} == 0)); then
	pkgs=$(go list ./...) # apart, so that set -e sees it fail
	mapfile -t args < <(grep -v '/test/hae2e$' <<<"$pkgs")
	serial=(./test/hae2e)
	what="./... but test/hae2e"
fi

start=$SECONDS
skiff::log "go version: $(go env GOVERSION); $(nproc) CPUs"
skiff::log "go vet ${vet_pkgs[*]}"
go vet "${vet_pkgs[@]}"
skiff::log "go test -timeout ${GO_TEST_TIMEOUT:-10m} $what"
rc=0
go test -timeout "${GO_TEST_TIMEOUT:-10m}" "${args[@]}" || rc=$?
# Run even when the others failed, so one run reports everything.
if ((${#serial[@]})); then
	skiff::log "go test -timeout ${GO_TEST_TIMEOUT:-10m} ${serial[*]}"
	go test -timeout "${GO_TEST_TIMEOUT:-10m}" "${serial[@]}" || rc=$?
fi
if ((rc != 0)); then
	skiff::log "tests failed after $((SECONDS - start))s"
	exit "$rc"
fi
skiff::log "all tests passed in $((SECONDS - start))s"

#!/usr/bin/env bash
# Builds the skiff binary (default bin/skiff, or the path given). The one
# place that stamps kubectl's client version: k8s.io/client-go/pkg/version
# can only be set at link time, and without it `skiff kubectl version`
# cannot parse its own version.
#
# Built without cgo, as upstream builds kubectl. kustomize (linked in for
# `kubectl apply -k`) imports package plugin; in a cgo build that makes the
# Go linker treat the binary as dynamically linked: it keeps every method
# of every reachable type and exports every symbol (~20 MB of .dynsym and
# .dynstr in the loaded image). Without cgo the binary is static, 37 MB
# smaller, and an idle server maps ~35 MB less of it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
out="${1:-bin/skiff}"
kver="$(go list -m -f '{{.Version}}' k8s.io/component-base | sed 's/^v0\./v1./')"
minor="$(echo "$kver" | cut -d. -f2)"
pkg=k8s.io/component-base/version
CGO_ENABLED=0 go build -ldflags "-X $pkg.gitVersion=$kver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" -o "$out" ./cmd/skiff

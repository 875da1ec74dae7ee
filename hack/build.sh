#!/usr/bin/env bash
# Builds the skiff binary (default bin/skiff, or the path given). The one
# place that stamps kubectl's client version: k8s.io/client-go/pkg/version
# can only be set at link time, and without it `skiff kubectl version`
# cannot parse its own version.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
out="${1:-bin/skiff}"
kver="$(go list -m -f '{{.Version}}' k8s.io/component-base | sed 's/^v0\./v1./')"
minor="$(echo "$kver" | cut -d. -f2)"
pkg=k8s.io/component-base/version
go build -ldflags "-X $pkg.gitVersion=$kver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" -o "$out" ./cmd/skiff

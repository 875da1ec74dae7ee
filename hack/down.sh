#!/usr/bin/env bash
# Stops the background skiff server that hack/up.sh started. Its data stays
# in the data directory; add --purge to delete that too.
#
# Usage: hack/down.sh [--purge]
set -euo pipefail

if [[ -z "${SKIFF_DATA_DIR:-}" ]]; then
	if [[ $(id -u) -eq 0 ]]; then SKIFF_DATA_DIR=/var/lib/skiff; else SKIFF_DATA_DIR="$HOME/.local/share/skiff"; fi
fi
pid_file="$SKIFF_DATA_DIR/skiff.pid"

if [[ -f "$pid_file" ]] && pid="$(cat "$pid_file")" && kill -0 "$pid" 2>/dev/null; then
	kill -TERM "$pid"
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "==> skiff server (pid $pid) did not stop in 10s; killing it" >&2
		kill -KILL "$pid"
	fi
	echo "==> stopped skiff server (pid $pid)" >&2
else
	echo "==> no skiff server running from $SKIFF_DATA_DIR" >&2
fi
rm -f "$pid_file"

if [[ "${1:-}" == --purge ]]; then
	# Pods outlive the server (a restart adopts them); purging ends them:
	# their shims, then whatever they left mounted under the data dir.
	pkill -KILL -f "containerd-shim.*-address $SKIFF_DATA_DIR/" 2>/dev/null || true
	grep -F " $SKIFF_DATA_DIR/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	ip link del skiff0 2>/dev/null || true
	# The pod masquerade outlives the server for the pods' sake.
	nft delete table ip skiff-pod-egress 2>/dev/null || true
	rm -rf "$SKIFF_DATA_DIR"
	echo "==> removed $SKIFF_DATA_DIR" >&2
fi

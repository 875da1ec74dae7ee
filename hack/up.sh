#!/usr/bin/env bash
# Brings up a single-node skiff cluster on this machine: installs what is
# missing (Debian packages, Go), builds bin/skiff, starts `skiff server` and
# waits until it is ready.
#
# Usage: hack/up.sh [--foreground] [extra `skiff server` flags]
#   --foreground   run the server in this terminal (Ctrl-C stops it)
#                  instead of in the background with logs in a file
# Environment:
#   SKIFF_DATA_DIR  data directory (default /var/lib/skiff as root,
#                   ~/.local/share/skiff otherwise); `skiff kubectl` reads
#                   the admin kubeconfig from it
#   SKIFF_LOG       log file in background mode (default $SKIFF_DATA_DIR/skiff.log)
# Stop a background server with hack/down.sh.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SKIFF_ROOT"

foreground=false
server_args=()
for a in "$@"; do
	case "$a" in
	--foreground | -f) foreground=true ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*) server_args+=("$a") ;;
	esac
done

if [[ -z "${SKIFF_DATA_DIR:-}" ]]; then
	if [[ $(id -u) -eq 0 ]]; then SKIFF_DATA_DIR=/var/lib/skiff; else SKIFF_DATA_DIR="$HOME/.local/share/skiff"; fi
fi
export SKIFF_DATA_DIR
log_file="${SKIFF_LOG:-$SKIFF_DATA_DIR/skiff.log}"
pid_file="$SKIFF_DATA_DIR/skiff.pid"
skiff_bin="$SKIFF_ROOT/bin/skiff"

skiff::install_deps
skiff::ensure_go

skiff::log "building bin/skiff (the first build downloads modules: a few minutes)"
./hack/build.sh "$skiff_bin"

mkdir -p "$SKIFF_DATA_DIR"
# The node imports every tarball in its images/ dir at start: give it
# skiff's own busybox image for the tour's app.
mkdir -p "$SKIFF_DATA_DIR/agent/images"
if [[ ! -f "$SKIFF_DATA_DIR/agent/images/busybox.tar" ]]; then
	"$skiff_bin" image build busybox -o "$SKIFF_DATA_DIR/agent/images/busybox.tar"
fi
if [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
	skiff::log "skiff server already running (pid $(cat "$pid_file")); stop it with hack/down.sh to restart it"
	exit 0
fi

if $foreground; then
	skiff::log "starting skiff server in the foreground (Ctrl-C stops it); data in $SKIFF_DATA_DIR"
	exec "$skiff_bin" server --data-dir "$SKIFF_DATA_DIR" "${server_args[@]}"
fi

skiff::log "starting skiff server; logs in $log_file"
mkdir -p "$(dirname "$log_file")"
nohup "$skiff_bin" server --data-dir "$SKIFF_DATA_DIR" "${server_args[@]}" >>"$log_file" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pid_file"

# Ready means /readyz answers "ok"; the admin kubeconfig carries the address.
deadline=$((SECONDS + 60))
until "$skiff_bin" kubectl --kubeconfig "$SKIFF_DATA_DIR/admin.kubeconfig" --request-timeout=2s \
	get --raw /readyz >/dev/null 2>&1; do
	if ! kill -0 "$pid" 2>/dev/null; then
		rm -f "$pid_file"
		skiff::log "skiff server exited; last lines of $log_file:"
		tail -n 20 "$log_file" >&2
		exit 1
	fi
	if ((SECONDS > deadline)); then
		skiff::log "skiff server not ready after 60s; see $log_file"
		exit 1
	fi
	sleep 0.2
done

env_hint=""
if [[ "$SKIFF_DATA_DIR" != /var/lib/skiff ]]; then
	env_hint="export SKIFF_DATA_DIR=$SKIFF_DATA_DIR   # tells skiff kubectl where the admin kubeconfig is
  "
fi
cat <<GUIDE

skiff server is ready (pid $pid; logs: $log_file; data: $SKIFF_DATA_DIR).

try:
  ${env_hint}bin/skiff kubectl get ns
  bin/skiff kubectl get nodes -o wide
  bin/skiff kubectl apply -f examples/app.yaml
  bin/skiff kubectl rollout status deploy/web -n demo
  bin/skiff kubectl get all -n demo -o wide
  bin/skiff kubectl logs -n demo deploy/web
  bin/skiff kubectl api-resources

For your own kubectl: export KUBECONFIG=$SKIFF_DATA_DIR/admin.kubeconfig
Stop it: hack/down.sh     More: README.md ("A five-minute tour")
GUIDE

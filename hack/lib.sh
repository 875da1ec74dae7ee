#!/usr/bin/env bash
# Shared helpers for the hack/ scripts: source it, do not run it.
#
#   skiff::install_deps   installs the Debian packages skiff needs, only the
#                         missing ones (apt-get update only when something is)
#   skiff::ensure_go      puts the Go toolchain go.mod asks for on PATH
#
# Both are idempotent and quiet when there is nothing to do.

# The repository root, whichever directory the caller runs from.
SKIFF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Build and test needs: ca-certificates (module downloads), git, make.
# Run-time needs of the node agent: containerd, runc, CNI plugins, a static
# busybox for the images skiff builds, iproute2 (the end-to-end tests' second
# host is a network namespace), nftables for the proxy.
SKIFF_APT_PACKAGES=(
	ca-certificates git make
	containerd runc containernetworking-plugins busybox-static iproute2 nftables
)

skiff::log() { printf '==> %s\n' "$*" >&2; }

# skiff::as_root runs a command as root, through sudo when not root already.
skiff::as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		skiff::log "need root to run: $*"
		return 1
	fi
}

# skiff::apt_install installs the given packages that are not installed yet.
skiff::apt_install() {
	local missing=() p
	for p in "$@"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	((${#missing[@]})) || return 0
	if ! command -v apt-get >/dev/null 2>&1; then
		skiff::log "missing packages ${missing[*]} and no apt-get: install them by hand"
		return 1
	fi
	skiff::log "installing ${missing[*]}"
	# apt and the packages' scripts are chatty even with -qq; their output
	# is shown only when something fails.
	local out
	out="$(mktemp)"
	if ! { skiff::as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		skiff::as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"; } >"$out" 2>&1; then
		cat "$out" >&2
		rm -f "$out"
		skiff::log "apt-get failed installing ${missing[*]}"
		return 1
	fi
	rm -f "$out"
}

# skiff::install_deps installs every Debian package in SKIFF_APT_PACKAGES.
skiff::install_deps() {
	skiff::apt_install "${SKIFF_APT_PACKAGES[@]}"
}

# skiff::go_wanted prints the Go version go.mod asks for (e.g. 1.26.8).
skiff::go_wanted() {
	awk '$1 == "go" { print $2; exit }' "$SKIFF_ROOT/go.mod"
}

# skiff::go_ok reports whether `go` on PATH is at least the wanted version
# (newer toolchains build older modules; older ones cannot).
skiff::go_ok() {
	command -v go >/dev/null 2>&1 || return 1
	local have want
	have="$(go env GOVERSION 2>/dev/null)" || return 1
	have="${have#go}"
	want="$(skiff::go_wanted)"
	[[ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" == "$want" ]]
}

# skiff::ensure_go puts Go on PATH: /usr/local/go/bin if it is there (the
# usual place), else downloads the toolchain go.mod names. The download
# comes from the Go module proxy (the toolchain is published there as the
# module golang.org/toolchain), so it works wherever `go mod download`
# would; it lands in /usr/local/go when root, else in ~/.local/go.
skiff::ensure_go() {
	local d
	for d in /usr/local/go/bin "$HOME/.local/go/bin"; do
		if [[ -x "$d/go" && ":$PATH:" != *":$d:"* ]]; then
			PATH="$d:$PATH"
		fi
	done
	export PATH
	skiff::go_ok && return 0

	local want arch dest proxy url tmp
	want="$(skiff::go_wanted)"
	case "$(uname -m)" in
	x86_64) arch=amd64 ;;
	aarch64 | arm64) arch=arm64 ;;
	*) skiff::log "no Go $want toolchain for $(uname -m): install Go from https://go.dev/dl"; return 1 ;;
	esac
	if [[ $(id -u) -eq 0 ]]; then dest=/usr/local/go; else dest="$HOME/.local/go"; fi
	if [[ -e "$dest" ]]; then
		skiff::log "Go $want is needed, $dest holds another version: install Go $want from https://go.dev/dl"
		return 1
	fi
	skiff::apt_install ca-certificates curl unzip
	proxy="${GOPROXY:-https://proxy.golang.org}"
	proxy="${proxy%%,*}"
	[[ "$proxy" == direct || "$proxy" == off ]] && proxy=https://proxy.golang.org
	url="$proxy/golang.org/toolchain/@v/v0.0.1-go$want.linux-$arch.zip"
	skiff::log "downloading Go $want from $url"
	tmp="$(mktemp -d)"
	if ! curl -fsSL -o "$tmp/go.zip" "$url"; then
		rm -rf "$tmp"
		skiff::log "could not download Go $want: install it from https://go.dev/dl into /usr/local/go"
		return 1
	fi
	unzip -q "$tmp/go.zip" -d "$tmp"
	mkdir -p "$(dirname "$dest")"
	mv "$tmp/golang.org/toolchain@v0.0.1-go$want.linux-$arch" "$dest"
	chmod +x "$dest"/bin/* "$dest"/pkg/tool/*/* 2>/dev/null || true
	rm -rf "$tmp"
	PATH="$dest/bin:$PATH"
	export PATH
	skiff::go_ok
}

#!/usr/bin/env bash
# Build every Go tool under tools/ for WASI preview1:
#
#   tools/build.sh                    build build/wasm/NAME.wasm for each tools/NAME, and
#                                     build/plugins/NAME for each native plugin tool
#                                     (a main package importing tools/sdk/plugin)
#   tools/build.sh --check-reproducible
#                                     also build from a copy of the tree in another
#                                     directory and require identical sha256 digests
#
# Run from anywhere; paths are relative to the repository root. A tool is a
# directory of tools/ whose Go package is "main" (text.wc is C: see
# tools/textwc/build.sh; its module is committed). Builds are reproducible
# (-trimpath -buildvcs=false, no build ids) and fast when nothing changed:
# go's build cache does the work, and a module whose bytes did not change is
# not rewritten (its mtime stays). After a change, run tools/pin.sh.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
go="${GO:-go}"
out_dir=build/wasm
plugin_dir=build/plugins
plugin_sdk=github.com/airlock-dev/airlock/tools/sdk/plugin

# build_all DIR: build every tool of the tree at DIR into DIR/build/wasm.
build_all() {
	local tree="$1" pkg name dst tmp
	mkdir -p "$tree/$out_dir"
	# `go list` names the main packages; test-only and C directories drop out.
	# Native plugin tools (main packages importing tools/sdk/plugin) are
	# built for the host into build/plugins by build_plugins.
	local pkgs native
	native="$(cd "$tree" && "$go" list -f "{{if eq .Name \"main\"}}{{range .Imports}}{{if eq . \"$plugin_sdk\"}}{{\$.ImportPath}}{{end}}{{end}}{{end}}" ./tools/...)"
	pkgs="$(cd "$tree" && GOOS=wasip1 GOARCH=wasm "$go" list -e -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./tools/... |
		grep -vxF -f <(printf '%s\n' $native) || true)"
	[ -n "$pkgs" ] || { echo "build.sh: no Go tools found under $tree/tools" >&2; return 1; }
	for pkg in $pkgs; do
		name="${pkg##*/}"
		dst="$tree/$out_dir/$name.wasm"
		tmp="$(mktemp "$tree/$out_dir/.$name.XXXXXX")"
		if ! (cd "$tree" && GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOFLAGS= \
			"$go" build -trimpath -buildvcs=false -ldflags='-s -w' -o "$tmp" "./tools/$name"); then
			rm -f "$tmp"
			echo "build.sh: building tools/$name for wasip1 failed" >&2
			return 1
		fi
		chmod 0644 "$tmp"
		if [ -f "$dst" ] && cmp -s "$tmp" "$dst"; then
			rm -f "$tmp"
		else
			mv -f "$tmp" "$dst"
			echo "built $out_dir/$name.wasm ($(wc -c <"$dst") bytes)"
		fi
	done
	build_plugins "$tree" $native
}

# build_plugins DIR PKG...: build each native plugin tool for the host into
# DIR/build/plugins/NAME (static, no build id, so the pin is reproducible).
build_plugins() {
	local tree="$1" pkg name dst tmp
	shift
	mkdir -p "$tree/$plugin_dir"
	for pkg in "$@"; do
		name="${pkg##*/}"
		dst="$tree/$plugin_dir/$name"
		tmp="$(mktemp "$tree/$plugin_dir/.$name.XXXXXX")"
		if ! (cd "$tree" && CGO_ENABLED=0 GOFLAGS= \
			"$go" build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$tmp" "./tools/$name"); then
			rm -f "$tmp"
			echo "build.sh: building the native plugin tools/$name failed" >&2
			return 1
		fi
		chmod 0755 "$tmp"
		if [ -f "$dst" ] && cmp -s "$tmp" "$dst"; then
			rm -f "$tmp"
		else
			mv -f "$tmp" "$dst"
			echo "built $plugin_dir/$name ($(wc -c <"$dst") bytes)"
		fi
	done
}

case "${1:-}" in
"" | --check-reproducible) ;;
*)
	echo "usage: tools/build.sh [--check-reproducible]" >&2
	exit 2
	;;
esac

build_all "$root"

if [ "${1:-}" = "--check-reproducible" ]; then
	copy="$(mktemp -d "${TMPDIR:-/tmp}/airlock-repro.XXXXXX")"
	trap 'rm -rf "$copy"' EXIT
	# Copy the sources only (no .git, no build outputs) to a different path.
	tar -C "$root" --exclude=./.git --exclude=./build --exclude=./bin --exclude=./.airlock -cf - . | tar -C "$copy" -xf -
	build_all "$copy" >/dev/null
	status=0
	for f in "$root/$out_dir"/*.wasm "$root/$plugin_dir"/*; do
		rel="${f#"$root"/}"
		a="$(sha256sum <"$f" | cut -d' ' -f1)"
		b="$(sha256sum <"$copy/$rel" | cut -d' ' -f1)"
		if [ "$a" = "$b" ]; then
			echo "reproducible $(basename "$f") $a"
		else
			echo "NOT reproducible $(basename "$f"): $a here, $b in $copy" >&2
			status=1
		fi
	done
	exit "$status"
fi

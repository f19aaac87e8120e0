#!/usr/bin/env bash
# Build every Go tool under tools/ for WASI preview1:
#
#   tools/build.sh                    build build/wasm/NAME.wasm for each tools/NAME
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

# build_all DIR: build every tool of the tree at DIR into DIR/build/wasm.
build_all() {
	local tree="$1" pkg name dst tmp
	mkdir -p "$tree/$out_dir"
	# `go list` names the main packages; test-only and C directories drop out.
	local pkgs
	pkgs="$(cd "$tree" && GOOS=wasip1 GOARCH=wasm "$go" list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./tools/...)"
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
	for f in "$root/$out_dir"/*.wasm; do
		a="$(sha256sum <"$f" | cut -d' ' -f1)"
		b="$(sha256sum <"$copy/$out_dir/$(basename "$f")" | cut -d' ' -f1)"
		if [ "$a" = "$b" ]; then
			echo "reproducible $(basename "$f") $a"
		else
			echo "NOT reproducible $(basename "$f"): $a here, $b in $copy" >&2
			status=1
		fi
	done
	exit "$status"
fi

#!/usr/bin/env bash
# Rebuild textwc.wasm, the text.wc tool, from textwc.c with clang's
# wasm32-wasi target and Debian's wasi-libc.
#
#   tools/textwc/build.sh [OUT]     (default OUT: tools/textwc/textwc.wasm)
#
# The built module is committed, so only those who change textwc.c need this.
# When clang, wasm-ld, wasi-libc or the wasm32 builtins are missing it installs
# them with apt-get (saying so), or prints how to get them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/textwc.wasm}"
sysroot=/usr
# One place for the flags: -O2 and --strip-all keep the module small (about
# 6 KiB); a 16 KiB stack and 16 KiB input buffer fit one 64 KiB page, which
# makes every fresh instance cheap.
flags=(--target=wasm32-wasi "--sysroot=$sysroot" -O2 -Wall -Wextra
	-Wl,--strip-all -Wl,-z,stack-size=16384)
packages=(clang lld wasi-libc libclang-rt-14-dev-wasm32)

have_toolchain() {
	command -v clang >/dev/null && command -v wasm-ld >/dev/null &&
		[ -e "$sysroot/lib/wasm32-wasi/libc.a" ] &&
		compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null
}

if ! have_toolchain; then
	if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
		echo "textwc: installing the C-to-WASI toolchain: apt-get install -y ${packages[*]}" >&2
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >&2
	else
		cat >&2 <<MSG
textwc: clang for wasm32-wasi is missing. Install it, then rerun this script:
  Debian/Ubuntu: sudo apt-get install -y ${packages[*]}
  elsewhere:     install clang and the WASI SDK (https://github.com/WebAssembly/wasi-sdk)
                 and run: \$WASI_SDK/bin/clang --sysroot=\$WASI_SDK/share/wasi-sysroot -O2 \\
                          -Wl,--strip-all -Wl,-z,stack-size=16384 -o textwc.wasm textwc.c
MSG
		exit 1
	fi
fi

# Build next to the target, then move, so a failed build leaves no half file.
tmp="$(mktemp "$(dirname "$out")/.textwc.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
(cd "$here" && clang "${flags[@]}" -o "$tmp" textwc.c)
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "textwc: built $out ($(wc -c <"$out") bytes, sha256 $(sha256sum "$out" | cut -d' ' -f1))"

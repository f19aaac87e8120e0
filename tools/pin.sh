#!/usr/bin/env bash
# Pin each tool manifest to the digest of the module it names.
#
#   tools/pin.sh            rewrite spec.runtime.wasm.sha256 (or plugin.sha256) of
#                           every manifest in manifests/tools/ and
#                           manifests/examples/tools/ to the sha256 of its module
#                           (or plugin binary)
#   tools/pin.sh --check    change nothing; exit 1 listing every manifest whose
#                           pin differs from its module (or whose module is
#                           missing): the `make check` gate
#   tools/pin.sh [--check] FILE...   the same for the given manifests only
#
# A manifest's module path is relative to the manifest's directory, e.g.
# manifests/tools/json.query.yaml has module: ../../build/wasm/jsonquery.wasm.
# Build the modules first (tools/build.sh). Pinning is how an operator says
# "these exact bytes may run": review what changed before you re-pin.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
check=0
if [ "${1:-}" = "--check" ]; then
	check=1
	shift
fi
case "${1:-}" in -*)
	echo "usage: tools/pin.sh [--check] [MANIFEST...]" >&2
	exit 2
	;;
esac
if [ "$#" -gt 0 ]; then
	files=("$@")
else
	shopt -s nullglob
	files=("$root"/manifests/tools/*.yaml)
	[ "${#files[@]}" -gt 0 ] || { echo "pin.sh: no manifests in manifests/tools/" >&2; exit 1; }
	# The example tools (they need credentials, so they are served apart
	# from the bundled ones) are pinned the same way.
	files+=("$root"/manifests/examples/tools/*.yaml)
fi

# The one `module:` (spec.runtime.wasm) or `command:` (spec.runtime.plugin)
# and `sha256:` of the runtime, in block or flow style.
module_re='(module|command):[[:space:]]*"?([^"[:space:],}]+)"?'
sha_re='(sha256:[[:space:]]*)"?[0-9A-Fa-f]*"?'

stale=()
for f in "${files[@]}"; do
	rel="${f#"$root"/}"
	n="$(grep -cE "^[^#]*$module_re" "$f" || true)"
	if [ "$n" != 1 ]; then
		echo "pin.sh: $rel: want exactly one wasm module: or plugin command: line, found $n" >&2
		exit 1
	fi
	if [ "$(grep -cE "^[^#]*sha256:" "$f" || true)" != 1 ]; then
		echo "pin.sh: $rel: want exactly one sha256: line" >&2
		exit 1
	fi
	module="$(grep -E "^[^#]*$module_re" "$f" | sed -E "s/.*$module_re.*/\2/")"
	case "$module" in
	/*) path="$module" ;;
	*) path="$(dirname "$f")/$module" ;;
	esac
	if [ ! -f "$path" ]; then
		stale+=("$rel: module $module is missing: run tools/build.sh (or make tools)")
		continue
	fi
	want="$(sha256sum <"$path" | cut -d' ' -f1)"
	have="$(grep -E "^[^#]*sha256:" "$f" | sed -E 's/.*sha256:[[:space:]]*"?([0-9A-Fa-f]*)"?.*/\1/')"
	[ "$have" = "$want" ] && continue
	if [ "$check" = 1 ]; then
		stale+=("$rel: pinned ${have:-nothing}, module $module is $want")
	else
		tmp="$(mktemp "$f.XXXXXX")"
		sed -E "/^[^#]*sha256:/s/$sha_re/\1\"$want\"/" "$f" >"$tmp"
		chmod --reference="$f" "$tmp" 2>/dev/null || true
		mv -f "$tmp" "$f"
		echo "pinned $rel to $want"
	fi
done

if [ "${#stale[@]}" -gt 0 ]; then
	if [ "$check" = 1 ]; then
		echo "pin.sh: these manifests do not pin their module's current bytes:" >&2
	fi
	printf '  %s\n' "${stale[@]}" >&2
	[ "$check" = 1 ] && echo "review the change, then run tools/build.sh && tools/pin.sh" >&2
	exit 1
fi

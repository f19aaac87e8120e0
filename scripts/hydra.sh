#!/usr/bin/env bash
# hydra.sh: build ORY Hydra v2.3.0 once into a cache directory, and start it
# on loopback for tests and local development.
#
#   scripts/hydra.sh build    # builds (or reuses) the binary; prints its path
#   scripts/hydra.sh start    # builds if needed, starts Hydra on 127.0.0.1 with
#                             # an in-memory database, creates an OAuth 2.0
#                             # client for the client-credentials grant and
#                             # prints the URLs and credentials as KEY=VALUE lines;
#                             # Hydra runs until this script is interrupted.
#
# Then run the Hydra test:
#   AIRLOCK_HYDRA=$(scripts/hydra.sh build) go test -count=1 -run Hydra ./runtime/credentials/
#
# Environment:
#   AIRLOCK_CACHE        cache directory (default ${XDG_CACHE_HOME:-$HOME/.cache}/airlock)
#   HYDRA_PUBLIC_PORT    public port for "start" (default 4444)
#   HYDRA_ADMIN_PORT     admin port for "start" (default 4445)
#
# The recipe (from issue 3): a plain "go install" of Hydra does not resolve,
# so build it from a scratch module with pop replaced by ORY's fork, with
# cgo for the sqlite driver (about 4 minutes cold on 2 cores). -mod=mod lets
# the build record the replacement's go.sum entries in the scratch module.
set -euo pipefail

VERSION=v2.3.0
POP_REPLACE=github.com/gobuffalo/pop/v6=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b
CACHE=${AIRLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}
BIN=$CACHE/hydra-$VERSION/hydra

log() { echo "hydra.sh: $*" >&2; }

build() {
	if [[ -x $BIN ]] && "$BIN" version >/dev/null 2>&1; then
		echo "$BIN"
		return
	fi
	command -v go >/dev/null || { log "go is not on PATH"; exit 1; }
	command -v gcc >/dev/null || command -v cc >/dev/null || { log "a C compiler is needed (cgo, for Hydra's sqlite driver)"; exit 1; }
	local scratch
	scratch=$(mktemp -d)
	trap 'rm -rf "$scratch"' RETURN
	log "building Hydra $VERSION in $scratch (several minutes the first time)"
	(
		cd "$scratch"
		go mod init airlock.local/hydra-build >/dev/null 2>&1
		go get -tool "github.com/ory/hydra/v2@$VERSION" >&2
		go mod edit -replace "$POP_REPLACE"
		mkdir -p "$(dirname "$BIN")"
		CGO_ENABLED=1 go build -mod=mod -tags sqlite,sqlite_omit_load_extension -o "$BIN.tmp" github.com/ory/hydra/v2 >&2
		mv "$BIN.tmp" "$BIN"
	)
	log "built $BIN"
	echo "$BIN"
}

start() {
	local bin pub adm secret dir pid
	bin=$(build)
	pub=${HYDRA_PUBLIC_PORT:-4444}
	adm=${HYDRA_ADMIN_PORT:-4445}
	dir=$(mktemp -d)
	secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
	export DSN=memory \
		SERVE_PUBLIC_HOST=127.0.0.1 SERVE_PUBLIC_PORT=$pub \
		SERVE_ADMIN_HOST=127.0.0.1 SERVE_ADMIN_PORT=$adm \
		URLS_SELF_ISSUER=http://127.0.0.1:$pub/ \
		SECRETS_SYSTEM=$(head -c 32 /dev/urandom | base64 | tr -d '/+=') \
		STRATEGIES_ACCESS_TOKEN=opaque LOG_LEVEL=warn
	"$bin" serve all --dev --sqa-opt-out >"$dir/hydra.log" 2>&1 &
	pid=$!
	trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
	for _ in $(seq 1 100); do
		curl -fsS "http://127.0.0.1:$adm/health/ready" >/dev/null 2>&1 && break
		kill -0 $pid 2>/dev/null || { cat "$dir/hydra.log" >&2; log "hydra exited"; exit 1; }
		sleep 0.1
	done
	local client
	client=$(curl -fsS -X POST "http://127.0.0.1:$adm/admin/clients" -H 'Content-Type: application/json' \
		-d "{\"client_secret\":\"$secret\",\"grant_types\":[\"client_credentials\"],\"scope\":\"repo:read repo:write\",\"token_endpoint_auth_method\":\"client_secret_basic\"}")
	local id
	id=$(printf '%s' "$client" | sed -n 's/.*"client_id":"\([^"]*\)".*/\1/p')
	cat <<OUT
HYDRA_TOKEN_URL=http://127.0.0.1:$pub/oauth2/token
HYDRA_REVOKE_URL=http://127.0.0.1:$pub/oauth2/revoke
HYDRA_INTROSPECT_URL=http://127.0.0.1:$adm/admin/oauth2/introspect
HYDRA_CLIENT_ID=$id
HYDRA_CLIENT_SECRET=$secret
OUT
	log "running (pid $pid); Ctrl-C to stop"
	wait $pid
}

case ${1:-} in
build) build ;;
start) start ;;
*)
	echo "usage: $0 build|start" >&2
	exit 2
	;;
esac

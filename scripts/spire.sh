#!/usr/bin/env bash
# scripts/spire.sh: build and run a local SPIRE v1.13.3 server and agent for airlock's tests.
#
#   scripts/spire.sh build
#       Build spire-server and spire-agent once into $AIRLOCK_SPIRE_BIN (default
#       ~/.cache/airlock-spire/bin) and print that directory. A cold build takes 5-15 minutes.
#   scripts/spire.sh start DIR
#       Start a SPIRE server and agent (trust domain $TRUST_DOMAIN, default airlock.local) with
#       state, sockets and logs under DIR. The server listens on 127.0.0.1 (a free port), the
#       agent attests with a join token and serves the Workload API on DIR/agent.sock. With
#       $AIRLOCK_BIN set (the airlock binary), it also copies it to distinct paths and registers
#       one SPIFFE ID per path (unix:path selectors: processes of one uid get distinct SVIDs by
#       the binary they run):
#         DIR/bin/airlock-executor      spiffe://TD/executor
#         DIR/bin/airlock-agent-a       spiffe://TD/agent/a
#         DIR/bin/airlock-agent-b       spiffe://TD/agent/b
#         DIR/bin/airlock-unregistered  (no entry: the Workload API issues it nothing)
#       DIR/env holds SPIFFE_ENDPOINT_SOCKET, TRUST_DOMAIN and the server's port.
#   scripts/spire.sh register DIR SPIFFE_ID BINARY
#       Register SPIFFE_ID for processes running the executable at BINARY (absolute path).
#   scripts/spire.sh stop DIR
#       Stop the server and agent `start DIR` started (by their recorded pids).
set -euo pipefail

SPIRE_VERSION=v1.13.3
CACHE="${AIRLOCK_SPIRE_CACHE:-$HOME/.cache/airlock-spire}"
BIN="${AIRLOCK_SPIRE_BIN:-$CACHE/bin}"

die() { echo "spire.sh: $*" >&2; exit 1; }

build() {
	if [[ -x "$BIN/spire-server" && -x "$BIN/spire-agent" ]]; then
		echo "$BIN"
		return 0
	fi
	command -v go >/dev/null || die "go is not on PATH; install Go 1.26 or set PATH"
	local src="$CACHE/src"
	mkdir -p "$src" "$BIN"
	cd "$src"
	if [[ ! -f go.mod ]]; then
		go mod init airlock.local/spirebuild >/dev/null 2>&1
	fi
	# A plain `go install ...@version` is refused by the module proxy; tool deps in a scratch module work.
	go get -tool "github.com/spiffe/spire/cmd/spire-server@$SPIRE_VERSION" "github.com/spiffe/spire/cmd/spire-agent@$SPIRE_VERSION"
	# The sqlite datastore needs cgo.
	CGO_ENABLED=1 GOBIN="$BIN" go install tool
	[[ -x "$BIN/spire-server" && -x "$BIN/spire-agent" ]] || die "build finished but $BIN lacks spire-server/spire-agent"
	echo "$BIN"
}


free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$(( (RANDOM % 30000) + 20000 ))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "found no free loopback port"
}

wait_healthy() { # BIN SOCKET NAME LOG
	for _ in $(seq 1 150); do
		if "$1" healthcheck -socketPath "$2" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	tail -n 30 "$4" >&2 || true
	die "$3 did not become healthy within 15 s (log: $4)"
}

server_cmd() { "$BIN/spire-server" "$@" -socketPath "$DIR/server.sock"; }

register() { # SPIFFE_ID BINARY
	[[ "$2" == /* ]] || die "register: BINARY must be an absolute path, got $2"
	server_cmd entry create -parentID "spiffe://$TRUST_DOMAIN/node" -spiffeID "$1" \
		-selector "unix:path:$2" -x509SVIDTTL 3600 >/dev/null
}

start() {
	[[ -x "$BIN/spire-server" && -x "$BIN/spire-agent" ]] || die "no SPIRE binaries in $BIN: run $0 build first (or set AIRLOCK_SPIRE_BIN)"
	mkdir -p "$DIR/server" "$DIR/agent" "$DIR/bin"
	DIR=$(cd "$DIR" && pwd)
	(( ${#DIR} < 90 )) || die "DIR $DIR is too long for unix sockets (keep it under 90 characters)"
	local port
	port=$(free_port)
	cat >"$DIR/server.conf" <<CONF
server {
  bind_address = "127.0.0.1"
  bind_port = "$port"
  socket_path = "$DIR/server.sock"
  trust_domain = "$TRUST_DOMAIN"
  data_dir = "$DIR/server"
  log_level = "INFO"
  default_x509_svid_ttl = "1h"
  experimental {
    cache_reload_interval = "1s"
  }
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "$DIR/server/datastore.sqlite3"
    }
  }
  KeyManager "memory" {
    plugin_data {}
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
CONF
	setsid "$BIN/spire-server" run -config "$DIR/server.conf" >"$DIR/server.log" 2>&1 </dev/null &
	echo $! >"$DIR/server.pid"
	wait_healthy "$BIN/spire-server" "$DIR/server.sock" "spire-server" "$DIR/server.log"

	local token
	token=$(server_cmd token generate -spiffeID "spiffe://$TRUST_DOMAIN/node" -ttl 600 | awk '/^Token:/ {print $2}')
	[[ -n "$token" ]] || die "spire-server issued no join token"
	cat >"$DIR/agent.conf" <<CONF
agent {
  data_dir = "$DIR/agent"
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "$port"
  socket_path = "$DIR/agent.sock"
  trust_domain = "$TRUST_DOMAIN"
  insecure_bootstrap = true
  join_token = "$token"
  experimental {
    sync_interval = "1s"
  }
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {
      discover_workload_path = true
    }
  }
}
CONF
	setsid "$BIN/spire-agent" run -config "$DIR/agent.conf" >"$DIR/agent.log" 2>&1 </dev/null &
	echo $! >"$DIR/agent.pid"
	wait_healthy "$BIN/spire-agent" "$DIR/agent.sock" "spire-agent" "$DIR/agent.log"

	if [[ -n "${AIRLOCK_BIN:-}" ]]; then
		[[ -x "$AIRLOCK_BIN" ]] || die "AIRLOCK_BIN=$AIRLOCK_BIN is not an executable"
		local name id
		for name in executor agent-a agent-b unregistered; do
			cp "$AIRLOCK_BIN" "$DIR/bin/airlock-$name"
		done
		for name in executor agent-a agent-b; do
			id="spiffe://$TRUST_DOMAIN/${name/-//}"
			register "$id" "$DIR/bin/airlock-$name"
		done
	fi
	cat >"$DIR/env" <<ENV
SPIFFE_ENDPOINT_SOCKET=unix://$DIR/agent.sock
TRUST_DOMAIN=$TRUST_DOMAIN
SPIRE_SERVER_PORT=$port
ENV
	echo "SPIRE $SPIRE_VERSION for $TRUST_DOMAIN is running: server 127.0.0.1:$port, Workload API unix://$DIR/agent.sock"
}

stop() {
	local f pid
	for f in agent server; do
		[[ -f "$DIR/$f.pid" ]] || continue
		pid=$(cat "$DIR/$f.pid")
		if kill "$pid" 2>/dev/null; then
			for _ in $(seq 1 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$DIR/$f.pid"
	done
}

TRUST_DOMAIN="${TRUST_DOMAIN:-airlock.local}"
case "${1:-}" in
build) build ;;
start)
	[[ $# -eq 2 ]] || die "usage: $0 start DIR"
	DIR=$2
	[[ ! -e "$DIR/server.pid" ]] || die "$DIR already has a SPIRE server: run $0 stop $DIR first"
	# A start that fails half-way stops what it started.
	trap 'rc=$?; if [[ $rc -ne 0 ]]; then stop; fi; exit $rc' EXIT
	start
	;;
register)
	[[ $# -eq 4 ]] || die "usage: $0 register DIR SPIFFE_ID BINARY"
	DIR=$(cd "$2" && pwd)
	TRUST_DOMAIN=$(sed -n 's/^TRUST_DOMAIN=//p' "$DIR/env")
	register "$3" "$4"
	;;
stop)
	[[ $# -eq 2 ]] || die "usage: $0 stop DIR"
	DIR=$2
	stop
	;;
*) die "usage: $0 build | start DIR | register DIR SPIFFE_ID BINARY | stop DIR" ;;
esac

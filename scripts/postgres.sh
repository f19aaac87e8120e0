#!/usr/bin/env bash
# postgres.sh: a private PostgreSQL cluster on loopback for tests and local
# development of the PostgreSQL store (runtime/store/postgres).
#
#   scripts/postgres.sh start DIR   # installs PostgreSQL with apt-get if it is
#                                   # missing, initdb's a cluster in DIR/data
#                                   # (once), starts it on 127.0.0.1 on a free
#                                   # port (kept in DIR/port) and on a unix
#                                   # socket in DIR/sock, creates the role and
#                                   # database "airlock", and prints
#                                   # AIRLOCK_POSTGRES_URL=postgres://...
#   scripts/postgres.sh stop DIR    # stops the cluster (the data stays)
#   scripts/postgres.sh url DIR     # prints the URL of a running cluster
#
# Both are idempotent: "start" on a running cluster only prints the URL.
# Then run the PostgreSQL store tests:
#   eval "$(scripts/postgres.sh start /tmp/airlock-pg)"
#   AIRLOCK_POSTGRES_URL=$AIRLOCK_POSTGRES_URL go test -count=1 ./runtime/store/postgres/
#
# PostgreSQL refuses to run as root, so when run as root the cluster runs as
# the "postgres" OS user (runuser -u postgres) and DIR is chown'ed to it;
# DIR's parent directories must be searchable by that user. Authentication
# is "trust" on loopback and the socket only: a test cluster, never a
# production one.
#
# Environment:
#   POSTGRES_PORT   port to listen on (default: a free port, chosen once)
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

usage() { die "usage: $0 start|stop|url DIR"; }

[[ $# -eq 2 ]] || usage
CMD=$1
DIR=$2
[[ $DIR == /* ]] || DIR=$PWD/$DIR

bindir() {
	local d
	if command -v pg_config >/dev/null 2>&1; then
		d=$(pg_config --bindir 2>/dev/null || true)
		[[ -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return; }
	fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[[ -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return; }
	done
}

install_pg() {
	[[ -n $(bindir) ]] && return
	[[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed and installing it needs root: apt-get install postgresql"
	command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is not available: install PostgreSQL (initdb, pg_ctl) yourself"
	log "PostgreSQL is not installed: installing the Debian package postgresql with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2 ||
		{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2; } ||
		die "apt-get install postgresql failed"
	[[ -n $(bindir) ]] || die "installed postgresql but found no initdb under /usr/lib/postgresql/*/bin"
}

# as runs a command as the cluster's OS user: postgres when we are root.
as() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
	local p i
	for i in $(seq 1 50); do
		p=$((20000 + RANDOM % 20000))
		port_free "$p" && { echo "$p"; return; }
	done
	die "found no free port on 127.0.0.1: set POSTGRES_PORT"
}

url() { echo "AIRLOCK_POSTGRES_URL=postgres://airlock@127.0.0.1:$(cat "$DIR/port")/airlock?sslmode=disable"; }

running() { [[ -f $DIR/data/PG_VERSION ]] && as "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; }

psql_admin() { as "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/sock" -p "$(cat "$DIR/port")" -U postgres -d postgres "$@"; }

start() {
	install_pg
	BIN=$(bindir)
	mkdir -p "$DIR/sock"
	if [[ $(id -u) -eq 0 ]]; then
		id postgres >/dev/null 2>&1 || die "the postgres OS user does not exist: install the postgresql package"
		chown -R postgres: "$DIR"
		runuser -u postgres -- test -x "$DIR" ||
			die "$DIR is not reachable by the postgres OS user: make its parent directories searchable (chmod o+x) or choose another DIR"
	fi
	chmod 0700 "$DIR"
	if running; then
		url
		return
	fi
	if [[ ! -f $DIR/data/PG_VERSION ]]; then
		log "initdb $DIR/data"
		as "$BIN/initdb" -D "$DIR/data" --auth=trust -U postgres --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$DIR/initdb.log" 2>&1 ||
			die "initdb failed: see $DIR/initdb.log"
	fi
	local port attempt
	for attempt in 1 2 3; do
		if [[ -n ${POSTGRES_PORT:-} ]]; then
			port=$POSTGRES_PORT
		elif [[ -s $DIR/port ]] && port_free "$(cat "$DIR/port")"; then
			port=$(cat "$DIR/port")
		else
			port=$(pick_port)
		fi
		echo "$port" >"$DIR/port"
		[[ $(id -u) -eq 0 ]] && chown postgres: "$DIR/port"
		if as "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 \
			-o "-c listen_addresses=127.0.0.1 -p $port -k $DIR/sock -c max_connections=200" start >/dev/null; then
			break
		fi
		[[ -n ${POSTGRES_PORT:-} || $attempt -eq 3 ]] && die "pg_ctl start failed: see $DIR/server.log"
		log "start on port $port failed; trying another port"
	done
	psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'airlock'" | grep -q 1 ||
		psql_admin -c "CREATE ROLE airlock LOGIN"
	psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = 'airlock'" | grep -q 1 ||
		psql_admin -c "CREATE DATABASE airlock OWNER airlock"
	log "PostgreSQL running in $DIR (log $DIR/server.log)"
	url
}

stop() {
	BIN=$(bindir)
	[[ -n $BIN ]] || { log "PostgreSQL is not installed: nothing to stop"; return; }
	if running; then
		as "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
		log "stopped PostgreSQL in $DIR"
	else
		log "no PostgreSQL running in $DIR"
	fi
}

case $CMD in
start) start ;;
stop) stop ;;
url)
	BIN=$(bindir)
	[[ -n $BIN ]] && running || die "no PostgreSQL running in $DIR: run $0 start $DIR"
	url
	;;
*) usage ;;
esac

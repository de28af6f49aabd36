#!/usr/bin/env bash
# A/B write benchmark of two `aurora` binaries, interleaved in one run so
# that both see the same machine: for each round, each binary gets a fresh
# data directory and the same `loadgen run`s (createRecord with 16 clients,
# then with one), against SQLite or Postgres. Prints each run and the
# B/A ratios of throughput, p50 and p99.
#
#   scripts/bench-ab.sh OLD_AURORA NEW_AURORA [sqlite|postgres]
#
# Settings (environment): BENCH_ROUNDS (2), BENCH_SECONDS (20),
# BENCH_CLIENTS (16), BENCH_LOADGEN_BIN (target/release/loadgen, built when
# unset), BENCH_OUT (target/bench-ab), BENCH_POSTGRES_URL (a superuser URL;
# for postgres, a database per run is created and dropped).
set -euo pipefail
cd "$(dirname "$0")/.."

A=$(realpath "$1")
B=$(realpath "$2")
DB=${3:-sqlite}
ROUNDS=${BENCH_ROUNDS:-2}
SECS=${BENCH_SECONDS:-20}
CLIENTS=${BENCH_CLIENTS:-16}
OUT=${BENCH_OUT:-target/bench-ab}
mkdir -p "$OUT"
if [ -z "${BENCH_LOADGEN_BIN:-}" ]; then
    cargo build --release --bin loadgen
fi
LOADGEN=${BENCH_LOADGEN_BIN:-target/release/loadgen}
if [ "$DB" = postgres ] && [ -z "${BENCH_POSTGRES_URL:-}" ]; then
    echo "postgres runs need BENCH_POSTGRES_URL (a superuser URL)" >&2
    exit 2
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
start_plc "$LOADGEN" "$WORK/plc.log"

# run LABEL BINARY: one server, both loads.
run() {
    local label=$1 bin=$2 data="$WORK/$1" db_url=""
    mkdir -p "$data"
    if [ "$DB" = postgres ]; then
        local name="bench_ab_${label//[^a-z0-9]/_}"
        psql "$BENCH_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
        db_url="${BENCH_POSTGRES_URL%/*}/$name"
    fi
    start_aurora "$bin" "$data" "$data.log" AURORA_LOG=warn,aurora=info \
        ${db_url:+"AURORA_DATABASE_URL=$db_url"}
    "$LOADGEN" run --url "$URL" --pid "$SERVER" --label "$label-c$CLIENTS" \
        --clients "$CLIENTS" --seconds "$SECS" --subscribers 1 \
        --json "$OUT/$label-c$CLIENTS.json" >/dev/null
    "$LOADGEN" run --url "$URL" --pid "$SERVER" --label "$label-c1" \
        --clients 1 --seconds "$SECS" --subscribers 1 \
        --json "$OUT/$label-c1.json" >/dev/null
    kill "$SERVER"
    wait "$SERVER" 2>/dev/null || true
}

for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round"
    run "a$round" "$A"
    run "b$round" "$B"
done

python3 - "$OUT" "$ROUNDS" "$CLIENTS" <<'EOF'
import json, sys, statistics
out, rounds, clients = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def load(side, load_):
    runs = [json.load(open(f"{out}/{side}{r}-{load_}.json")) for r in range(1, rounds + 1)]
    t = [r["total"] for r in runs]
    cpu = [((r.get("server") or {}).get("usage") or {}).get("cpu_cores") for r in runs]
    return {
        "per_s": statistics.mean(x["per_second"] for x in t),
        "p50": statistics.mean(x["latency_ms"]["p50"] for x in t),
        "p99": statistics.mean(x["latency_ms"]["p99"] for x in t),
        "errors": sum(x["errors"] for x in t),
        "cpu": statistics.mean(c for c in cpu if c is not None) if any(c is not None for c in cpu) else float("nan"),
    }
print(f"| load | side | req/s | p50 ms | p99 ms | errors | CPU cores |")
print(f"|---|---|--:|--:|--:|--:|--:|")
for load_ in (f"c{clients}", "c1"):
    a, b = load("a", load_), load("b", load_)
    for side, v in (("A", a), ("B", b)):
        print(f"| {load_} | {side} | {v['per_s']:.1f} | {v['p50']:.2f} | {v['p99']:.2f} | {v['errors']} | {v['cpu']:.2f} |")
    print(f"| {load_} | B/A | {b['per_s']/a['per_s']:.2f}x | {b['p50']/a['p50']:.2f}x | {b['p99']/a['p99']:.2f}x | | |")
EOF

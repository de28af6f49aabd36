#!/usr/bin/env bash
# Firehose benchmark on this machine, against a release `aurora serve` on
# SQLite (or on Postgres with AURORA_DATABASE_URL set):
#   1. 1,000 live subscribers while 16 clients write at a fixed rate:
#      events/s, delivery latency p50/p99, every subscriber complete, and
#      the server's memory per idle subscriber;
#   2. backfill speed of one subscriber from cursor 0 over 100,000 events.
# Usage: scripts/bench-firehose.sh [SUBSCRIBERS] [RATE] [SECONDS] [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."

SUBSCRIBERS=${1:-1000}
RATE=${2:-200}
SECONDS_=${3:-30}
EVENTS=${4:-100000}
OUT=${BENCH_OUT:-target/bench}
mkdir -p "$OUT"

# 2 x 1,000 sockets (client and server ends) and the rest.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# BENCH_AURORA_BIN / BENCH_LOADGEN_BIN: use prebuilt binaries instead of building.
if [ -z "${BENCH_AURORA_BIN:-}" ] || [ -z "${BENCH_LOADGEN_BIN:-}" ]; then
    cargo build --release --bin aurora --bin loadgen
fi
AURORA=${BENCH_AURORA_BIN:-target/release/aurora}
LOADGEN=${BENCH_LOADGEN_BIN:-target/release/loadgen}
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
start_aurora "$AURORA" "$WORK/data" "$WORK/aurora.log" \
    AURORA_FIREHOSE_OUTBOX_FRAMES="${OUTBOX:-500}" AURORA_LOG="${AURORA_LOG:-info}"
echo "aurora on $URL (pid $SERVER), PLC on $PLC_URL"

echo "== 1. $SUBSCRIBERS subscribers, $RATE writes/s for $SECONDS_ s"
"$LOADGEN" run --url "$URL" --pid "$SERVER" --label fanout \
    --clients 16 --rate "$RATE" --seconds "$SECONDS_" \
    --subscribers "$SUBSCRIBERS" --json "$OUT/firehose-fanout.json"

echo "== 2. write $EVENTS events, then backfill from cursor 0"
"$LOADGEN" run --url "$URL" --pid "$SERVER" --label seed \
    --clients 16 --seconds 3600 --requests "$EVENTS" --subscribers 0 \
    --json "$OUT/firehose-seed.json"
"$LOADGEN" backfill --url "$URL" --cursor 0 --label backfill \
    --json "$OUT/firehose-backfill.json"

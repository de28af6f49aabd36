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

# A stand-in PLC directory for sign-ups.
"$LOADGEN" plc >"$WORK/plc.log" 2>&1 &
PIDS+=($!)
until grep -q "plc listening on" "$WORK/plc.log"; do sleep 0.1; done
# A PLC stand-in that stops answering would fail every sign-up; it is
# checked by the first run's sign-ups.
PLC_URL=$(sed -n 's/.*plc listening on //p' "$WORK/plc.log")

AURORA_DATA_DIR="$WORK/data" AURORA_LISTEN=127.0.0.1:0 AURORA_PLC_URL="$PLC_URL" \
    AURORA_PUBLIC_URL=https://pds.test AURORA_USER_DOMAINS=.test \
    AURORA_RATE_LIMITS__ENABLED=false AURORA_FIREHOSE_OUTBOX_FRAMES=${OUTBOX:-500} \
    AURORA_LOG=${AURORA_LOG:-info} \
    "$AURORA" serve >"$WORK/aurora.log" 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
until grep -q "listening on" "$WORK/aurora.log"; do
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "aurora did not start:" >&2
        cat "$WORK/aurora.log" >&2
        exit 1
    fi
    sleep 0.1
done
URL="http://$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$WORK/aurora.log" | head -1)"
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

# Shared by the bench scripts (sourced, not run): a stand-in PLC directory
# and `aurora serve` on a free loopback port. Each started process's pid is
# added to the caller's PIDS array, for its cleanup.

# start_plc LOADGEN LOG: runs `LOADGEN plc`; sets PLC_URL. A stand-in that
# stops answering would fail every sign-up, so the first run's sign-ups
# check it.
start_plc() {
    "$1" plc >"$2" 2>&1 &
    PIDS+=($!)
    until grep -q "plc listening on" "$2"; do sleep 0.1; done
    PLC_URL=$(sed -n 's/.*plc listening on //p' "$2")
}

# start_aurora BIN DATA_DIR LOG [VAR=VALUE ...]: runs `BIN serve` with the
# PLC of start_plc, handles under `.test`, rate limits off, and the given
# settings; returns once it listens. Sets SERVER (its pid) and URL.
start_aurora() {
    local bin=$1 data=$2 log=$3
    shift 3
    env AURORA_DATA_DIR="$data" AURORA_LISTEN=127.0.0.1:0 AURORA_PLC_URL="$PLC_URL" \
        AURORA_PUBLIC_URL=https://pds.test AURORA_USER_DOMAINS=.test \
        AURORA_RATE_LIMITS__ENABLED=false "$@" \
        "$bin" serve >"$log" 2>&1 &
    SERVER=$!
    PIDS+=("$SERVER")
    until grep -q "listening on" "$log"; do
        if ! kill -0 "$SERVER" 2>/dev/null; then
            echo "aurora did not start:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    URL="http://$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$log" | head -1)"
}

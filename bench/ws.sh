#!/usr/bin/env bash
# Section "ws": WebSocket echo round-trips, fan-out through the hub and idle
# memory, for moonwire (bench/apps/ws.lua) and Node's ws package in one
# process (bench/peers/node_ws.js). Run via scripts/bench. The load client is
# bench/client/pushload.c (modes echo, ws, ws-idle), built by push_setup.
# Servers on CPU 1 (BENCH_SERVER_CPU), the client on CPU 0; every run gets a
# fresh server and the two servers alternate scenario by scenario.
# See bench/README.md ("ws").
set -euo pipefail

: "${BENCH_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
# shellcheck source=bench/lib/common.sh
. "$BENCH_ROOT/bench/lib/common.sh"
# shellcheck source=bench/lib/push.sh
. "$BENCH_ROOT/bench/lib/push.sh"

export BENCH_WS_ECHO_CLIENTS=${BENCH_WS_ECHO_CLIENTS:-64}
export BENCH_WS_ECHO_PAYLOAD=${BENCH_WS_ECHO_PAYLOAD:-32}
export BENCH_WS_CLIENTS=${BENCH_WS_CLIENTS:-10000}
export BENCH_WS_PACING=${BENCH_WS_PACING:-paced}
export BENCH_WS_IDLE_CLIENTS=${BENCH_WS_IDLE_CLIENTS:-10000}
push_check_pacing BENCH_WS_PACING "$BENCH_WS_PACING"
for _v in BENCH_WS_ECHO_CLIENTS BENCH_WS_ECHO_PAYLOAD BENCH_WS_IDLE_CLIENTS; do
    [[ ${!_v} =~ ^[0-9]+$ ]] || die "$_v must be a non-negative integer (got '${!_v}')"
done
unset _v
[[ $BENCH_WS_ECHO_PAYLOAD -le 125 ]] || die "BENCH_WS_ECHO_PAYLOAD must be <= 125 (one short frame)"
for n in $BENCH_WS_CLIENTS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "client counts must be positive integers (got '$n')"
done

# push_setup raises ulimit -n to the hard limit (servers and client inherit
# it), builds the client, makes the temp dir and the runs file.
push_setup ws

# The pub/sub servers of push.sh, replaced by the WebSocket ones.
push_start_moonwire() {
    PORT=$(free_port)
    start_server "$BENCH_TMP/moonwire.log" \
        "$MOONWIRE_BIN" -l "127.0.0.1:$PORT" "$BENCH_ROOT/bench/apps/ws.lua"
}

push_start_node() {
    PORT=$(free_port)
    start_server "$BENCH_TMP/node.log" \
        node "$BENCH_ROOT/bench/peers/node_ws.js" "$PORT"
}

# ws_echo_run SERVER: a fresh server, BENCH_WS_ECHO_CLIENTS sockets each
# sending a masked text frame and waiting for its echo, BENCH_WARMUP s
# unmeasured then BENCH_SECONDS measured.
ws_echo_run() {
    local server=$1 clients=$BENCH_WS_ECHO_CLIENTS scenario="echo-$BENCH_WS_ECHO_CLIENTS"
    if [[ $server == moonwire && -n $MOONWIRE_SKIP ]]; then
        log "SKIPPING moonwire: $MOONWIRE_SKIP"
        push_record "$server" "$scenario" echo "$clients" none skipped "$MOONWIRE_SKIP"
        return 0
    fi
    push_fd_check "$clients"
    if ! "push_start_$server" ||
        ! "$PY" "$BENCH_PY" wait-ready --port "$PORT" --pid "$SERVER_PID" --timeout 15; then
        log_err "$server did not come up; its output:"
        tail -n 30 "$BENCH_TMP/$server.log" >&2 || true
        [[ -z ${SERVER_PID:-} ]] || stop_child "$SERVER_PID"
        push_record "$server" "$scenario" echo "$clients" none failed "did not come up"
        BENCH_FAILED=1
        return 0
    fi
    local out=$BENCH_TMP/$server-$scenario.json log=$BENCH_TMP/$server-$scenario.log rc=0
    log "$server: $scenario (pid $SERVER_PID, port $PORT)"
    run_tracked "$PY" "$BENCH_PY" run --out "$log" --timeout $((BENCH_SECONDS + BENCH_WARMUP + 60)) \
        -- "${CLIENT_PIN[@]}" "$PUSHLOAD" --mode echo --port "$PORT" --clients "$clients" \
        --messages 0 --payload "$BENCH_WS_ECHO_PAYLOAD" --seconds "$BENCH_SECONDS" \
        --warmup "$BENCH_WARMUP" --server-pid "$SERVER_PID" --server-cpu "$BENCH_SERVER_CPU" \
        --client-cpu "$BENCH_CLIENT_CPU" --timeout $((BENCH_SECONDS + BENCH_WARMUP + 30)) \
        --label "$server" --out "$out" >/dev/null || rc=$?
    if ! proc_alive "$SERVER_PID"; then
        log_err "$server died during $scenario; its output:"
        tail -n 20 "$BENCH_TMP/$server.log" >&2 || true
        push_record "$server" "$scenario" echo "$clients" none failed "server died during the run"
        BENCH_FAILED=1
    elif [[ $rc -ne 0 || ! -s $out ]]; then
        log_err "$server $scenario: client exited with status $rc:"
        tail -n 20 "$log" >&2 || true
        push_record "$server" "$scenario" echo "$clients" none failed "client exited with status $rc" "$out"
        BENCH_FAILED=1
    else
        sed 's/^\[pushload /  [/' "$log" >&2 || true
        push_record "$server" "$scenario" echo "$clients" none ok "" "$out"
    fi
    stop_child "$SERVER_PID"
}

if [[ $BENCH_WS_ECHO_CLIENTS -gt 0 ]]; then
    for server in "${PUSH_SERVERS[@]}"; do
        ws_echo_run "$server"
    done
fi
for n in $BENCH_WS_CLIENTS; do
    for pacing in $BENCH_WS_PACING; do
        for server in "${PUSH_SERVERS[@]}"; do
            push_run "$server" ws "$n" "$pacing"
        done
    done
done
if [[ $BENCH_WS_IDLE_CLIENTS -gt 0 ]]; then
    for server in "${PUSH_SERVERS[@]}"; do
        push_run "$server" ws-idle "$BENCH_WS_IDLE_CLIENTS"
    done
fi

V_NODE=$(node -v 2>/dev/null) || V_NODE=""
V_NODE_WS=$(node -p "require('$BENCH_ROOT/tests/node/node_modules/ws/package.json').version" 2>/dev/null) || V_NODE_WS=""
V_MOONWIRE_GIT=$(git -C "$BENCH_ROOT" describe --always --dirty 2>/dev/null) || V_MOONWIRE_GIT=""
export V_NODE V_NODE_WS V_MOONWIRE_GIT MOONWIRE_BIN
"$PY" "$BENCH_PY" ws-report --runs "$PUSH_RUNS" --out "$RESULT_JSON" || BENCH_FAILED=1
[[ $BENCH_FAILED -eq 0 ]]

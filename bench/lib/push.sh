# shellcheck shell=bash
# Shared by the push sections (bench/sse.sh, bench/longpoll.sh): the pub/sub
# servers (bench/apps/pubsub.lua, bench/peers/node_pubsub.js), the load client
# (bench/client/pushload.c, built here with cc), one run per scenario and
# server, and the report. Sourced after bench/lib/common.sh.

# Knobs (documented in scripts/bench and bench/README.md).
export BENCH_PUSH_MESSAGES=${BENCH_PUSH_MESSAGES:-$([[ $BENCH_SECONDS -lt 10 ]] && echo 50 || echo 200)}
export BENCH_PUSH_INTERVAL_MS=${BENCH_PUSH_INTERVAL_MS:-5}
export BENCH_PUSH_PAYLOAD=${BENCH_PUSH_PAYLOAD:-64}
export BENCH_PUSH_HISTORY=${BENCH_PUSH_HISTORY:-100}
export BENCH_PUSH_TIMEOUT=${BENCH_PUSH_TIMEOUT:-180}

for _v in BENCH_PUSH_MESSAGES BENCH_PUSH_PAYLOAD BENCH_PUSH_HISTORY BENCH_PUSH_TIMEOUT; do
    [[ ${!_v} =~ ^[0-9]+$ ]] || die "$_v must be a non-negative integer (got '${!_v}')"
done
unset _v
[[ $BENCH_PUSH_INTERVAL_MS =~ ^[0-9]+([.][0-9]+)?$ ]] ||
    die "BENCH_PUSH_INTERVAL_MS must be a number of milliseconds (got '$BENCH_PUSH_INTERVAL_MS')"
# push_check_pacing NAME VALUE: dies unless VALUE lists known pacings.
push_check_pacing() {
    local p
    [[ -n $2 ]] || die "$1 is empty"
    for p in $2; do
        [[ $p == paced || $p == burst || $p == closed ]] ||
            die "$1: unknown pacing '$p' (paced, burst, closed)"
    done
}

PUSHLOAD=""
PUSH_RUNS=""
PUSH_SERVERS=()

# push_setup SECTION: packages, the client, fd limits, temp dir, pinning.
push_setup() {
    require_cmd node nodejs
    require_cmd cc gcc
    require_cmd pkg-config pkg-config
    require_pkg libuv1-dev
    install_missing
    [[ -n ${MOONWIRE_SKIP+x} ]] || resolve_moonwire

    local s
    for s in $BENCH_SERVERS; do
        case $s in
            moonwire|node) PUSH_SERVERS+=("$s") ;;
            nginx) log "nginx: no pub/sub peer in this section; skipped" ;;
            *) die "unknown server '$s' in BENCH_SERVERS (known: moonwire nginx node)" ;;
        esac
    done

    # both apps size their channel's history from this
    export BENCH_HISTORY=$BENCH_PUSH_HISTORY

    bench_init
    check_pinning
    PUSH_RUNS=$BENCH_TMP/runs.tsv
    : >"$PUSH_RUNS"
    export BENCH_TIMESTAMP
    BENCH_TIMESTAMP=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    RESULT_JSON=$BENCH_ROOT/bench/results/$1-$(date -u -d "$BENCH_TIMESTAMP" +%Y%m%dT%H%M%SZ).json

    # Client and servers inherit this shell's limit; every connection is a
    # descriptor on both sides.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    PUSH_FD_LIMIT=$(ulimit -n)

    PUSHLOAD=$BENCH_TMP/pushload
    local cflags
    cflags=$(pkg-config --cflags --libs libuv) || die "pkg-config cannot find libuv (package libuv1-dev)"
    # shellcheck disable=SC2086
    cc -std=gnu11 -O2 -g -Wall -Wextra -o "$PUSHLOAD" "$BENCH_ROOT/bench/client/pushload.c" $cflags ||
        die "building bench/client/pushload.c failed"
}

# push_fd_check CLIENTS: dies unless both ends can hold CLIENTS connections.
push_fd_check() {
    [[ $PUSH_FD_LIMIT == unlimited || $PUSH_FD_LIMIT -ge $(($1 + 100)) ]] ||
        die "open-file limit $PUSH_FD_LIMIT is too low for $1 connections (raise the hard limit: ulimit -Hn)"
}

push_start_moonwire() {
    PORT=$(free_port)
    start_server "$BENCH_TMP/moonwire.log" \
        "$MOONWIRE_BIN" -l "127.0.0.1:$PORT" "$BENCH_ROOT/bench/apps/pubsub.lua"
}

push_start_node() {
    PORT=$(free_port)
    start_server "$BENCH_TMP/node.log" \
        node "$BENCH_ROOT/bench/peers/node_pubsub.js" "$PORT"
}

# record SERVER SCENARIO KIND CLIENTS PACING STATUS DETAIL [JSON]
push_record() {
    local IFS=$'\t'
    echo "$*" >>"$PUSH_RUNS"
}

# push_run SERVER KIND CLIENTS [PACING]: a fresh server, one client run.
# KIND: sse | poll | idle; PACING: paced | burst | closed (idle: none).
push_run() {
    local server=$1 kind=$2 clients=$3 pacing=${4:-none}
    local scenario="$kind-$clients" interval
    [[ $pacing == none ]] || scenario+="-$pacing"
    if [[ $server == moonwire && -n $MOONWIRE_SKIP ]]; then
        log "SKIPPING moonwire: $MOONWIRE_SKIP"
        push_record "$server" "$scenario" "$kind" "$clients" "$pacing" skipped "$MOONWIRE_SKIP"
        return 0
    fi
    push_fd_check "$clients"
    if ! "push_start_$server"; then
        push_record "$server" "$scenario" "$kind" "$clients" "$pacing" failed "could not start"
        BENCH_FAILED=1
        return 0
    fi
    if ! "$PY" "$BENCH_PY" wait-ready --port "$PORT" --pid "$SERVER_PID" --timeout 15; then
        log_err "$server did not come up (127.0.0.1:$PORT); its output:"
        tail -n 30 "$BENCH_TMP/$server.log" >&2 || true
        stop_child "$SERVER_PID"
        push_record "$server" "$scenario" "$kind" "$clients" "$pacing" failed "did not come up"
        BENCH_FAILED=1
        return 0
    fi
    case $pacing in
        burst) interval=0 ;;
        closed) interval=-1 ;;
        *) interval=$BENCH_PUSH_INTERVAL_MS ;;
    esac
    local out=$BENCH_TMP/$server-$scenario.json log=$BENCH_TMP/$server-$scenario.log rc=0
    local -a args=(--mode "$kind" --port "$PORT" --clients "$clients"
                   --messages "$BENCH_PUSH_MESSAGES" --interval-ms "$interval"
                   --payload "$BENCH_PUSH_PAYLOAD" --server-pid "$SERVER_PID"
                   --server-cpu "$BENCH_SERVER_CPU" --client-cpu "$BENCH_CLIENT_CPU"
                   --timeout "$BENCH_PUSH_TIMEOUT" --drain 60 --settle 2
                   --label "$server" --out "$out")
    log "$server: $scenario (pid $SERVER_PID, port $PORT)"
    run_tracked "$PY" "$BENCH_PY" run --out "$log" --timeout $((BENCH_PUSH_TIMEOUT + 30)) \
        -- "${CLIENT_PIN[@]}" "$PUSHLOAD" "${args[@]}" >/dev/null || rc=$?
    if ! proc_alive "$SERVER_PID"; then
        log_err "$server died during $scenario; its output:"
        tail -n 20 "$BENCH_TMP/$server.log" >&2 || true
        push_record "$server" "$scenario" "$kind" "$clients" "$pacing" failed "server died during the run"
        BENCH_FAILED=1
        stop_child "$SERVER_PID"
        return 0
    fi
    if [[ $rc -ne 0 || ! -s $out ]]; then
        log_err "$server $scenario: client exited with status $rc:"
        tail -n 20 "$log" >&2 || true
        push_record "$server" "$scenario" "$kind" "$clients" "$pacing" failed "client exited with status $rc" "$out"
        BENCH_FAILED=1
    else
        sed 's/^\[pushload /  [/' "$log" >&2 || true
        push_record "$server" "$scenario" "$kind" "$clients" "$pacing" ok "" "$out"
    fi
    stop_child "$SERVER_PID"
}

# push_report SECTION: table, ratios, targets, JSON in bench/results/.
# shellcheck disable=SC2034  # BENCH_FAILED is read by the section script
push_report() {
    V_NODE=$(node -v 2>/dev/null) || V_NODE=""
    V_MOONWIRE_GIT=$(git -C "$BENCH_ROOT" describe --always --dirty 2>/dev/null) || V_MOONWIRE_GIT=""
    export V_NODE V_MOONWIRE_GIT MOONWIRE_BIN
    "$PY" "$BENCH_PY" push-report --section "$1" --runs "$PUSH_RUNS" --out "$RESULT_JSON" || BENCH_FAILED=1
}

#!/usr/bin/env bash
# Section "http": GET / -> "Hello, World!" over keep-alive, unpipelined and
# pipelined, for moonwire, nginx+Lua and Node. Run via scripts/bench.
set -euo pipefail

: "${BENCH_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
# shellcheck source=bench/lib/common.sh
. "$BENCH_ROOT/bench/lib/common.sh"

NGINX_MODDIR=/usr/share/nginx/modules

require_cmd wrk wrk
require_cmd nginx nginx
require_pkg libnginx-mod-http-lua
require_cmd node nodejs
install_missing
for m in ndk_http_module.so ngx_http_lua_module.so; do
    [[ -f $NGINX_MODDIR/$m ]] || die "$NGINX_MODDIR/$m missing (package libnginx-mod-http-lua / libnginx-mod-http-ndk)"
done

# scripts/bench normally resolves (and builds) moonwire once for all sections.
[[ -n ${MOONWIRE_SKIP+x} ]] || resolve_moonwire

bench_init
check_pinning

PIPELINE_LUA=$BENCH_ROOT/bench/http/pipeline.lua
RUNS=$BENCH_TMP/runs.tsv
: >"$RUNS"
export BENCH_TIMESTAMP
BENCH_TIMESTAMP=$(date -u +%Y-%m-%dT%H:%M:%SZ)
RESULT_JSON=$BENCH_ROOT/bench/results/http-$(date -u -d "$BENCH_TIMESTAMP" +%Y%m%dT%H%M%SZ).json

# record SERVER MODE STATUS DETAIL [WRK_OUT T0 T1 WRK_RC WRK_CPU_SECONDS
#        SERVER_CORE_BEFORE SERVER_CORE_AFTER CLIENT_CORE_BEFORE CLIENT_CORE_AFTER]
record() {
    local IFS=$'\t'
    echo "$*" >>"$RUNS"
}

record_all_modes() {
    record "$1" unpipelined "$2" "$3"
    record "$1" pipelined "$2" "$3"
}

# run_wrk MODE SECONDS PORT OUTFILE: wrk's report goes to OUTFILE, its own
# CPU seconds to OUTFILE.cpu; returns wrk's status. bench.py run enforces a
# time limit so a stalled server cannot hang the run.
run_wrk() {
    local mode=$1 secs=$2 port=$3 out=$4
    local -a args=(-t1 "-c$BENCH_CONNECTIONS" "-d${secs}s" --latency)
    [[ $mode == pipelined ]] && args+=(-s "$PIPELINE_LUA")
    args+=("http://127.0.0.1:$port/")
    run_tracked "$PY" "$BENCH_PY" run --out "$out" --timeout $((secs + 30)) \
        -- "${CLIENT_PIN[@]}" wrk "${args[@]}" >"$out.cpu"
}

# start_<server>: start it on a fresh loopback port; sets PORT and SERVER_PID.
start_moonwire() {
    PORT=$(free_port)
    start_server "$BENCH_TMP/moonwire.log" \
        "$MOONWIRE_BIN" -l "127.0.0.1:$PORT" "$BENCH_ROOT/bench/apps/hello.lua"
}

start_node() {
    PORT=$(free_port)
    start_server "$BENCH_TMP/node.log" node "$BENCH_ROOT/bench/peers/node_http.js" "$PORT"
}

start_nginx() {
    PORT=$(free_port)
    local dir=$BENCH_TMP/nginx
    mkdir -p "$dir"
    sed -e "s|@TMP@|$dir|g" -e "s|@PORT@|$PORT|g" -e "s|@MODDIR@|$NGINX_MODDIR|g" \
        "$BENCH_ROOT/bench/peers/nginx.conf.in" >"$dir/nginx.conf"
    # -e: otherwise nginx opens /var/log/nginx/error.log before reading the config.
    if ! nginx -t -q -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" >"$BENCH_TMP/nginx.log" 2>&1; then
        cat "$BENCH_TMP/nginx.log" >&2
        return 1
    fi
    start_server "$BENCH_TMP/nginx.log" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log"
}

# The processes whose CPU time is charged to the server.
measure_pids_for() {
    local server=$1 d
    case $server in
        # The master only supervises; the worker(s) serve every request.
        nginx) children_of "$SERVER_PID" ;;
        # Process itself plus any helpers it forks (threads are already
        # included in /proc/PID/stat).
        *) echo "$SERVER_PID"; for d in $(descendants_of "$SERVER_PID"); do echo "$d"; done ;;
    esac
}

bench_server() {
    local server=$1 mode out t0 t1 s0 s1 c0 c1 wrk_rc wrk_cpu pids_after
    if [[ $server == moonwire && -n $MOONWIRE_SKIP ]]; then
        log "SKIPPING moonwire: $MOONWIRE_SKIP"
        record_all_modes moonwire skipped "$MOONWIRE_SKIP"
        return 0
    fi
    log "$server: starting"
    if ! "start_$server"; then
        record_all_modes "$server" failed "could not start (see log above)"
        BENCH_FAILED=1
        return 0
    fi
    if ! "$PY" "$BENCH_PY" wait-ready --port "$PORT" --pid "$SERVER_PID" --timeout 15; then
        local why="did not come up"
        if ! proc_alive "$SERVER_PID"; then
            local st=0
            wait "$SERVER_PID" 2>/dev/null || st=$?
            why="exited with status $st"
        fi
        log_err "$server $why (127.0.0.1:$PORT); its output:"
        if [[ -s $BENCH_TMP/$server.log ]]; then
            tail -n 30 "$BENCH_TMP/$server.log" >&2
        else
            log "  (no output)"
        fi
        [[ $server != nginx ]] || tail -n 30 "$BENCH_TMP/nginx/error.log" >&2 2>/dev/null || true
        stop_child "$SERVER_PID"
        record_all_modes "$server" failed "$why, or served a wrong response; see log above"
        BENCH_FAILED=1
        return 0
    fi
    local -a measure
    mapfile -t measure < <(measure_pids_for "$server")
    if [[ ${#measure[@]} -eq 0 ]]; then
        log_err "$server: no process to measure"
        stop_child "$SERVER_PID"
        record_all_modes "$server" failed "no process to measure"
        BENCH_FAILED=1
        return 0
    fi
    log "$server: listening on 127.0.0.1:$PORT, measuring pid(s) ${measure[*]}"

    for mode in unpipelined pipelined; do
        if [[ $BENCH_WARMUP -gt 0 ]]; then
            run_wrk "$mode" "$BENCH_WARMUP" "$PORT" "$BENCH_TMP/$server-$mode-warmup.txt" || true
        fi
    done

    for mode in unpipelined pipelined; do
        out=$BENCH_TMP/$server-$mode.txt
        log "$server: $mode, ${BENCH_SECONDS}s"
        wrk_rc=0
        s0=$(core_stat "$BENCH_SERVER_CPU")
        c0=$(core_stat "$BENCH_CLIENT_CPU")
        t0=$(proc_ticks "${measure[@]}") || t0=""
        run_wrk "$mode" "$BENCH_SECONDS" "$PORT" "$out" || wrk_rc=$?
        t1=$(proc_ticks "${measure[@]}") || t1=""
        s1=$(core_stat "$BENCH_SERVER_CPU")
        c1=$(core_stat "$BENCH_CLIENT_CPU")
        wrk_cpu=$(cat "$out.cpu" 2>/dev/null) || wrk_cpu=""
        # A crashed or respawned process would make the CPU delta meaningless.
        mapfile -t pids_after < <(measure_pids_for "$server")
        if [[ -z $t0 || -z $t1 || "${pids_after[*]}" != "${measure[*]}" ]]; then
            log_err "$server died or respawned during the $mode run"
            tail -n 20 "$BENCH_TMP/$server.log" >&2 || true
            record "$server" "$mode" failed "process died or respawned during the run"
            BENCH_FAILED=1
            continue
        fi
        if [[ $wrk_rc -ne 0 ]]; then
            log_err "$server: wrk exited with status $wrk_rc:"
            tail -n 20 "$out" >&2 2>/dev/null || true
            BENCH_FAILED=1
        fi
        record "$server" "$mode" ok "" "$out" "$t0" "$t1" "$wrk_rc" "$wrk_cpu" "$s0" "$s1" "$c0" "$c1"
    done
    stop_child "$SERVER_PID"
}

for s in $BENCH_SERVERS; do
    [[ $s == moonwire || $s == nginx || $s == node ]] ||
        die "unknown server '$s' in BENCH_SERVERS (known: moonwire nginx node)"
done
for s in $BENCH_SERVERS; do
    bench_server "$s"
done

V_WRK=$(wrk -v 2>&1 | head -n1 | sed 's/ Copyright.*//') || true
V_NGINX=$(nginx -v 2>&1 | sed 's/^nginx version: //') || true
V_NODE=$(node -v 2>/dev/null) || true
V_MOONWIRE_GIT=$(git -C "$BENCH_ROOT" describe --always --dirty 2>/dev/null) || V_MOONWIRE_GIT=""
export V_WRK V_NGINX V_NODE V_MOONWIRE_GIT MOONWIRE_BIN

"$PY" "$BENCH_PY" http-report --runs "$RUNS" --out "$RESULT_JSON" || BENCH_FAILED=1
[[ $BENCH_FAILED -eq 0 ]]

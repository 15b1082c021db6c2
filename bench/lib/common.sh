# shellcheck shell=bash
# Shared helpers for scripts/bench and the bench/<section>.sh files.
# Sourced, not executed. Expects BENCH_ROOT to be set (scripts/bench exports it).

: "${BENCH_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export BENCH_ROOT

# /usr/bin/python3 explicitly: a pyenv shim on PATH may point anywhere.
PY=/usr/bin/python3
BENCH_PY=$BENCH_ROOT/bench/lib/bench.py

export BENCH_SECONDS=${BENCH_SECONDS:-10}
export BENCH_WARMUP=${BENCH_WARMUP:-1}
export BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-16}
export BENCH_PIPELINE=${BENCH_PIPELINE:-16}
export BENCH_SERVERS=${BENCH_SERVERS:-moonwire nginx node}
export BENCH_SERVER_CPU=${BENCH_SERVER_CPU:-1}
export BENCH_CLIENT_CPU=${BENCH_CLIENT_CPU:-0}

log()     { printf '[bench] %s\n' "$*" >&2; }
log_err() { printf '[bench] ERROR: %s\n' "$*" >&2; }
die()     { log_err "$*"; exit 1; }

for _v in BENCH_SECONDS BENCH_WARMUP BENCH_CONNECTIONS BENCH_PIPELINE BENCH_SERVER_CPU BENCH_CLIENT_CPU; do
    [[ ${!_v} =~ ^[0-9]+$ ]] || die "$_v must be a non-negative integer (got '${!_v}')"
done
unset _v
[[ $BENCH_SECONDS -ge 1 ]] || die "BENCH_SECONDS must be >= 1"
[[ $BENCH_PIPELINE -ge 1 ]] || die "BENCH_PIPELINE must be >= 1"

# ---------------------------------------------------------------- packages

_MISSING_PKGS=()

pkg_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == *" installed" ]]
}

# require_cmd CMD PKG: queue PKG for installation when CMD is not on PATH.
require_cmd() {
    command -v "$1" >/dev/null 2>&1 || _MISSING_PKGS+=("$2")
}

# require_pkg PKG: for things that are not commands (e.g. nginx modules).
require_pkg() {
    pkg_installed "$1" || _MISSING_PKGS+=("$1")
}

# Install everything queued, in one apt transaction; no-op when nothing is missing.
install_missing() {
    [[ ${#_MISSING_PKGS[@]} -gt 0 ]] || return 0
    local pkgs
    pkgs=$(printf '%s\n' "${_MISSING_PKGS[@]}" | sort -u | tr '\n' ' ')
    _MISSING_PKGS=()
    if [[ $EUID -ne 0 ]]; then
        die "missing packages: $pkgs-- run 'apt-get install -y $pkgs' or rerun as root"
    fi
    log "installing: $pkgs"
    # Without a policy-rc.d, installing nginx would start the system service on
    # 0.0.0.0:80; we only want the binary. Only add one if none exists, and
    # only for the duration of the install.
    local made_policy=0 rc=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    # shellcheck disable=SC2086
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs; } >&2 || rc=$?
    [[ $made_policy -eq 0 ]] || rm -f /usr/sbin/policy-rc.d
    [[ $rc -eq 0 ]] || die "apt-get install $pkgs failed (rc=$rc)"
}

ensure_common_deps() {
    [[ -x $PY ]] || _MISSING_PKGS+=(python3)
    require_cmd taskset util-linux
    require_cmd getconf libc-bin
    install_missing
    [[ -x $PY ]] || die "$PY still missing after install"
}

# ---------------------------------------------------------------- moonwire

# Sets and exports MOONWIRE_BIN; when it cannot be used, exports MOONWIRE_SKIP
# with the reason so that sections can skip moonwire but still run the peers.
resolve_moonwire() {
    export MOONWIRE_SKIP=""
    if [[ " $BENCH_SERVERS " != *" moonwire "* ]]; then
        export MOONWIRE_SKIP="not in BENCH_SERVERS"
        return 0
    fi
    if [[ -n ${MOONWIRE_BIN:-} ]]; then
        # An explicit binary is benchmarked as-is; rebuilding could replace it.
        if [[ ! -x $MOONWIRE_BIN ]]; then
            export MOONWIRE_SKIP="MOONWIRE_BIN=$MOONWIRE_BIN is not an executable file"
            log_err "$MOONWIRE_SKIP"
        fi
        export MOONWIRE_BIN
        return 0
    fi
    export MOONWIRE_BIN=$BENCH_ROOT/build/moonwire
    local build=$BENCH_ROOT/scripts/build
    if [[ -f $build ]]; then
        log "building moonwire: scripts/build"
        local rc=0
        if [[ -x $build ]]; then
            (cd "$BENCH_ROOT" && "$build") >&2 || rc=$?
        else
            (cd "$BENCH_ROOT" && bash "$build") >&2 || rc=$?
        fi
        if [[ $rc -ne 0 ]]; then
            # An older build/moonwire may still be there; numbers from it
            # would be passed off as the current code's, so skip instead.
            export MOONWIRE_SKIP="scripts/build failed (rc=$rc); not benchmarking a stale binary"
            export MOONWIRE_BUILD_FAILED=1
            log_err "$MOONWIRE_SKIP"
            return 0
        fi
    else
        log "scripts/build not found; using existing binary if any"
    fi
    if [[ ! -x $MOONWIRE_BIN ]]; then
        export MOONWIRE_SKIP="moonwire binary not found at $MOONWIRE_BIN (build it with scripts/build, or set MOONWIRE_BIN)"
        log_err "$MOONWIRE_SKIP"
    fi
}

# ---------------------------------------------------------------- CPU pinning

# Command prefixes for pinning. They fall back to no pinning (with a warning
# from check_pinning) on a machine without the requested cores, so the harness
# still runs there; numbers are then less comparable.
SERVER_PIN=()
CLIENT_PIN=()
taskset -c "$BENCH_SERVER_CPU" true 2>/dev/null && SERVER_PIN=(taskset -c "$BENCH_SERVER_CPU")
taskset -c "$BENCH_CLIENT_CPU" true 2>/dev/null && CLIENT_PIN=(taskset -c "$BENCH_CLIENT_CPU")

check_pinning() {
    [[ ${#SERVER_PIN[@]} -gt 0 ]] || log "WARNING: cannot pin to CPU $BENCH_SERVER_CPU; servers run unpinned"
    [[ ${#CLIENT_PIN[@]} -gt 0 ]] || log "WARNING: cannot pin to CPU $BENCH_CLIENT_CPU; wrk runs unpinned"
    [[ $BENCH_SERVER_CPU != "$BENCH_CLIENT_CPU" ]] ||
        log "WARNING: server and client share CPU $BENCH_SERVER_CPU; results will be skewed"
    return 0
}

# ---------------------------------------------------------------- processes

CLK_TCK=$(getconf CLK_TCK)
export CLK_TCK

# proc_ticks PID...: summed utime+stime in clock ticks. Fails if any PID is gone.
proc_ticks() {
    local total=0 pid line
    local -a f
    for pid in "$@"; do
        { read -r line <"/proc/$pid/stat"; } 2>/dev/null || return 1
        # comm (field 2) may contain spaces and ')'; the fields after the last
        # ')' start at field 3, so utime (14) and stime (15) are f[11], f[12].
        line=${line##*) }
        read -ra f <<<"$line"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# core_stat N: the cpuN line of /proc/stat (ticks: user nice system idle
# iowait irq softirq steal ...), comma-separated. Lets the report see time the
# process counters miss (softirq, steal) and other processes on the core.
core_stat() {
    local l
    while read -r l; do
        if [[ $l == "cpu$1 "* ]]; then
            l=${l#cpu"$1" }
            echo "${l// /,}"
            return 0
        fi
    done </proc/stat
    echo ""
}

# children_of PID: direct children, by scanning ppid (no procps dependency).
children_of() {
    local parent=$1 st line
    local -a f
    for st in /proc/[0-9]*/stat; do
        { read -r line <"$st"; } 2>/dev/null || continue
        line=${line##*) }
        read -ra f <<<"$line"
        [[ ${f[1]} == "$parent" ]] && { st=${st#/proc/}; echo "${st%/stat}"; }
    done
    return 0
}

descendants_of() {
    local c
    for c in $(children_of "$1"); do
        echo "$c"
        descendants_of "$c"
    done
}

# Alive and not a zombie (a finished background child stays a zombie until
# waited for, and kill -0 still succeeds on it).
proc_alive() {
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    [[ ${line:0:1} != Z ]]
}

# ---------------------------------------------------------------- children

# Every background process we start is tracked here so that cleanup can stop
# it, by pid, whatever way the section ends.
CHILD_PIDS=()
BENCH_TMP=""
BENCH_FAILED=0

# Per-section temp dir plus the EXIT trap that stops everything we started.
bench_init() {
    BENCH_TMP=$(mktemp -d /tmp/moonwire-bench.XXXXXX)
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    local rc=$? pid
    # A second signal must not cut cleanup short.
    trap '' INT TERM
    for pid in "${CHILD_PIDS[@]}"; do
        stop_child "$pid"
    done
    if [[ -n $BENCH_TMP && -d $BENCH_TMP ]]; then
        if [[ ${BENCH_KEEP_TMP:-0} == 1 || $rc -ne 0 || $BENCH_FAILED -ne 0 ]]; then
            log "logs kept in $BENCH_TMP"
        else
            rm -rf "$BENCH_TMP"
        fi
    fi
    return $rc
}

_untrack() {
    local i
    local -a keep=()
    for i in "${CHILD_PIDS[@]}"; do
        [[ $i == "$1" ]] || keep+=("$i")
    done
    CHILD_PIDS=("${keep[@]}")
}

# start_server LOGFILE CMD...: start CMD pinned to the server CPU, in the
# background; sets SERVER_PID.
start_server() {
    local logfile=$1
    shift
    # taskset execs the command, so $! is the server itself.
    "${SERVER_PIN[@]}" "$@" >"$logfile" 2>&1 </dev/null &
    SERVER_PID=$!
    CHILD_PIDS+=("$SERVER_PID")
}

# run_tracked CMD...: run CMD to completion, but as a tracked background job:
# bash defers traps while a foreground child runs, and this way a signal
# reaches cleanup at once and cleanup can stop CMD too.
run_tracked() {
    local pid rc=0
    "$@" &
    pid=$!
    CHILD_PIDS+=("$pid")
    wait "$pid" || rc=$?
    _untrack "$pid"
    return $rc
}

# stop_child PID: SIGTERM, wait up to 5 s, then SIGKILL; also kills any
# descendants left behind (e.g. nginx workers if the master had to be killed).
stop_child() {
    local pid=$1 i kids
    kids=$(descendants_of "$pid")
    if proc_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            proc_alive "$pid" || break
            sleep 0.1
        done
        if proc_alive "$pid"; then
            log "pid $pid ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    for i in $kids; do
        if proc_alive "$i"; then kill -KILL "$i" 2>/dev/null || true; fi
    done
    _untrack "$pid"
}

free_port() {
    "$PY" "$BENCH_PY" free-port
}

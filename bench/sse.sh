#!/usr/bin/env bash
# Section "sse": Server-Sent Events fan-out and idle-stream memory, for
# moonwire (bench/apps/pubsub.lua) and Node's http (bench/peers/node_pubsub.js).
# Run via scripts/bench. For each subscriber count (BENCH_SSE_CLIENTS) and
# pacing (BENCH_PUSH_PACING), a fresh server of each kind gets N SSE clients
# and BENCH_PUSH_MESSAGES published messages; then N idle streams measure
# server RSS per connection. See bench/README.md.
set -euo pipefail

: "${BENCH_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
# shellcheck source=bench/lib/common.sh
. "$BENCH_ROOT/bench/lib/common.sh"
# shellcheck source=bench/lib/push.sh
. "$BENCH_ROOT/bench/lib/push.sh"

export BENCH_SSE_CLIENTS=${BENCH_SSE_CLIENTS:-1000 10000}
export BENCH_SSE_PACING=${BENCH_SSE_PACING:-paced burst}
push_check_pacing BENCH_SSE_PACING "$BENCH_SSE_PACING"
export BENCH_SSE_IDLE_CLIENTS=${BENCH_SSE_IDLE_CLIENTS:-10000}
for n in $BENCH_SSE_CLIENTS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "client counts must be positive integers (got '$n')"
done
[[ $BENCH_SSE_IDLE_CLIENTS =~ ^[0-9]+$ ]] ||
    die "BENCH_SSE_IDLE_CLIENTS must be a non-negative integer (got '$BENCH_SSE_IDLE_CLIENTS')"

push_setup sse

# Scenario by scenario, every server in turn, so that drift on the machine
# hits both alike.
for n in $BENCH_SSE_CLIENTS; do
    for pacing in $BENCH_SSE_PACING; do
        for server in "${PUSH_SERVERS[@]}"; do
            push_run "$server" sse "$n" "$pacing"
        done
    done
done
if [[ $BENCH_SSE_IDLE_CLIENTS -gt 0 ]]; then
    for server in "${PUSH_SERVERS[@]}"; do
        push_run "$server" idle "$BENCH_SSE_IDLE_CLIENTS"
    done
fi

push_report sse
[[ $BENCH_FAILED -eq 0 ]]

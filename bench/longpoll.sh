#!/usr/bin/env bash
# Section "longpoll": long-poll clients in loops (GET /poll?since=<last id>)
# while messages are published, for moonwire (bench/apps/pubsub.lua,
# ch:wait) and Node's http (bench/peers/node_pubsub.js). Run via
# scripts/bench. See bench/README.md.
set -euo pipefail

: "${BENCH_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
# shellcheck source=bench/lib/common.sh
. "$BENCH_ROOT/bench/lib/common.sh"
# shellcheck source=bench/lib/push.sh
. "$BENCH_ROOT/bench/lib/push.sh"

export BENCH_POLL_PACING=${BENCH_POLL_PACING:-paced closed}
push_check_pacing BENCH_POLL_PACING "$BENCH_POLL_PACING"
export BENCH_POLL_CLIENTS=${BENCH_POLL_CLIENTS:-1000}
for n in $BENCH_POLL_CLIENTS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "client counts must be positive integers (got '$n')"
done

push_setup longpoll

for n in $BENCH_POLL_CLIENTS; do
    for pacing in $BENCH_POLL_PACING; do
        for server in "${PUSH_SERVERS[@]}"; do
            push_run "$server" poll "$n" "$pacing"
        done
    done
done

push_report longpoll
[[ $BENCH_FAILED -eq 0 ]]

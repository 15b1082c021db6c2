#!/usr/bin/env bash
# Builds a libFuzzer target with clang in its own tree (build-fuzz/) and
# runs it for a bounded time on its committed seed corpus. Exits non-zero
# on a crash, a broken promise or a sanitizer report, after showing the end
# of the fuzzer's log and the input that did it.
#   tests/fuzz/run.sh ws_frame [SECONDS]     (default: $MW_FUZZ_SECONDS or 60)
set -euo pipefail
name=${1:?usage: tests/fuzz/run.sh NAME [SECONDS]}
secs=${2:-${MW_FUZZ_SECONDS:-60}}
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$root/build-fuzz"
seeds="$root/tests/fuzz/corpus/$name"
command -v clang >/dev/null || { echo "clang not found: run scripts/setup --test" >&2; exit 1; }
test -d "$seeds" || { echo "no seed corpus at $seeds" >&2; exit 1; }

cmake -S "$root" -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DMW_FUZZ=ON >/dev/null
cmake --build "$dir" --target "fuzz_$name" -j"$(nproc)" 2>&1 |
  grep -vE '^(\[|--|Consolidate|Scanning|Built target|gmake)' || true
bin="$dir/tests/fuzz/fuzz_$name"
test -x "$bin"

# New inputs go to a working corpus of the build tree; the seeds stay as
# committed, and a later run starts from both.
work="$dir/corpus/$name"
artifacts="$dir/artifacts/$name"
log="$dir/fuzz_$name.log"
mkdir -p "$work" "$artifacts"
echo "fuzz_$name: running for ${secs}s on $(ls "$seeds" | wc -l) seeds + $(ls "$work" | wc -l) found before"
if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
     -artifact_prefix="$artifacts/" "$work" "$seeds" >"$log" 2>&1; then
  tail -n 60 "$log"
  echo "fuzz_$name: FAILED; reproduce with: $bin $artifacts/<file> (listed below)"
  ls -l "$artifacts"
  exit 1
fi
grep -aE '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" || true
echo "fuzz_$name: no crash, no sanitizer report"

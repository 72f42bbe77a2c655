#!/bin/bash
# Profiles one Vigil node of the cluster bench with perf over its measured window only (not the cluster's
# start), then prints where that node's CPU went by kind of thread (bench/perf-threads.ts).
# Usage: bench/perf-cluster.sh [output dir] [extra bench args, e.g. --rate 6000]; run it under
# flock /tmp/vigil-bench.lock.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d)}
shift $(( $# > 0 ? 1 : 0 ))
mkdir -p "$out"
mark="$out/phase"
rm -f "$mark"
cd "$here"
BENCH_PHASE_FILE="$mark" npm run bench -- cluster "$@" >"$out/bench.log" 2>&1 &
bench=$!
for _ in $(seq 1 1200); do grep -q '^start' "$mark" 2>/dev/null && break; sleep 0.25; done
pid=$(awk '/^start/ {print $2}' "$mark" 2>/dev/null || true)
if [ -z "$pid" ]; then echo "the bench never started its measured window (see $out/bench.log)" >&2; wait "$bench"; exit 1; fi
perf record -F 299 -g -p "$pid" -o "$out/perf.data" >"$out/perf-record.log" 2>&1 &
perf_pid=$!
for _ in $(seq 1 2400); do grep -q '^end' "$mark" && break; sleep 0.25; done
kill -INT "$perf_pid"
wait "$perf_pid" || true
wait "$bench"
perf script -i "$out/perf.data" -F comm,tid,ip,sym 2>/dev/null >"$out/perf.txt"
node --import tsx "$here/bench/perf-threads.ts" "$out/perf.txt" "$pid"
echo "profile in $out"

#!/bin/bash
# Profiles the Vigil process with perf over the measured HTTP phase of the ingest bench only (not the node's
# start), then prints where its CPU went by kind of thread: the JavaScript thread, V8's helper threads by task
# (TurboFan, WebAssembly compiles, marking, sweeping, scavenging), the PGlite worker, the libuv pool, the engine.
# Usage: bench/perf-ingest.sh [output dir] [events] [extra bench args...]; run it under flock /tmp/vigil-bench.lock.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d)}
events=${2:-50000}
shift $(( $# > 2 ? 2 : $# ))
mkdir -p "$out"
mark="$out/phase"
rm -f "$mark"
cd "$here"
BENCH_PHASE_FILE="$mark" npm run bench -- ingest --events "$events" --syslog false --fsync-compare false --raw false \
  --search-during false "$@" >"$out/bench.log" 2>&1 &
bench=$!
for _ in $(seq 1 1200); do grep -q '^start' "$mark" 2>/dev/null && break; sleep 0.25; done
pid=$(awk '/^start/ {print $2}' "$mark" 2>/dev/null || true)
if [ -z "$pid" ]; then echo "the bench never started its HTTP phase (see $out/bench.log)" >&2; wait "$bench"; exit 1; fi
perf record -F 299 -g -p "$pid" -o "$out/perf.data" >"$out/perf-record.log" 2>&1 &
perf_pid=$!
for _ in $(seq 1 2400); do grep -q '^end' "$mark" && break; sleep 0.25; done
kill -INT "$perf_pid"
wait "$perf_pid" || true
wait "$bench"
perf script -i "$out/perf.data" -F comm,tid,ip,sym 2>/dev/null >"$out/perf.txt"
node --import tsx "$here/bench/perf-threads.ts" "$out/perf.txt" "$pid" "$out/bench.log"
echo "profile in $out"

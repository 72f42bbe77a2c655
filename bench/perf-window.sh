#!/bin/bash
# Shared by perf-ingest.sh and perf-cluster.sh: runs `npm run bench -- <args>` with BENCH_PHASE_FILE set,
# records the process the bench names at its window's start with perf until the window's end, then prints
# where that process's CPU went by kind of thread (bench/perf-threads.ts).
# Usage (sourced): perf_window <output dir> <per-event: yes|no> <bench args...>; per-event reads the bench's
# log for its accepted events and the process's CPU (the ingest bench's figures; the cluster bench has others).
perf_window() {
  local out=$1 per_event=$2
  shift 2
  local here mark bench pid perf_pid
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  mkdir -p "$out"
  mark="$out/phase"
  rm -f "$mark"
  cd "$here"
  BENCH_PHASE_FILE="$mark" npm run bench -- "$@" >"$out/bench.log" 2>&1 &
  bench=$!
  for _ in $(seq 1 1200); do grep -q '^start' "$mark" 2>/dev/null && break; sleep 0.25; done
  pid=$(awk '/^start/ {print $2}' "$mark" 2>/dev/null || true)
  if [ -z "$pid" ]; then echo "the bench never started its measured window (see $out/bench.log)" >&2; wait "$bench"; return 1; fi
  perf record -F 299 -g -p "$pid" -o "$out/perf.data" >"$out/perf-record.log" 2>&1 &
  perf_pid=$!
  for _ in $(seq 1 2400); do grep -q '^end' "$mark" && break; sleep 0.25; done
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
  wait "$bench"
  perf script -i "$out/perf.data" -F comm,tid,ip,sym 2>/dev/null >"$out/perf.txt"
  if [ "$per_event" = yes ]; then
    node --import tsx "$here/bench/perf-threads.ts" "$out/perf.txt" "$pid" "$out/bench.log"
  else
    node --import tsx "$here/bench/perf-threads.ts" "$out/perf.txt" "$pid"
  fi
  echo "profile in $out"
}

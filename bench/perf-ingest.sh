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
source "$here/bench/perf-window.sh"
perf_window "$out" yes ingest --events "$events" --syslog false --fsync-compare false --raw false \
  --search-during false "$@"

#!/bin/bash
# Profiles one Vigil node of the cluster bench with perf over its measured window only (not the cluster's
# start), then prints where that node's CPU went by kind of thread (bench/perf-threads.ts).
# Usage: bench/perf-cluster.sh [output dir] [extra bench args, e.g. --rate 6000]; run it under
# flock /tmp/vigil-bench.lock.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d)}
shift $(( $# > 0 ? 1 : 0 ))
source "$here/bench/perf-window.sh"
perf_window "$out" no cluster "$@"

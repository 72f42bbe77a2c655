#!/usr/bin/env bash
# `npm test`: every stage CI runs, in order, each with its wall time, and a summary of the times at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
times=()
stage() {
  local name=$1
  shift
  local start=$SECONDS
  echo "== ${name}"
  "$@"
  times+=("${name}: $((SECONDS - start)) s")
  echo "== ${name} passed in $((SECONDS - start)) s"
}
stage lint npm run lint
stage typecheck npm run typecheck
stage web npm run test:web
stage unit+integration npm run test:all
stage clock-shift npm run test:clock
stage faults npm run test:faults
echo "== stage times"
printf '  %s\n' "${times[@]}"

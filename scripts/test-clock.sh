#!/usr/bin/env bash
# Runs the time-sensitive suites again with the wall clock moved a month and a year ahead
# (test/harness/clock-shift.mjs), so a test that passes only in the month it was written fails now.
# Time-sensitive: everything under src (parsers, query windows, sessions, key expiry) and the single-node
# integration suites that search windows relative to now. The cluster suites run NATS and etcd, whose
# clocks a JavaScript shift cannot move; their searches use the same code paths as the single-node ones.
set -euo pipefail
cd "$(dirname "$0")/.."
suites=(
  $(find src -name '*.test.ts' -not -name '*.fuzz.test.ts' | sort)
  test/integration/single-node.test.ts
  test/integration/graceful-stop.test.ts
  test/integration/detection.test.ts
  test/integration/crash.test.ts
  test/integration/incidents-app.test.ts
  test/integration/incidents-api.test.ts
)
for shift in 31d 365d; do
  start=$(date +%s)
  echo "clock shift +${shift}: ${#suites[@]} suites"
  TEST_CLOCK_SHIFT=$shift NODE_OPTIONS="${NODE_OPTIONS:-} --import ./test/harness/clock-shift.mjs" \
    node --import tsx --test --test-concurrency=2 --test-reporter=dot "${suites[@]}"
  echo "clock shift +${shift}: passed in $(($(date +%s) - start)) s"
done

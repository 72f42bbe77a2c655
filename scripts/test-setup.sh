#!/usr/bin/env bash
# Runs before `npm test`: installs the Debian packages the tests start for real (etcd, nats-server,
# chromium, promtool; unzip and openssl for fixtures) when they are missing, and builds the web console.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v unzip >/dev/null || missing+=(unzip)
command -v openssl >/dev/null || missing+=(openssl)
command -v etcd >/dev/null || missing+=(etcd-server)
command -v nats-server >/dev/null || missing+=(nats-server)
command -v chromium >/dev/null || missing+=(chromium)
# PostgreSQL 15 for the state tests (test/harness/postgres.ts); Patroni and HAProxy for the failover test.
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql)
command -v patroni >/dev/null || missing+=(patroni)
command -v haproxy >/dev/null || missing+=(haproxy)
# iproute2 (`ip netns`) for the network partition fault (test/harness/netns.ts).
command -v ip >/dev/null || missing+=(iproute2)
# promtool checks and unit-tests the Prometheus alert rules of packaging/prometheus/.
command -v promtool >/dev/null || missing+=(prometheus)
# rsyslog and its RELP output (omrelp) as real syslog senders (test/harness/rsyslog.ts).
command -v rsyslogd >/dev/null || missing+=(rsyslog)
ls /usr/lib/*/rsyslog/omrelp.so /usr/lib/rsyslog/omrelp.so >/dev/null 2>&1 || missing+=(rsyslog-relp)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test setup: installing ${missing[*]} (Debian packages)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "test setup: run as root, or install them yourself: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The console's dependencies live in web/package.json; build it when its sources are newer than the build.
if [ ! -f web/dist/index.html ] || [ -n "$(find web/src web/index.html web/package.json -newer web/dist/index.html 2>/dev/null | head -1)" ]; then
  npm run build:web
fi

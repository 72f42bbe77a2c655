import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freePort } from '../harness/ports.ts';
import { hasRsyslog, startRsyslog } from '../harness/rsyslog.ts';
import { sendWithRestart, settle, summary } from '../harness/syslog-count.ts';
import { startVigil } from '../harness/vigil.ts';

// Issue 17 with a real sender: rsyslog 8 (Debian packages rsyslog and rsyslog-relp), started by each test with
// its own configuration, work folder and input port on loopback, stopped by its PID. Each line carries its
// sequence number as its tag (s0, s1, ...), so Vigil's `stats count() by process.name` shows every line's
// copies. syslog-ng as a sender: syslog-ng-sender.test.ts.

const skip = hasRsyslog() ? false : 'rsyslogd with omrelp is not installed (apt-get install rsyslog rsyslog-relp)';

function lines(run: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `<13>testhost s${i}: ${run} line ${i}`);
}

test('RELP: kill -9 of Vigil mid-stream loses nothing; rsyslog resends at most its window', {
  skip,
  timeout: 90000,
}, async () => {
  const relpPort = await freePort();
  const node = await startVigil({ env: { VIGIL_SYSLOG__RELP_PORT: String(relpPort) } });
  const window = 128;
  const rsyslog = await startRsyslog({
    modules: ['omrelp'],
    action:
      `action(type="omrelp" target="127.0.0.1" port="${relpPort}" windowSize="${window}" ` +
      'action.resumeRetryCount="-1" action.resumeInterval="1" queue.type="LinkedList" queue.size="100000")',
  });
  try {
    const run = `relp${Date.now()}`;
    const n = 4000;
    // Vigil is killed once half of the lines were handed to rsyslog.
    await sendWithRestart(rsyslog, lines(run, n), () => node.kill('SIGKILL').then(() => node.restart()));
    const counts = await settle(node, run, n, 45000);
    const s = summary(counts, n);
    console.log(JSON.stringify({ test: 'relp kill -9', ...s, window }));
    assert.equal(s.lost, 0, rsyslog.output());
    assert.ok(s.duplicates <= window, `resends stored twice (${s.duplicates}) are at most the window (${window})`);
  } finally {
    await rsyslog.stop();
    await node.close();
  }
});

test('plain TCP: a SIGTERM restart of Vigil mid-stream loses nothing (the stop drains)', {
  skip,
  timeout: 90000,
}, async () => {
  const node = await startVigil();
  const rsyslog = await startRsyslog({
    action:
      `action(type="omfwd" target="127.0.0.1" port="${node.syslogPort}" protocol="tcp" ` +
      'action.resumeRetryCount="-1" action.resumeInterval="1" queue.type="LinkedList" queue.size="100000")',
  });
  try {
    const run = `term${Date.now()}`;
    const n = 4000;
    await sendWithRestart(rsyslog, lines(run, n), async () => {
      const code = await node.kill('SIGTERM');
      assert.equal(code, 0, node.output());
      await node.restart();
    });
    const counts = await settle(node, run, n, 45000);
    const s = summary(counts, n);
    console.log(JSON.stringify({ test: 'tcp SIGTERM restart', ...s }));
    assert.equal(s.lost, 0, rsyslog.output());
  } finally {
    await rsyslog.stop();
    await node.close();
  }
});

test('a sender in New York: RFC 3164 times read in the zone configured for its host', {
  skip,
  timeout: 60000,
}, async () => {
  const node = await startVigil({
    env: { VIGIL_SYSLOG__TIMEZONES: JSON.stringify({ nyhost: 'America/New_York' }) },
  });
  // rsyslog's traditional forwarding format: `Mmm dd hh:mm:ss` in the sender's local time, no zone.
  const rsyslog = await startRsyslog({
    env: { TZ: 'America/New_York' },
    action:
      `action(type="omfwd" target="127.0.0.1" port="${node.syslogPort}" protocol="tcp" ` +
      'template="RSYSLOG_TraditionalForwardFormat")',
  });
  try {
    const run = `zone${Date.now()}`;
    const sentAt = Date.now();
    await rsyslog.send([`<13>nyhost s0: ${run} from new york`, `<13>elsewhere s1: ${run} from a host not configured`]);
    const counts = await settle(node, run, 2, 20000);
    assert.equal(counts.size, 2);
    const res = await node.get(`/api/v1/search?q=${encodeURIComponent(run)}&from=now-1d&limit=10`);
    const byHost = new Map(res.body.events.map((e: Record<string, unknown>) => [e['host.name'], e]));
    const ny = byHost.get('nyhost') as Record<string, unknown>;
    const other = byHost.get('elsewhere') as Record<string, unknown>;
    const skew = (e: Record<string, unknown>) => Date.parse(String(e['@timestamp'])) - sentAt;
    console.log(JSON.stringify({ test: 'time zone', ny_skew_ms: skew(ny), unconfigured_skew_ms: skew(other) }));
    // RFC 3164 has whole seconds; rsyslog stamps on receipt.
    assert.ok(Math.abs(skew(ny)) < 5000, `New York time read right: ${ny['@timestamp']}`);
    assert.equal(ny['event.timezone'], 'America/New_York');
    assert.equal(String(ny['vigil.time_assumed']), 'true');
    // The unconfigured host is read as UTC and flagged: 5 hours early (4 in summer), as the issue found.
    assert.ok(skew(other) < -3 * 3600000, `read as UTC: ${other['@timestamp']}`);
    assert.equal(other['event.timezone'], 'UTC');
  } finally {
    await rsyslog.stop();
    await node.close();
  }
});

test('digit-led lines on a newline connection arrive intact', {
  skip: hasRsyslog('') ? false : 'no rsyslogd',
  timeout: 60000,
}, async () => {
  const node = await startVigil();
  // rsyslog sends newline-framed; the template puts no PRI in front, so lines start with digits and a space.
  const rsyslog = await startRsyslog({
    preamble: 'template(name="bare" type="string" string="%msg:2:$%")',
    action: `action(type="omfwd" target="127.0.0.1" port="${node.syslogPort}" protocol="tcp" template="bare")`,
  });
  try {
    const run = `digits${Date.now()}`;
    const n = 100;
    await rsyslog.send(Array.from({ length: n }, (_, i) => `<13>testhost app: ${200 + i} OK ${run} s${i}`));
    const until = Date.now() + 20000;
    let events: Record<string, unknown>[] = [];
    while (Date.now() < until) {
      const res = await node.get(`/api/v1/search?q=${encodeURIComponent(run)}&from=now-1d&limit=1000`);
      events = res.body.events ?? [];
      if (events.length >= n) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    await new Promise((r) => setTimeout(r, 500));
    const res = await node.get(`/api/v1/search?q=${encodeURIComponent(run)}&from=now-1d&limit=1000`);
    const raws = new Set(res.body.events.map((e: Record<string, unknown>) => String(e['event.original'] ?? e.message)));
    console.log(JSON.stringify({ test: 'digit-led lines', sent: n, stored: res.body.events.length }));
    assert.equal(res.body.events.length, n);
    for (let i = 0; i < n; i++) assert.ok(raws.has(`${200 + i} OK ${run} s${i}`), `line ${i} intact`);
  } finally {
    await rsyslog.stop();
    await node.close();
  }
});

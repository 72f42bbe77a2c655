import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { FieldValue } from '../lib/event.ts';
import { parseSyslog, type SyslogTimeOptions } from './syslog.ts';

/** Receipt time of every case: 2026-01-02T12:00:00Z. */
const RECEIVED = Date.UTC(2026, 0, 2, 12);

/** Asserts that `fields` holds every expected key with that value; a value of `undefined` means absent. */
function assertFields(fields: Record<string, FieldValue>, expected: Record<string, FieldValue | undefined>): void {
  for (const [k, v] of Object.entries(expected)) {
    if (v === undefined) assert.equal(Object.hasOwn(fields, k), false, `${k} should be absent`);
    else assert.deepEqual(fields[k], v, k);
  }
}

describe('RFC 3164 (BSD) messages', () => {
  const cases: {
    name: string;
    line: string;
    time: string | undefined;
    fields: Record<string, FieldValue | undefined>;
    opts?: SyslogTimeOptions;
  }[] = [
    {
      name: 'the RFC example: PRI, time, host, tag without pid',
      line: "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
      time: '2025-10-11T22:14:15.000Z',
      fields: {
        'log.syslog.priority': 34,
        'log.syslog.facility.code': 4,
        'log.syslog.facility.name': 'auth',
        'log.syslog.severity.code': 2,
        'log.syslog.severity.name': 'Critical',
        'log.syslog.hostname': 'mymachine',
        'host.name': 'mymachine',
        'log.syslog.appname': 'su',
        'process.name': 'su',
        'process.pid': undefined,
        message: "'su root' failed for lonvick on /dev/pts/8",
      },
    },
    {
      name: 'tag with pid sets process.pid and log.syslog.procid',
      line: '<86>Jan  2 09:30:00 web-1 CRON[1234]: (root) CMD (run-parts /etc/cron.hourly)',
      time: '2026-01-02T09:30:00.000Z',
      fields: {
        'log.syslog.facility.name': 'authpriv',
        'log.syslog.severity.name': 'Informational',
        'host.name': 'web-1',
        'process.name': 'CRON',
        'process.pid': 1234,
        'log.syslog.procid': '1234',
        message: '(root) CMD (run-parts /etc/cron.hourly)',
      },
    },
    {
      name: 'a missing PRI is tolerated and sets no priority fields',
      line: 'Jan  2 10:00:00 web1 kernel: eth0 link up',
      time: '2026-01-02T10:00:00.000Z',
      fields: {
        'log.syslog.priority': undefined,
        'host.name': 'web1',
        'process.name': 'kernel',
        message: 'eth0 link up',
      },
    },
    {
      name: 'a missing hostname: the first word is the tag',
      line: '<13>Jan  2 10:00:00 sshd[77]: Server listening on 0.0.0.0 port 22.',
      time: '2026-01-02T10:00:00.000Z',
      fields: { 'host.name': undefined, 'process.name': 'sshd', 'process.pid': 77 },
    },
    {
      name: 'a missing tag: everything after the hostname is the message',
      line: '<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!',
      time: '2025-02-05T17:32:18.000Z',
      fields: { 'host.name': '10.0.0.99', 'process.name': undefined, message: 'Use the BFG!' },
    },
    {
      name: 'rsyslog RFC 3339 timestamps keep their offset and fraction',
      line: '<30>2024-03-01T10:00:00.123456+01:00 host1 systemd[1]: Started Session 4.',
      time: '2024-03-01T09:00:00.123Z',
      fields: { 'host.name': 'host1', 'process.name': 'systemd', 'process.pid': 1, message: 'Started Session 4.' },
    },
    {
      name: 'an ISO timestamp without PRI is tolerated',
      line: '2024-03-01T10:00:00Z host1 app: hi',
      time: '2024-03-01T10:00:00.000Z',
      fields: { 'host.name': 'host1', 'process.name': 'app', message: 'hi' },
    },
    {
      name: 'a December message received in January belongs to the previous year',
      line: '<13>Dec 31 23:59:59 h app: late',
      time: '2025-12-31T23:59:59.000Z',
      fields: { message: 'late' },
    },
    {
      name: 'a time less than a day ahead of receipt (clock skew) stays in the receipt year',
      line: '<13>Jan  2 20:00:00 h app: skewed',
      time: '2026-01-02T20:00:00.000Z',
      fields: {},
      opts: { maxFutureMs: 86400000 },
    },
    {
      name: 'a year written after the day (Cisco style) is used as sent',
      line: '<13>Mar  1 2023 18:46:11.123 router app: x',
      time: '2023-03-01T18:46:11.123Z',
      fields: { 'host.name': 'router' },
    },
    {
      name: 'a PRI without timestamp: the rest is the content, receipt time applies',
      line: '<13>su: hi there',
      time: undefined,
      fields: { 'host.name': undefined, 'process.name': 'su', message: 'hi there' },
    },
    {
      name: 'trailing CR/LF framing is not part of the message',
      line: '<13>Jan  2 10:00:00 h app: body\r\n',
      time: '2026-01-02T10:00:00.000Z',
      fields: { message: 'body' },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = parseSyslog(c.line, RECEIVED, c.opts);
      assert.equal(r.error, undefined);
      assert.equal(r.timestamp === undefined ? undefined : new Date(r.timestamp).toISOString(), c.time);
      assertFields(r.fields, c.fields);
    });
  }
});

describe('RFC 3164 tags without a colon (issue 17, defect 5)', () => {
  const cases: { line: string; tag: string | undefined; pid?: number; message: string }[] = [
    { line: '<13>Dec  6 02:13:39 web1 prog started the job', tag: 'prog', message: 'started the job' },
    { line: '<13>Dec  6 02:13:39 web1 nginx[812] GET / 200', tag: 'nginx', pid: 812, message: 'GET / 200' },
    { line: '<13>Dec  6 02:13:39 web1 CRON[9] (root) CMD', tag: 'CRON', pid: 9, message: '(root) CMD' },
    { line: '<13>Dec  6 02:13:39 web1 sshd: with a colon', tag: 'sshd', message: 'with a colon' },
    { line: '<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!', tag: undefined, message: 'Use the BFG!' },
    { line: '<13>Dec  6 02:13:39 web1 lonely', tag: undefined, message: 'lonely' },
  ];
  for (const c of cases) {
    test(`${c.line} has tag ${c.tag}`, () => {
      const r = parseSyslog(c.line, RECEIVED);
      assert.equal(r.fields['process.name'], c.tag);
      assert.equal(r.fields['process.pid'], c.pid);
      assert.equal(r.fields.message, c.message);
      assert.equal(r.fields['host.name'], c.line.includes('10.0.0.99') ? '10.0.0.99' : 'web1');
    });
  }
});

describe('time zones and future times (issue 17, defect 3)', () => {
  /** Receipt at 07:14:00Z on 6 December 2026: 02:14 in New York (EST, UTC-5). */
  const received = Date.UTC(2026, 11, 6, 7, 14);
  const ny: SyslogTimeOptions = { zoneFor: () => 'America/New_York' };
  const iso = (t: number | undefined) => (t === undefined ? undefined : new Date(t).toISOString());

  test('an RFC 3164 time is read in the zone of its sender and flagged as assumed', () => {
    const r = parseSyslog('<13>Dec  6 02:13:39 nyhost app: hi', received, ny);
    assert.equal(iso(r.timestamp), '2026-12-06T07:13:39.000Z');
    assert.equal(r.fields['event.timezone'], 'America/New_York');
    assert.equal(r.fields['vigil.time_assumed'], true);
  });

  test('without a configured zone it is read as UTC, still flagged, and 5 hours ahead is refused', () => {
    const r = parseSyslog('<13>Dec  6 02:13:39 nyhost app: hi', received);
    assert.equal(iso(r.timestamp), '2026-12-06T02:13:39.000Z');
    assert.equal(r.fields['event.timezone'], 'UTC');
    assert.equal(r.fields['vigil.time_assumed'], true);
    const tokyo = parseSyslog('<13>Dec  6 16:13:39 tkhost app: hi', received);
    assert.equal(tokyo.timestamp, undefined, 'nine hours ahead: the receipt time applies');
    assert.equal(tokyo.fields['vigil.future_timestamp'], '2026-12-06T16:13:39.000Z');
  });

  test('the zone is looked up by the host the message names', () => {
    const seen: (string | undefined)[] = [];
    const opts: SyslogTimeOptions = {
      zoneFor: (h) => {
        seen.push(h);
        return h === 'tokyo1' ? 'Asia/Tokyo' : undefined;
      },
    };
    const r = parseSyslog('<13>Dec  6 16:13:39 tokyo1 app: hi', received, opts);
    assert.equal(iso(r.timestamp), '2026-12-06T07:13:39.000Z');
    assert.ok(seen.includes('tokyo1'));
  });

  test('a time that names its offset is neither moved nor flagged', () => {
    const r = parseSyslog('<13>1 2026-12-06T02:13:39-05:00 h app - - - hi', received, ny);
    assert.equal(iso(r.timestamp), '2026-12-06T07:13:39.000Z');
    assert.equal(r.fields['vigil.time_assumed'], undefined);
    const z = parseSyslog('<13>2026-12-06T07:13:39Z h app: hi', received, ny);
    assert.equal(iso(z.timestamp), '2026-12-06T07:13:39.000Z');
    assert.equal(z.fields['event.timezone'], undefined);
  });

  test('an RFC 3339 time without an offset is read in the zone too', () => {
    const r = parseSyslog('<13>2026-12-06T02:13:39 h app: hi', received, ny);
    assert.equal(iso(r.timestamp), '2026-12-06T07:13:39.000Z');
    assert.equal(r.fields['vigil.time_assumed'], true);
  });

  test('summer time: a July time in New York is UTC-4, the hour skipped in March moves forward', () => {
    const july = Date.UTC(2026, 6, 1, 16);
    assert.equal(iso(parseSyslog('<13>Jul  1 12:00:00 h a: x', july, ny).timestamp), '2026-07-01T16:00:00.000Z');
    const march = Date.UTC(2026, 2, 8, 12);
    assert.equal(iso(parseSyslog('<13>Mar  8 02:30:00 h a: x', march, ny).timestamp), '2026-03-08T07:30:00.000Z');
  });

  test('New Year: a December 31 time received on January 1 in the sender zone keeps last year', () => {
    const jan1 = Date.UTC(2027, 0, 1, 5, 30); // 00:30 in New York
    const r = parseSyslog('<13>Dec 31 23:59:00 h a: x', jan1, ny);
    assert.equal(iso(r.timestamp), '2027-01-01T04:59:00.000Z');
  });

  test('max_future_ms bounds accepted times; a time just inside it is kept', () => {
    const r = parseSyslog('<13>1 2026-12-06T07:18:00Z h a - - - x', received, { maxFutureMs: 300000 });
    assert.equal(iso(r.timestamp), '2026-12-06T07:18:00.000Z');
    const late = parseSyslog('<13>1 2026-12-06T07:20:00Z h a - - - x', received, { maxFutureMs: 300000 });
    assert.equal(late.timestamp, undefined);
    assert.equal(late.fields['vigil.future_timestamp'], '2026-12-06T07:20:00.000Z');
  });
});

describe('RFC 5424 messages', () => {
  const cases: {
    name: string;
    line: string;
    time: string | undefined;
    fields: Record<string, FieldValue | undefined>;
  }[] = [
    {
      name: 'the RFC example with structured data and a BOM before MSG',
      line: '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] \uFEFFAn application event log entry...',
      time: '2003-10-11T22:14:15.003Z',
      fields: {
        'log.syslog.priority': 165,
        'log.syslog.facility.name': 'local4',
        'log.syslog.severity.name': 'Notice',
        'log.syslog.version': 1,
        'log.syslog.hostname': 'mymachine.example.com',
        'host.name': 'mymachine.example.com',
        'log.syslog.appname': 'evntslog',
        'process.name': 'evntslog',
        'log.syslog.procid': undefined,
        'log.syslog.msgid': 'ID47',
        'log.syslog.structured_data.exampleSDID@32473.iut': '3',
        'log.syslog.structured_data.exampleSDID@32473.eventSource': 'Application',
        'log.syslog.structured_data.exampleSDID@32473.eventID': '1011',
        message: 'An application event log entry...',
      },
    },
    {
      name: 'every header field NILVALUE and no MSG',
      line: '<34>1 - - - - - -',
      time: undefined,
      fields: {
        'log.syslog.version': 1,
        'host.name': undefined,
        'process.name': undefined,
        'log.syslog.msgid': undefined,
        message: undefined,
      },
    },
    {
      name: 'escapes in SD values: \\" \\\\ \\] are unescaped, other backslashes kept',
      line: '<13>1 2003-08-24T05:14:15.000003-07:00 h app 8710 - [x@1 a="q\\"uote" b="back\\\\slash" c="br\\]acket" d="C:\\temp"] m',
      time: '2003-08-24T12:14:15.000Z',
      fields: {
        'log.syslog.structured_data.x@1.a': 'q"uote',
        'log.syslog.structured_data.x@1.b': 'back\\slash',
        'log.syslog.structured_data.x@1.c': 'br]acket',
        'log.syslog.structured_data.x@1.d': 'C:\\temp',
        'process.pid': 8710,
        'log.syslog.procid': '8710',
        message: 'm',
      },
    },
    {
      name: 'several SD elements, and a repeated parameter becomes an array',
      line: '<13>1 2003-10-11T22:14:15Z h app - - [a@1 k="1" k="2"][b@1 z=""][origin ip="10.0.0.1"]',
      time: '2003-10-11T22:14:15.000Z',
      fields: {
        'log.syslog.structured_data.a@1.k': ['1', '2'],
        'log.syslog.structured_data.b@1.z': '',
        'log.syslog.structured_data.origin.ip': '10.0.0.1',
        message: undefined,
      },
    },
    {
      name: 'a non-numeric PROCID is kept as text without process.pid',
      line: '<13>1 2003-10-11T22:14:15Z h app worker-a - - hello',
      time: '2003-10-11T22:14:15.000Z',
      fields: { 'log.syslog.procid': 'worker-a', 'process.pid': undefined, message: 'hello' },
    },
    {
      name: 'an empty MSG after the separating space is an empty message',
      line: '<13>1 2003-10-11T22:14:15Z h app - - - ',
      time: '2003-10-11T22:14:15.000Z',
      fields: { message: '' },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = parseSyslog(c.line, RECEIVED);
      assert.equal(r.error, undefined);
      assert.equal(r.timestamp === undefined ? undefined : new Date(r.timestamp).toISOString(), c.time);
      assertFields(r.fields, c.fields);
    });
  }
});

describe('lines that are not syslog are kept with a reason', () => {
  const cases: { name: string; line: string; error: RegExp }[] = [
    { name: 'an empty line', line: '', error: /empty/ },
    { name: 'a PRI above 191', line: '<999>Oct 11 22:14:15 host app: x', error: /invalid PRI <999>.*0 to 191/ },
    { name: 'a PRI that is not a number', line: '<abc>Oct 11 22:14:15 host app: x', error: /invalid PRI/ },
    { name: 'an unclosed PRI', line: '<13 Oct 11 22:14:15 host app: x', error: /invalid PRI/ },
    { name: 'plain text without PRI or time', line: 'hello world', error: /no PRI and no timestamp/ },
    { name: 'binary garbage', line: '\u0000\u0001\u00ff\u00fe', error: /no PRI and no timestamp/ },
    { name: 'a bad RFC 5424 timestamp', line: '<13>1 yesterday h app - - - m', error: /invalid RFC 5424 TIMESTAMP/ },
    { name: 'a truncated RFC 5424 header', line: '<13>1 2003-10-11T22:14:15Z h app', error: /header is incomplete/ },
    { name: 'an unterminated SD element', line: '<13>1 - h a - - [x@1 k="v"', error: /column 27: unterminated SD/ },
    { name: 'an SD value without quotes', line: '<13>1 - h a - - [x@1 k=v] m', error: /expected ="value" after k/ },
    { name: 'text glued to the SD', line: '<13>1 - h a - - [x@1]m', error: /unexpected "m" after STRUCTURED-DATA/ },
    { name: 'SD that is neither [ nor -', line: '<13>1 - h a - - x', error: /expected "\[" or "-"/ },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = parseSyslog(c.line, RECEIVED);
      assert.match(r.error ?? '', c.error);
      assert.deepEqual(r.fields, { message: c.line });
      assert.equal(r.timestamp, undefined);
    });
  }
});

describe('sshd, sudo and su messages are recognized as authentication', () => {
  const cases: { name: string; line: string; fields: Record<string, FieldValue | undefined> }[] = [
    {
      name: 'failed password for an invalid user',
      line: '<38>Jan  2 10:00:00 bastion sshd[4242]: Failed password for invalid user bob from 10.1.2.3 port 22 ssh2',
      fields: {
        'event.category': ['authentication'],
        'event.action': 'ssh_login',
        'event.outcome': 'failure',
        'user.name': 'bob',
        'source.ip': '10.1.2.3',
        'source.port': 22,
      },
    },
    {
      name: 'accepted public key',
      line: '<38>Jan  2 10:00:00 bastion sshd[1]: Accepted publickey for alice from 2001:db8::5 port 51234 ssh2: RSA SHA256:x',
      fields: {
        'event.outcome': 'success',
        'event.action': 'ssh_login',
        'system.auth.ssh.method': 'publickey',
        'user.name': 'alice',
        'source.ip': '2001:db8::5',
        'source.port': 51234,
      },
    },
    {
      name: 'an invalid user probe',
      line: '<38>Jan  2 10:00:00 bastion sshd[1]: Invalid user admin from 203.0.113.9 port 4242',
      fields: { 'event.outcome': 'failure', 'event.action': 'ssh_invalid_user', 'user.name': 'admin' },
    },
    {
      name: 'a PAM authentication failure',
      line: '<38>Jan  2 10:00:00 h sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=10.9.8.7  user=root',
      fields: { 'event.outcome': 'failure', 'user.name': 'root', 'source.ip': '10.9.8.7' },
    },
    {
      name: 'a sudo command that ran',
      line: '<86>Jan  2 10:00:00 h sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id',
      fields: {
        'event.action': 'sudo',
        'event.outcome': 'success',
        'user.name': 'alice',
        'user.effective.name': 'root',
        'system.auth.sudo.command': '/usr/bin/id',
      },
    },
    {
      name: 'sudo with wrong passwords',
      line: '<86>Jan  2 10:00:00 h sudo: bob : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/ ; USER=root ; COMMAND=/bin/sh',
      fields: {
        'event.outcome': 'failure',
        'user.name': 'bob',
        'system.auth.sudo.error': '3 incorrect password attempts',
      },
    },
    {
      name: 'the RFC 3164 su example',
      line: "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
      fields: {
        'event.action': 'su',
        'event.outcome': 'failure',
        'user.name': 'lonvick',
        'user.effective.name': 'root',
      },
    },
    {
      name: 'RFC 5424 sshd messages are recognized too',
      line: '<38>1 2026-01-02T10:00:00Z bastion sshd 99 - - Failed password for root from 10.0.0.8 port 2222 ssh2',
      fields: { 'event.outcome': 'failure', 'user.name': 'root', 'source.ip': '10.0.0.8', 'source.port': 2222 },
    },
    {
      name: 'an ordinary message gets no authentication fields',
      line: '<38>Jan  2 10:00:00 h sshd[1]: Server listening on 0.0.0.0 port 22.',
      fields: { 'event.category': undefined, 'event.outcome': undefined, 'user.name': undefined },
    },
    {
      name: 'a sudo-looking message from another program is not sudo',
      line: '<86>Jan  2 10:00:00 h myapp: alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/usr/bin/id',
      fields: { 'event.category': undefined },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = parseSyslog(c.line, RECEIVED);
      assert.equal(r.error, undefined);
      assertFields(r.fields, c.fields);
    });
  }
});

test('every PRI maps to its facility and severity code and name', () => {
  const cases: [number, string, string][] = [
    [0, 'kern', 'Emergency'],
    [13, 'user', 'Notice'],
    [38, 'auth', 'Informational'],
    [87, 'authpriv', 'Debug'],
    [191, 'local7', 'Debug'],
  ];
  for (const [pri, facility, severity] of cases) {
    const r = parseSyslog(`<${pri}>Jan  2 10:00:00 h app: x`, RECEIVED);
    assertFields(r.fields, {
      'log.syslog.priority': pri,
      'log.syslog.facility.code': pri >> 3,
      'log.syslog.facility.name': facility,
      'log.syslog.severity.code': pri & 7,
      'log.syslog.severity.name': severity,
    });
  }
});

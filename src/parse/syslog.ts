import type { FieldValue } from '../lib/event.ts';
import { addAuthFields } from './syslog-auth.ts';
import { bsdTime, parseTime, zonedTime } from './time.ts';

/** What one syslog line parsed into: flat ECS fields, the event time when the line had one, or why it failed. */
export interface SyslogParse {
  fields: Record<string, FieldValue>;
  /** Epoch milliseconds; undefined when the line carried no usable time (receipt time applies). */
  timestamp: number | undefined;
  /** Why the line is not syslog; `fields` then holds only `message` (the whole line). */
  error?: string;
}

/** How a syslog parser reads times that carry no zone, and how far ahead of receipt a time may lie. */
export interface SyslogTimeOptions {
  /**
   * The IANA time zone of a sender, given the host name the message names (undefined when it names none).
   * Times without a zone (RFC 3164's `Mmm dd hh:mm:ss`) are read in it; UTC when it answers undefined.
   */
  zoneFor?: (hostname: string | undefined) => string | undefined;
  /**
   * Latest accepted event time, in milliseconds after receipt (default {@link DEFAULT_MAX_FUTURE_MS}). A
   * later time is not used: `@timestamp` is the receipt time and `vigil.future_timestamp` keeps the claim.
   */
  maxFutureMs?: number;
}

/** Five minutes: clocks a little ahead are tolerated, a zone read wrong (hours ahead) is not. */
export const DEFAULT_MAX_FUTURE_MS = 300000;

/** Set when the event time carried no zone (and, for RFC 3164, no year): the zone it was read in was assumed. */
const TIME_ASSUMED = 'vigil.time_assumed';
/** ECS: the zone the event time was read in, when the time itself did not say. */
const EVENT_TIMEZONE = 'event.timezone';

/** Facility names by code (RFC 5424 table 1), as the `syslog.conf` keywords. */
export const FACILITY_NAMES: readonly string[] = [
  'kern',
  'user',
  'mail',
  'daemon',
  'auth',
  'syslog',
  'lpr',
  'news',
  'uucp',
  'cron',
  'authpriv',
  'ftp',
  'ntp',
  'security',
  'console',
  'solaris-cron',
  'local0',
  'local1',
  'local2',
  'local3',
  'local4',
  'local5',
  'local6',
  'local7',
];

/** Severity names by code (RFC 5424 table 2), as ECS examples spell them. */
export const SEVERITY_NAMES: readonly string[] = [
  'Emergency',
  'Alert',
  'Critical',
  'Error',
  'Warning',
  'Notice',
  'Informational',
  'Debug',
];

const PRI = /^<(\d{1,3})>/;
const VERSION_5424 = /^([1-9]\d{0,2}) /;
const BSD_TIME = /^([A-Za-z]{3}) {1,2}(\d{1,2}) (?:(\d{4}) )?(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?: +|$)/;
const ISO_TIME = /^(\d{4}-\d{2}-\d{2}T\S+)(?: +|$)/;
const TAG = /^([^\s[\]:]{1,64}?)(?:\[([^\]\s]*)\])?:(?: |$)/;
/**
 * RFC 3164's TAG ends at the first character that is not alphanumeric, so `host prog msg` and
 * `host prog[42] msg` have one too. Without a colon only a word that looks like a program is taken: with a
 * pid, or all lower case (the RFC's own `10.0.0.99 Use the BFG!` is a message without a tag).
 */
const BARE_TAG = /^(?:([A-Za-z][\w./-]{0,47})\[(\d{1,10})\]|([a-z][a-z0-9_./-]{0,47})) (?=\S)/;
/** An RFC 3339 time that names its offset. */
const ZONED_ISO = /(?:[Zz]|[+-]\d{2}:?\d{2})$/;
const HOSTNAME = /^[^\s[\]]+$/;
const DIGITS = /^\d+$/;
const BOM = '\uFEFF';

/**
 * Parses one syslog message, RFC 5424 or RFC 3164 (BSD), into ECS fields. RFC 3164 is read leniently, as
 * senders write it: the PRI, the hostname and the tag may be missing, and the time may be rsyslog's
 * RFC 3339 instead of `Mmm dd hh:mm:ss`. A line that is neither yields `error` and `message` = the line.
 */
export function parseSyslog(line: string, receivedAt: number, opts: SyslogTimeOptions = {}): SyslogParse {
  const text = trimLineEnd(line);
  if (text.trim() === '') return failed(line, 'empty syslog message');
  const fields: Record<string, FieldValue> = {};
  let rest = text;
  let hasPri = false;
  if (text.charCodeAt(0) === 0x3c /* < */) {
    const m = PRI.exec(text);
    if (!m) return failed(line, `invalid PRI: expected "<0>" to "<191>" at the start of ${quote(text)}`);
    const pri = Number(m[1]);
    if (pri > 191) return failed(line, `invalid PRI <${m[1]}>: the priority must be 0 to 191`);
    fields['log.syslog.priority'] = pri;
    fields['log.syslog.facility.code'] = pri >> 3;
    fields['log.syslog.facility.name'] = FACILITY_NAMES[pri >> 3];
    fields['log.syslog.severity.code'] = pri & 7;
    fields['log.syslog.severity.name'] = SEVERITY_NAMES[pri & 7];
    rest = text.slice(m[0].length);
    hasPri = true;
  }
  const v = hasPri ? VERSION_5424.exec(rest) : null;
  const result = v
    ? parse5424(rest, Number(v[1]), v[0].length, text.length - rest.length, fields, opts)
    : parse3164(rest, hasPri, receivedAt, fields, opts);
  if (typeof result === 'string') return failed(line, result);
  let timestamp = result.timestamp;
  const maxFutureMs = opts.maxFutureMs ?? DEFAULT_MAX_FUTURE_MS;
  if (timestamp !== undefined && timestamp > receivedAt + maxFutureMs) {
    fields['vigil.future_timestamp'] = new Date(timestamp).toISOString();
    timestamp = undefined;
  }
  const message = fields.message;
  if (typeof message === 'string') {
    const app = fields['process.name'];
    addAuthFields(typeof app === 'string' ? app : undefined, message, (k, val) => {
      if (!Object.hasOwn(fields, k)) fields[k] = val;
    });
  }
  return { fields, timestamp };
}

/** Reads a zoneless time (as wall clock written as UTC) in the sender's zone and flags it as assumed. */
function assumeZone(
  wall: number,
  hostname: string | undefined,
  fields: Record<string, FieldValue>,
  opts: SyslogTimeOptions,
): number {
  const zone = opts.zoneFor?.(hostname) ?? 'UTC';
  fields[EVENT_TIMEZONE] = zone;
  fields[TIME_ASSUMED] = true;
  return zonedTime(wall, zone);
}

function failed(line: string, error: string): SyslogParse {
  return { fields: { message: line }, timestamp: undefined, error };
}

/** RFC 5424: `VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]`. */
function parse5424(
  rest: string,
  version: number,
  start: number,
  offset: number,
  fields: Record<string, FieldValue>,
  opts: SyslogTimeOptions,
): { timestamp: number | undefined } | string {
  fields['log.syslog.version'] = version;
  let pos = start;
  const header: string[] = [];
  for (const name of ['TIMESTAMP', 'HOSTNAME', 'APP-NAME', 'PROCID', 'MSGID']) {
    const sp = rest.indexOf(' ', pos);
    const token = sp < 0 ? rest.slice(pos) : rest.slice(pos, sp);
    if (token === '') return `RFC 5424 header is incomplete: ${name} is missing`;
    if (sp < 0) return `RFC 5424 header is incomplete: nothing after ${name}`;
    header.push(token);
    pos = sp + 1;
  }
  const [ts, host, app, procid, msgid] = header;
  let timestamp: number | undefined;
  if (ts !== '-') {
    timestamp = ts.includes('T') ? parseTime(ts) : undefined;
    if (timestamp === undefined) return `invalid RFC 5424 TIMESTAMP ${quote(ts)}: expected RFC 3339 or "-"`;
    // RFC 5424 requires the offset; a sender that leaves it out is read like RFC 3164.
    if (!ZONED_ISO.test(ts)) timestamp = assumeZone(timestamp, host === '-' ? undefined : host, fields, opts);
  }
  if (host !== '-') {
    fields['log.syslog.hostname'] = host;
    fields['host.name'] = host;
  }
  if (app !== '-') {
    fields['log.syslog.appname'] = app;
    fields['process.name'] = app;
  }
  if (procid !== '-') {
    fields['log.syslog.procid'] = procid;
    if (DIGITS.test(procid)) fields['process.pid'] = Number(procid);
  }
  if (msgid !== '-') fields['log.syslog.msgid'] = msgid;

  if (rest.charCodeAt(pos) === 0x2d /* - */) {
    pos++;
  } else if (rest.charCodeAt(pos) === 0x5b /* [ */) {
    const end = parseStructuredData(rest, pos, offset, fields);
    if (typeof end === 'string') return end;
    pos = end;
  } else {
    return `invalid RFC 5424 STRUCTURED-DATA at column ${offset + pos + 1}: expected "[" or "-"`;
  }
  if (pos < rest.length) {
    if (rest.charCodeAt(pos) !== 0x20)
      return `unexpected ${quote(rest[pos])} after STRUCTURED-DATA at column ${offset + pos + 1}`;
    let msg = rest.slice(pos + 1);
    if (msg.startsWith(BOM)) msg = msg.slice(1);
    fields.message = msg;
  }
  return { timestamp };
}

/**
 * Parses `[id param="value" ...]...` from `pos`; returns the index after the last `]`. `offset` is where
 * `s` starts in the line, for the columns of error messages. Inside values `\"`,
 * `\\` and `\]` are escapes; any other backslash is kept as it is (RFC 5424 section 6.3.3).
 */
function parseStructuredData(
  s: string,
  pos: number,
  offset: number,
  fields: Record<string, FieldValue>,
): number | string {
  const bad = (at: number, what: string) => `invalid RFC 5424 STRUCTURED-DATA at column ${offset + at + 1}: ${what}`;
  let i = pos;
  while (s.charCodeAt(i) === 0x5b /* [ */) {
    i++;
    const idStart = i;
    while (i < s.length && isSdNameChar(s.charCodeAt(i))) i++;
    if (i === idStart) return bad(i, 'expected an SD-ID');
    const id = s.slice(idStart, i);
    const prefix = `log.syslog.structured_data.${id}`;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x5d /* ] */) {
        i++;
        break;
      }
      if (c !== 0x20) return bad(i, i >= s.length ? 'unterminated SD-ELEMENT' : `unexpected ${quote(s[i])} in ${id}`);
      i++;
      const nameStart = i;
      while (i < s.length && isSdNameChar(s.charCodeAt(i))) i++;
      if (i === nameStart) return bad(i, `expected a PARAM-NAME in ${id}`);
      const name = s.slice(nameStart, i);
      if (s.charCodeAt(i) !== 0x3d /* = */ || s.charCodeAt(i + 1) !== 0x22 /* " */) {
        return bad(i, `expected ="value" after ${name}`);
      }
      i += 2;
      let value = '';
      let chunk = i;
      for (;;) {
        if (i >= s.length) return bad(i, `unterminated value of ${name}`);
        const ch = s.charCodeAt(i);
        if (ch === 0x22) break;
        if (ch === 0x5c /* \ */) {
          const next = s.charCodeAt(i + 1);
          if (next === 0x22 || next === 0x5c || next === 0x5d) {
            value += s.slice(chunk, i);
            chunk = i + 1;
            i += 2;
            continue;
          }
        }
        i++;
      }
      value += s.slice(chunk, i);
      i++;
      const key = `${prefix}.${name}`;
      const prev = fields[key];
      if (prev === undefined) fields[key] = value;
      else if (Array.isArray(prev)) prev.push(value);
      else fields[key] = [prev, value];
    }
  }
  return i;
}

/** SD-NAME: printable US-ASCII except `=`, space, `]` and `"`. */
function isSdNameChar(c: number): boolean {
  return c > 0x20 && c < 0x7f && c !== 0x3d && c !== 0x5d && c !== 0x22;
}

/** The time a `BSD_TIME` match names, read in `zone` (UTC when undefined); see `bsdTime`. */
function bsdMatchTime(b: RegExpExecArray, receivedAt: number, zone?: string): number | undefined {
  return bsdTime(
    b[1],
    Number(b[2]),
    Number(b[4]),
    Number(b[5]),
    Number(b[6]),
    b[7],
    b[3] === undefined ? undefined : Number(b[3]),
    receivedAt,
    zone,
  );
}

/** RFC 3164, leniently: `[TIMESTAMP SP] [HOSTNAME SP] [TAG[PID]: ] MSG`. */
function parse3164(
  rest: string,
  hasPri: boolean,
  receivedAt: number,
  fields: Record<string, FieldValue>,
  opts: SyslogTimeOptions,
): { timestamp: number | undefined } | string {
  let timestamp: number | undefined;
  /** The time was read as UTC wall clock and must still be put in the sender's zone. */
  let zoneless = false;
  let body = rest;
  const b = BSD_TIME.exec(rest);
  if (b) {
    timestamp = bsdMatchTime(b, receivedAt);
    if (timestamp !== undefined) {
      body = rest.slice(b[0].length);
      zoneless = true;
    }
  }
  if (timestamp === undefined) {
    const iso = ISO_TIME.exec(rest);
    if (iso) {
      timestamp = parseTime(iso[1]);
      if (timestamp !== undefined) {
        body = rest.slice(iso[0].length);
        zoneless = !ZONED_ISO.test(iso[1]);
      }
    }
  }
  if (timestamp === undefined && !hasPri) return 'not a syslog message: no PRI and no timestamp';
  let hostname: string | undefined;
  // Without a timestamp RFC 3164 says the whole remainder is CONTENT: there is no HOSTNAME to look for.
  if (timestamp !== undefined) {
    const sp = body.indexOf(' ');
    const first = sp < 0 ? body : body.slice(0, sp);
    if (first !== '' && !TAG.test(body) && HOSTNAME.test(first)) {
      hostname = first;
      fields['log.syslog.hostname'] = first;
      fields['host.name'] = first;
      body = sp < 0 ? '' : body.slice(sp + 1);
    }
  }
  if (timestamp !== undefined && zoneless) {
    const zone = opts.zoneFor?.(hostname);
    if (b && zone !== undefined && zone !== 'UTC') {
      // The year is chosen again in the sender's zone: near New Year the UTC reading may pick the wrong one.
      timestamp = bsdMatchTime(b, receivedAt, zone);
      fields[EVENT_TIMEZONE] = zone;
      fields[TIME_ASSUMED] = true;
    } else {
      timestamp = assumeZone(timestamp, hostname, fields, opts);
    }
  }
  let t = TAG.exec(body);
  if (t === null && hostname !== undefined) {
    const bare = BARE_TAG.exec(body);
    if (bare) t = Object.assign([bare[0], bare[1] ?? bare[3], bare[2]], { index: 0, input: body }) as RegExpExecArray;
  }
  if (t) {
    fields['log.syslog.appname'] = t[1];
    fields['process.name'] = t[1];
    if (t[2] !== undefined && t[2] !== '') {
      fields['log.syslog.procid'] = t[2];
      if (DIGITS.test(t[2])) fields['process.pid'] = Number(t[2]);
    }
    body = body.slice(t[0].length);
  }
  fields.message = body;
  return { timestamp };
}

function trimLineEnd(s: string): string {
  let end = s.length;
  while (end > 0) {
    const c = s.charCodeAt(end - 1);
    if (c !== 0x0a && c !== 0x0d && c !== 0x00) break;
    end--;
  }
  return end === s.length ? s : s.slice(0, end);
}

function quote(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);
}

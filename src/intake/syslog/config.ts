import { BlockList, isIP } from 'node:net';
import { z } from 'zod';
import { DEFAULT_MAX_FUTURE_MS } from '../../parse/syslog.ts';
import { isTimeZone } from '../../parse/time.ts';
import { isReservedLogsource, RESERVED_LOGSOURCE_MESSAGE } from '../reserved.ts';

const port = z.number().int().min(0).max(65535);
const timeZone = z
  .string()
  .refine(isTimeZone, { message: 'not a time zone name (expected an IANA name such as Europe/Berlin)' });

/** RFC 6587's names: octet counting (`<length> <message>`) and non-transparent framing (LF-delimited). */
export const SYSLOG_FRAMINGS = ['auto', 'octet-counting', 'non-transparent'] as const;

/** A CIDR (`10.1.0.0/16`, `2001:db8::/32`) or a single address; undefined when `key` is neither. */
export function parseCidr(key: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const slash = key.indexOf('/');
  const address = slash < 0 ? key : key.slice(0, slash);
  const v = isIP(address);
  if (v === 0) return undefined;
  const max = v === 4 ? 32 : 128;
  const prefix = slash < 0 ? max : Number(key.slice(slash + 1));
  if (
    !Number.isInteger(prefix) ||
    prefix < 0 ||
    prefix > max ||
    (slash >= 0 && !/^\d{1,3}$/.test(key.slice(slash + 1)))
  ) {
    return undefined;
  }
  try {
    new BlockList().addSubnet(address, prefix, v === 4 ? 'ipv4' : 'ipv6');
  } catch {
    return undefined;
  }
  return { address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}

const HOST_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}$/;

/**
 * Settings of the syslog intake (`syslog:` in the config file). Port 0 asks the OS for a free port (tests);
 * `addresses()` reports the one it chose. TLS listens only when both `tls_cert_file` and `tls_key_file` are set.
 */
export const syslogConfigSchema = z
  .strictObject({
    /** Whether the intake listens at all. */
    enabled: z.boolean().default(true),
    /** Address every listener binds to; `0.0.0.0` or `::` to accept from other hosts. */
    host: z.string().min(1).default('127.0.0.1'),
    /** UDP port: one datagram is one message. */
    udp_port: port.default(5514),
    /** Plain TCP port: octet counting or LF/CRLF/NUL-delimited frames (RFC 6587). */
    tcp_port: port.default(5514),
    /**
     * RELP port (the reliable event logging protocol of rsyslog's omrelp and syslog-ng): each message is
     * acknowledged only after it is committed. 0, the default, turns it off (several nodes may share a host).
     */
    relp_port: port.default(0),
    /** RELP over TLS, with the certificate of the TLS listener (`tls_cert_file`, `tls_ca_file`); 0 = off. */
    relp_tls_port: port.default(0),
    /**
     * How TCP and TLS streams are split into messages (RFC 6587): `auto` decides from the first frame of each
     * connection (octet counting only when it starts `<digits> <`) and keeps that for the connection.
     */
    framing: z.enum(SYSLOG_FRAMINGS).default('auto'),
    /** IANA time zone in which times without a zone (RFC 3164 `Mmm dd hh:mm:ss`) are read. */
    timezone: timeZone.default('UTC'),
    /**
     * Time zones of particular senders: keys are host names (as the message names its host; compared
     * without case) or the sender's address as a CIDR (`10.2.0.0/16`) or single address; values IANA names.
     * A host name wins over an address, a longer prefix over a shorter; `timezone` applies to the rest.
     */
    timezones: z.record(z.string(), timeZone).default({}),
    /**
     * Latest event time accepted, in milliseconds after receipt. A later time (a zone read wrong, a clock
     * off) is not used: `@timestamp` is the receipt time and `vigil.future_timestamp` keeps the claim.
     */
    max_future_ms: z.number().int().min(0).default(DEFAULT_MAX_FUTURE_MS),
    /**
     * On stop, how long TCP and TLS connections are still read after the intake half-closed them, waiting
     * for the sender to close, in milliseconds; bounded by the stop deadline. Connections still open then are
     * cut and counted (`vigil_intake_connections_cut_total`).
     */
    drain_grace_ms: z.number().int().min(0).default(5000),
    /** TCP+TLS port (RFC 5425), used only when a certificate and key are configured. */
    tls_port: port.default(6514),
    /** PEM certificate (chain) of the TLS listener. */
    tls_cert_file: z.string().min(1).optional(),
    /** PEM private key of the TLS listener. */
    tls_key_file: z.string().min(1).optional(),
    /** PEM CA bundle: when set, TLS clients must present a certificate signed by it. */
    tls_ca_file: z.string().min(1).optional(),
    /** Longest message accepted, in bytes, without its delimiter; longer frames are rejected as `oversize`. */
    max_line_bytes: z
      .number()
      .int()
      .min(1)
      .max(16 * 1024 * 1024)
      .default(65536),
    /** Most TCP and TLS connections open at once; further connections are closed on accept. */
    max_connections: z.number().int().min(1).default(1000),
    /** Most events in one published batch. */
    batch_max_events: z.number().int().min(1).default(1000),
    /** Longest an event waits for its batch to fill before the batch is published anyway, in milliseconds. */
    batch_max_wait_ms: z.number().int().min(0).default(50),
    /**
     * Most events read but not yet committed, for this intake. At the cap TCP and TLS sockets are paused
     * (the sender is slowed by TCP flow control) and UDP datagrams are dropped as `overloaded`.
     */
    max_pending_events: z.number().int().min(1).default(20000),
    /** Tenant every event of this intake belongs to. */
    tenant: z.string().min(1).default('default'),
    /** Sigma logsource declared for everything this intake receives (as Splunk's sourcetype). */
    logsource: z
      .strictObject({
        product: z.string().min(1).optional(),
        service: z.string().min(1).optional(),
        category: z.string().min(1).optional(),
      })
      .optional(),
    /** A TCP or TLS connection that sends nothing for this long is closed, in milliseconds; 0 never closes. */
    idle_timeout_ms: z.number().int().min(0).default(300000),
  })
  .superRefine((c, ctx) => {
    if (c.tls_cert_file !== undefined && c.tls_key_file === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls_key_file'], message: 'required when tls_cert_file is set' });
    }
    if (c.tls_key_file !== undefined && c.tls_cert_file === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls_cert_file'], message: 'required when tls_key_file is set' });
    }
    if (c.tls_ca_file !== undefined && (c.tls_cert_file === undefined || c.tls_key_file === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['tls_ca_file'], message: 'needs tls_cert_file and tls_key_file' });
    }
    if (c.tls_cert_file !== undefined && c.tls_port !== 0 && c.tls_port === c.tcp_port) {
      ctx.addIssue({ code: 'custom', path: ['tls_port'], message: 'must differ from tcp_port' });
    }
    if (c.relp_tls_port !== 0 && c.tls_cert_file === undefined) {
      ctx.addIssue({ code: 'custom', path: ['relp_tls_port'], message: 'needs tls_cert_file and tls_key_file' });
    }
    const streams: [string, number][] = [
      ['tcp_port', c.tcp_port],
      ['tls_port', c.tls_cert_file === undefined ? 0 : c.tls_port],
      ['relp_port', c.relp_port],
      ['relp_tls_port', c.relp_tls_port],
    ];
    for (const [i, [name, p]] of streams.entries()) {
      if (i < 2 || p === 0) continue;
      const other = streams.slice(0, i).find(([, q]) => q === p);
      if (other) ctx.addIssue({ code: 'custom', path: [name], message: `must differ from ${other[0]}` });
    }
    if (isReservedLogsource(c.logsource)) {
      ctx.addIssue({ code: 'custom', path: ['logsource', 'product'], message: RESERVED_LOGSOURCE_MESSAGE });
    }
    for (const key of Object.keys(c.timezones)) {
      if (parseCidr(key) === undefined && !HOST_NAME.test(key)) {
        ctx.addIssue({
          code: 'custom',
          path: ['timezones', key],
          message: 'expected a host name, an address or a CIDR',
        });
      }
    }
  });

/** The validated syslog intake settings, defaults applied. */
export type SyslogConfig = z.infer<typeof syslogConfigSchema>;

/** Syslog intake settings as written: every key optional. */
export type SyslogConfigInput = z.input<typeof syslogConfigSchema>;

import { z } from 'zod';

const port = z.number().int().min(0).max(65535);

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
  });

/** The validated syslog intake settings, defaults applied. */
export type SyslogConfig = z.infer<typeof syslogConfigSchema>;

/** Syslog intake settings as written: every key optional. */
export type SyslogConfigInput = z.input<typeof syslogConfigSchema>;

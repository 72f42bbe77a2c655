import { createHmac } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import type { Alert } from '../detect/alerts/index.ts';
import { errorMessage, VigilError } from '../lib/errors.ts';
import { redactedErrorMessage, redactUrl } from '../lib/redact.ts';
import { formatCef, formatSyslog5424 } from './cef.ts';
import type { Destination, SyslogDestination, WebhookDestination } from './config.ts';

/** A delivery that failed; `retryable` false sends it to the dead-letter list at once. */
export class DeliveryError extends VigilError {
  constructor(message: string, retryable: boolean, cause?: unknown) {
    super('delivery_failed', message, { retryable, cause, status: 502 });
    this.name = 'DeliveryError';
  }
}

/** One message to send. */
export interface Outgoing {
  deliveryId: string;
  alert: Alert;
  attempt: number;
}

/** Sends alerts to one destination. `send` resolves when the destination took it. */
export interface Sender {
  send(msg: Outgoing, signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/** The exact webhook body of an alert: the same bytes on every attempt. */
export function webhookBody(msg: Outgoing, destination: string): string {
  return JSON.stringify({ delivery_id: msg.deliveryId, destination, alert: msg.alert });
}

/** `sha256=<hex>` of HMAC-SHA256(secret, body): the X-Vigil-Signature header. */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * Where a webhook posts, and the headers it adds: user info in the URL (`https://user:pass@host/...`)
 * becomes a Basic Authorization header (unless `headers` has one), as curl does, because fetch refuses a
 * URL with credentials (and would put the whole URL, password included, in its error).
 */
export function webhookTarget(d: Pick<WebhookDestination, 'url' | 'headers'>): {
  url: string;
  headers: Record<string, string>;
  shown: string;
} {
  const headers = { ...d.headers };
  const shown = redactUrl(d.url);
  let u: URL;
  try {
    u = new URL(d.url);
  } catch {
    return { url: d.url, headers, shown };
  }
  if (u.username || u.password) {
    const hasAuth = Object.keys(headers).some((h) => h.toLowerCase() === 'authorization');
    if (!hasAuth) {
      const basic = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
      headers.authorization = `Basic ${Buffer.from(basic).toString('base64')}`;
    }
    u.username = '';
    u.password = '';
  }
  return { url: u.href, headers, shown };
}

function webhookSender(d: WebhookDestination): Sender {
  const target = webhookTarget(d);
  return {
    async send(msg, signal) {
      const body = webhookBody(msg, d.name);
      let res: Response;
      try {
        res = await fetch(target.url, {
          method: 'POST',
          body,
          headers: {
            ...target.headers,
            'content-type': 'application/json',
            'user-agent': 'Vigil/0.1',
            'x-vigil-delivery': msg.deliveryId,
            'x-vigil-signature': signBody(d.secret, body),
            'x-vigil-attempt': String(msg.attempt),
          },
          signal: AbortSignal.any([signal, AbortSignal.timeout(d.timeout_ms)]),
          redirect: 'error',
        });
        // The body is read only to free the connection: the status alone decides the delivery.
        await res.arrayBuffer().catch(() => undefined);
      } catch (err) {
        // The cause is redacted too: fetch's errors carry the URL, and a cause ends up in logs.
        const reason = redactedErrorMessage(err);
        throw new DeliveryError(
          `POST to webhook ${d.name} (${target.shown}) failed: ${reason}`,
          true,
          new Error(reason),
        );
      }
      if (res.ok) return;
      // 4xx but timeout/too-many/conflict means the receiver refuses this message for good.
      const retryable = res.status >= 500 || [408, 409, 425, 429].includes(res.status);
      throw new DeliveryError(`webhook ${d.name} (${target.shown}) answered ${res.status}`, retryable);
    },
    async close() {},
  };
}

function syslogSender(d: SyslogDestination): Sender {
  let udp: UdpSocket | undefined;
  let tcp: Socket | undefined;
  let connecting: Promise<Socket> | undefined;

  const format = (msg: Outgoing) =>
    formatSyslog5424(formatCef(msg.alert, msg.deliveryId), {
      facility: d.facility,
      level: msg.alert.rule.level,
      time: Date.now(),
    });

  const tcpSocket = (): Promise<Socket> => {
    if (tcp && !tcp.destroyed) return Promise.resolve(tcp);
    connecting ??= new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: d.host, port: d.port });
      const timer = setTimeout(() => s.destroy(new Error(`connect timed out after ${d.timeout_ms} ms`)), d.timeout_ms);
      s.once('connect', () => {
        clearTimeout(timer);
        s.setKeepAlive(true);
        tcp = s;
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      // The receiver never speaks: anything read is ignored, and a close makes the next send reconnect.
      s.on('data', () => {});
      s.on('close', () => {
        if (tcp === s) tcp = undefined;
      });
    }).finally(() => {
      connecting = undefined;
    });
    return connecting;
  };

  return {
    async send(msg, signal) {
      const line = format(msg);
      try {
        if (d.protocol === 'udp') {
          udp ??= createSocket(d.host.includes(':') ? 'udp6' : 'udp4');
          const socket = udp;
          await new Promise<void>((resolve, reject) =>
            socket.send(Buffer.from(line), d.port, d.host, (err) => (err ? reject(err) : resolve())),
          );
          return;
        }
        const s = await tcpSocket();
        const frame = Buffer.from(line);
        // RFC 6587 octet counting: "<length> <message>", so a message may hold any byte.
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => s.destroy(new Error(`write timed out after ${d.timeout_ms} ms`)),
            d.timeout_ms,
          );
          const onAbort = () => s.destroy(new Error('stopped'));
          signal.addEventListener('abort', onAbort, { once: true });
          s.write(Buffer.concat([Buffer.from(`${frame.length} `), frame]), (err) => {
            clearTimeout(timer);
            signal.removeEventListener('abort', onAbort);
            if (err) reject(err);
            else resolve();
          });
        });
      } catch (err) {
        tcp?.destroy();
        tcp = undefined;
        throw new DeliveryError(`syslog ${d.protocol} to ${d.name} failed: ${errorMessage(err)}`, true, err);
      }
    },
    async close() {
      udp?.close();
      udp = undefined;
      if (tcp) await new Promise<void>((r) => tcp?.end(r));
      tcp = undefined;
    },
  };
}

/** The sender of a destination. */
export function createSender(d: Destination): Sender {
  return d.type === 'webhook' ? webhookSender(d) : syslogSender(d);
}

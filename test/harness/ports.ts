import { createSocket } from 'node:dgram';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function tcpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.once('error', () => resolve(false));
    s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * Ports to pick from: below the kernel's ephemeral range. A port inside it can be taken at any moment as the
 * source port of some outgoing connection (and held for a minute in TIME_WAIT), so a node restarted on its
 * ports would fail with EADDRINUSE, as one did in CI.
 */
function pickRange(): [number, number] {
  let [low, high] = [32768, 60999];
  try {
    [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  } catch {
    // not Linux: the kernel's default range
  }
  return low > 12000 ? [10000, low - 1] : [high + 1, 65000];
}

// Test files run in parallel processes: a port handed out is reserved for ten minutes by a file, so that
// another process does not pick it between this one's check and its node's bind (or its restart).
const RESERVED = join(tmpdir(), 'vigil-test-ports');
const RESERVE_MS = 10 * 60 * 1000;

function reserve(port: number): boolean {
  const file = join(RESERVED, String(port));
  try {
    closeSync(openSync(file, 'wx'));
    return true;
  } catch {
    try {
      // (A test run with its clock shifted sees every reservation as old: it falls back to the check alone.)
      if (Math.abs(Date.now() - statSync(file).mtimeMs) < RESERVE_MS) return false;
      const now = new Date();
      utimesSync(file, now, now);
      return true;
    } catch {
      return false;
    }
  }
}

/** A loopback port free for both TCP and UDP (syslog listens on both with one number). */
export async function freePort(): Promise<number> {
  const [low, high] = pickRange();
  mkdirSync(RESERVED, { recursive: true });
  for (let i = 0; i < 200; i++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (!reserve(port)) continue;
    if ((await tcpFree(port)) && (await udpFree(port))) return port;
  }
  throw new Error('no free loopback port found');
}

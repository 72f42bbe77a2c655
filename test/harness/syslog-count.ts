import assert from 'node:assert/strict';
import type { SyslogSender } from './rsyslog.ts';
import type { VigilNode } from './vigil.ts';

// Counting what a real syslog sender delivered: each line carries its sequence number as its tag (s0, s1, ...),
// so Vigil's `stats count() by process.name` shows every line's copies.

/** Copies stored of each sequence number of `run`. */
export async function stored(node: VigilNode, run: string): Promise<Map<number, number>> {
  const q = encodeURIComponent(`${run} | stats count() by process.name`);
  const res = await node.get(`/api/v1/search?q=${q}&from=now-1d&limit=10000`);
  assert.equal(res.status, 200, JSON.stringify(res.body).slice(0, 300));
  return new Map(res.body.rows.map((r: [string, number]) => [Number(String(r[0]).slice(1)), Number(r[1])]));
}

/** Waits until every one of `n` lines is stored (or `ms` passed) and returns the copies per line. */
export async function settle(node: VigilNode, run: string, n: number, ms = 30000): Promise<Map<number, number>> {
  const until = Date.now() + ms;
  let counts = await stored(node, run);
  while (counts.size < n && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 250));
    counts = await stored(node, run);
  }
  // A moment more, so that a late resend is counted too.
  await new Promise((r) => setTimeout(r, 1000));
  return stored(node, run);
}

/** Lines lost and copies stored twice or more out of `n` sent. */
export function summary(counts: Map<number, number>, n: number) {
  let lost = 0;
  let extra = 0;
  for (let i = 0; i < n; i++) {
    const c = counts.get(i) ?? 0;
    if (c === 0) lost++;
    else extra += c - 1;
  }
  return { sent: n, stored: counts.size, lost, duplicates: extra };
}

/**
 * Sends `lines` through `sender` at about 2,000 a second (100 every 50 ms) and runs `restart` once half of
 * them were handed over; resolves when both are done.
 */
export async function sendWithRestart(
  sender: Pick<SyslogSender, 'send'>,
  lines: string[],
  restart: () => Promise<void>,
): Promise<void> {
  let restarted: Promise<void> | undefined;
  await sender.send(lines, {
    perTick: 100,
    tickMs: 50,
    onTick: (sent) => {
      if (restarted === undefined && sent >= lines.length / 2) restarted = restart();
    },
  });
  await restarted;
}

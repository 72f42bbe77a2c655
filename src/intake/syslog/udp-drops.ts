import { readFileSync } from 'node:fs';
import { Counter, type Registry } from 'prom-client';

/** The metric of datagrams the kernel dropped for a UDP intake socket (its receive buffer was full). */
export const UDP_KERNEL_DROPS_METRIC = 'vigil_intake_udp_kernel_drops_total';

const PROC_TABLES = ['/proc/net/udp', '/proc/net/udp6'];

/**
 * Datagrams the kernel dropped for the UDP sockets bound to local `port`: the `drops` column (the last) of
 * /proc/net/udp and /proc/net/udp6, summed. Undefined where there is no such table (not Linux). The kernel
 * counts a drop when the socket's receive buffer is full, which happens while the event loop does not read:
 * these datagrams never reach Vigil, so only the kernel can count them.
 */
export function readUdpKernelDrops(port: number, tables: readonly string[] = PROC_TABLES): number | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let found = false;
  let drops = 0;
  for (const table of tables) {
    let text: string;
    try {
      text = readFileSync(table, 'latin1');
    } catch {
      continue;
    }
    found = true;
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // sl local_address rem_address st ... drops; local_address is ADDR:PORT in hex.
      if (cols.length < 13 || !cols[1].endsWith(`:${hexPort}`)) continue;
      const n = Number(cols[cols.length - 1]);
      if (Number.isSafeInteger(n)) drops += n;
    }
  }
  return found ? drops : undefined;
}

/** What a UDP intake tells the drop counter: its label and, while bound, its port. */
export interface UdpDropSource {
  source: string;
  port(): number | undefined;
}

const sources = new WeakMap<Registry, Set<UdpDropSource>>();

/**
 * Counts kernel drops of `src`'s socket in {@link UDP_KERNEL_DROPS_METRIC}{source}, read at each scrape of
 * `registry` (no timer). Returns the function that stops counting it. The kernel's count starts at zero with
 * each socket; the metric adds what grew since the last scrape, so it stays a counter across rebinds.
 */
export function countUdpKernelDrops(registry: Registry, src: UdpDropSource): () => void {
  let set = sources.get(registry);
  if (set === undefined) {
    const registered = new Set<UdpDropSource>();
    set = registered;
    sources.set(registry, registered);
    const last = new Map<UdpDropSource, { port: number; drops: number }>();
    new Counter({
      name: UDP_KERNEL_DROPS_METRIC,
      help: 'Datagrams the kernel dropped for a UDP intake socket because its receive buffer was full (read from /proc/net/udp).',
      labelNames: ['source'],
      registers: [registry],
      collect() {
        for (const s of registered) {
          const port = s.port();
          if (port === undefined) continue;
          const drops = readUdpKernelDrops(port);
          if (drops === undefined) continue;
          const before = last.get(s);
          // A new socket (another port, or a count that went back) starts from its own zero.
          const grew =
            before === undefined || before.port !== port || drops < before.drops ? drops : drops - before.drops;
          this.inc({ source: s.source }, grew);
          last.set(s, { port, drops });
        }
      },
    });
  }
  set.add(src);
  return () => set.delete(src);
}

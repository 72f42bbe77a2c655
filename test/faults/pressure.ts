/**
 * Samples the kernel's pressure stall information (PSI, /proc/pressure/{cpu,io}) while the fault suite runs,
 * so that a long intake gap or a slow takeover can be told apart from a stall of the whole machine: on a
 * shared 2-core machine nine servers, three embedded ClickHouse engines and the load generator compete for
 * the same cores and disk. `some` is the share of wall time in which at least one task waited for the
 * resource, `full` (io only) the share in which every non-idle task did.
 */
import { readFileSync } from 'node:fs';

interface Sample {
  at: number;
  cpuSome: number;
  ioSome: number;
  ioFull: number;
}

/** The worst one-second stall shares (percent) of a window, and when the worst io stall began. */
export interface PressureWindow {
  cpu_some_max_pct: number;
  io_some_max_pct: number;
  io_full_max_pct: number;
  io_worst_at_s: number;
}

export interface PressureSampler {
  start(): void;
  stop(): void;
  /** Figures between two epoch-ms marks; undefined when the kernel has no PSI. */
  window(from: number, to?: number): PressureWindow | undefined;
}

const INTERVAL_MS = 1000;

/** Cumulative stall microseconds of a resource: [some, full]. */
function totals(resource: 'cpu' | 'io'): [number, number] | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/pressure/${resource}`, 'utf8');
  } catch {
    return undefined;
  }
  const total = (kind: string) =>
    Number(/total=(\d+)/.exec(text.split('\n').find((l) => l.startsWith(kind)) ?? '')?.[1] ?? 0);
  return [total('some'), total('full')];
}

export function createPressureSampler(): PressureSampler {
  const samples: Sample[] = [];
  let timer: NodeJS.Timeout | undefined;

  const sample = () => {
    const cpu = totals('cpu');
    const io = totals('io');
    if (!cpu || !io) return;
    samples.push({ at: Date.now(), cpuSome: cpu[0], ioSome: io[0], ioFull: io[1] });
  };

  return {
    start() {
      if (timer) return;
      sample();
      timer = setInterval(sample, INTERVAL_MS);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
      timer = undefined;
    },
    window(from, to = Date.now()) {
      const inWindow = samples.filter((s) => s.at >= from - INTERVAL_MS && s.at <= to);
      if (inWindow.length < 2) return undefined;
      const worst = { cpu: 0, ioSome: 0, ioFull: 0, ioAt: from };
      for (let i = 1; i < inWindow.length; i++) {
        const a = inWindow[i - 1];
        const b = inWindow[i];
        // Stall microseconds per wall-clock microsecond of the interval, in percent.
        const share = (d: number) => Math.min(100, Math.round((d / ((b.at - a.at) * 1000)) * 1000) / 10);
        worst.cpu = Math.max(worst.cpu, share(b.cpuSome - a.cpuSome));
        const io = share(b.ioSome - a.ioSome);
        if (io > worst.ioSome) {
          worst.ioSome = io;
          worst.ioAt = a.at;
        }
        worst.ioFull = Math.max(worst.ioFull, share(b.ioFull - a.ioFull));
      }
      return {
        cpu_some_max_pct: worst.cpu,
        io_some_max_pct: worst.ioSome,
        io_full_max_pct: worst.ioFull,
        io_worst_at_s: Math.max(0, Math.round((worst.ioAt - from) / 100) / 10),
      };
    },
  };
}

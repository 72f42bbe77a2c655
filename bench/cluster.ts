/**
 * CPU cost of the cluster per event: a dev cluster (3 nats-server, 3 etcd, 3 Vigil nodes on loopback) under
 * the fault suite's load generator at `--rate` events/s, and the CPU time every member used over
 * `--seconds` (from /proc), with one Vigil node's CPU split by thread name (JavaScript, the engine's insert
 * and merge threads). It tells what load this machine can carry, and how many cores a target load needs.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createLoadGen } from '../test/faults/load.ts';
import { startDevCluster } from '../test/harness/dev-cluster.ts';
import { type Benchmark, intOption, progress } from './common.ts';

/** The fault suite's target load (issue 4). */
const TARGET_EVENTS_PER_S = 10_000;
const CLOCK_TICKS_PER_S = 100;

/** CPU seconds (user + system) of a process or thread from its `stat` file. */
function cpuSeconds(statPath: string): number {
  const stat = readFileSync(statPath, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
}

/** CPU seconds of a process's threads, summed by thread name without its trailing number. */
function threadSeconds(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/[0-9]+$/, '');
      out.set(name, (out.get(name) ?? 0) + cpuSeconds(`/proc/${pid}/task/${tid}/stat`));
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

const cores = (cpuS: number, wallS: number) => Math.round((cpuS / wallS) * 100) / 100;

export const clusterBenchmark: Benchmark = {
  name: 'cluster',
  description: 'CPU per event of a 3-node dev cluster under the fault-suite load, per member and per thread',
  async run(opts) {
    const params = { rate: intOption(opts, 'rate', 3000), seconds: intOption(opts, 'seconds', 20), warmup_s: 10 };
    progress('starting a dev cluster: 3 nats-server, 3 etcd, 3 Vigil nodes');
    const dc = await startDevCluster({ nodes: 3 });
    try {
      const gen = createLoadGen({ targets: dc.nodes, token: dc.token, run: `bench${Date.now()}`, rate: params.rate });
      gen.start();
      await new Promise((r) => setTimeout(r, params.warmup_s * 1000));
      const members = dc.cluster.status().filter((m) => m.pid !== null);
      const node = members.find((m) => m.kind === 'vigil')!;
      const before = new Map(members.map((m) => [m.name, cpuSeconds(`/proc/${m.pid}/stat`)]));
      const threadsBefore = threadSeconds(node.pid!);
      const mark = gen.mark();
      const t0 = performance.now();
      progress(`measuring ${params.seconds} s at ${params.rate} events/s offered`);
      await new Promise((r) => setTimeout(r, params.seconds * 1000));
      const wallS = (performance.now() - t0) / 1000;
      const accepted = gen.window(mark).rate;
      const byMember: Record<string, number> = {};
      let total = 0;
      for (const m of members) {
        const used = cpuSeconds(`/proc/${m.pid}/stat`) - before.get(m.name)!;
        byMember[m.name] = cores(used, wallS);
        total += used;
      }
      const byThread: Record<string, number> = {};
      for (const [name, s] of threadSeconds(node.pid!)) {
        const c = cores(s - (threadsBefore.get(name) ?? 0), wallS);
        if (c >= 0.01) byThread[name] = c;
      }
      await gen.close();
      const msPer1000 = Math.round((total / (accepted * wallS)) * 1e6);
      const coresForTarget = Math.round(((msPer1000 / 1000) * TARGET_EVENTS_PER_S) / 100) / 10;
      progress(`${Math.round(accepted)} events/s accepted; the cluster used ${cores(total, wallS)} cores`);
      return {
        params,
        results: {
          accepted_events_per_s: Math.round(accepted),
          wall_s: Math.round(wallS * 10) / 10,
          cluster_cores_busy: cores(total, wallS),
          cores_busy_by_member: byMember,
          [`${node.name}_cores_busy_by_thread`]: byThread,
          cluster_cpu_ms_per_1000_events: msPer1000,
          cores_needed_for_target: coresForTarget,
        },
        targets: { events_per_s: TARGET_EVENTS_PER_S },
        met: { fits_this_machine: coresForTarget <= 2 },
      };
    } finally {
      await dc.down({ hard: true });
    }
  },
};

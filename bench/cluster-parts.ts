/**
 * The cluster's cost per event taken apart, each part measured alone in CPU time (all threads of the process
 * that does the work), so that the figures hold on a shared, loaded machine where the whole cluster's do not:
 *
 * - the bus codec: encoding a 500-event request's events into a message, decoding a message (best of 5);
 * - a store replica: the materializer's writes (events, batch row, position row) at `--rate` events/s in
 *   one batch per `--linger-ms`, engine threads and merges included, as each of the 3 nodes does;
 * - NATS: 3 nats-server with an R3 stream, messages of the fault suite's size published at its message rate,
 *   with no consumer and with 4 (the 3 store replicas and the shared `detect`), each message acknowledged.
 *
 * Then the cluster's cost per event is modelled from them (one encode, 4 decodes, 3 replicas, the NATS
 * deliveries) beside what `npm run bench -- cluster` measures whole.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pino from 'pino';
import { Registry } from 'prom-client';
import { decodeBatch, encodeBatches } from '../src/bus/jetstream/codec.ts';
import type { NormalizedEvent } from '../src/lib/event.ts';
import { createNormalizer } from '../src/parse/index.ts';
import { storeConfigSchema } from '../src/store/config.ts';
import { batchesDdl, recordBatch } from '../src/store/copy/index.ts';
import { createEventStore } from '../src/store/index.ts';
import { POSITIONS_DDL } from '../src/store/materialize/index.ts';
import { freePort } from '../test/harness/ports.ts';
import { type Benchmark, intOption, progress, round, sleep } from './common.ts';

/** Events per request of the fault suite's load (test/faults/load.ts), one bus message each. */
const REQUEST_EVENTS = 500;
/** Consumers of the events stream in a 3-node cluster: each node's store replica and the shared detect. */
const CONSUMERS = 4;
const STORE_REPLICAS = 3;

const normalizer = createNormalizer();
let nextSeq = 0;

/** Events as the fault suite's load generator sends them, normalized as the HTTP intake does. */
function loadEvents(n: number): NormalizedEvent[] {
  const ts = new Date().toISOString();
  const out: NormalizedEvent[] = [];
  for (let i = 0; i < n; i++, nextSeq++) {
    const seq = nextSeq;
    const raw = JSON.stringify({
      '@timestamp': ts,
      'event.id': `parts-${seq}`,
      'event.kind': 'event',
      'event.category': 'authentication',
      'event.outcome': seq % 5 === 0 ? 'failure' : 'success',
      message: `fault-suite load event ${seq}`,
      'host.name': `load-${seq % 7}`,
      'user.name': `u${seq % 13}`,
      'source.ip': `10.9.${(seq >> 8) & 255}.${seq & 255}`,
      'test.run': 'parts',
      'test.bucket': Math.floor(seq / 1000),
      'test.seq': seq,
    });
    out.push(
      normalizer.fromJson(JSON.parse(raw), raw, {
        source: 'http',
        receivedAt: Date.now(),
        tenant: 'default',
        idSeed: `parts-${seq}`,
      }),
    );
  }
  return out;
}

/** CPU seconds of every thread of a process (this one by default), from /proc. */
function processCpuSeconds(pid: number | 'self' = 'self'): number {
  let ticks = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return ticks / 100;
}

/** Best of 5 passes, CPU µs per event of `fn` over every input. */
function microsPerEvent<T>(inputs: T[], events: number, fn: (input: T) => unknown): number {
  let best = Number.POSITIVE_INFINITY;
  for (let pass = 0; pass < 5; pass++) {
    const t0 = process.cpuUsage();
    for (const input of inputs) fn(input);
    const used = process.cpuUsage(t0);
    best = Math.min(best, (used.user + used.system) / events);
  }
  return round(best, 2);
}

function codecParts(): { encode_us: number; decode_us: number; message_bytes: number } {
  const requests = Array.from({ length: 40 }, () => loadEvents(REQUEST_EVENTS));
  const opts = { subjectPrefix: 'vigil.events', maxBytes: 1024 * 1024, compress: true };
  const messages = requests.map((r) => encodeBatches(r, opts)[0]);
  const events = requests.length * REQUEST_EVENTS;
  return {
    encode_us: microsPerEvent(requests, events, (r) => encodeBatches(r, opts)),
    decode_us: microsPerEvent(messages, events, (m) => decodeBatch(m.encoding, m.body)),
    message_bytes: messages[0].body.length,
  };
}

/** One store replica written as the materializer writes it, for `seconds` at `rate` events/s. */
async function replicaPart(rate: number, lingerMs: number, seconds: number): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-replica-'));
  const store = createEventStore(storeConfigSchema.parse({}), {
    dataDir: dir,
    metrics: new Registry(),
    logger: pino({ level: 'warn' }),
  });
  try {
    await store.start();
    await store.exec(POSITIONS_DDL);
    await store.exec(batchesDdl(30));
    const perBatch = Math.round((rate * lingerMs) / 1000);
    const batches = Array.from({ length: Math.ceil((seconds * 1000) / lingerMs) }, () => loadEvents(perBatch));
    // Built before the clock starts: the intake's work, not the replica's.
    await store.write(loadEvents(perBatch), { dedupToken: 'warmup' });
    const c0 = processCpuSeconds();
    const t0 = Date.now();
    for (let i = 0; i < batches.length; i++) {
      const b = batches[i];
      await store.write(b, { dedupToken: `bench:${2 * i}-${2 * i + 1}` });
      const now = Date.now();
      await recordBatch(store, {
        stream: 'bench',
        firstSeq: 2 * i,
        lastSeq: 2 * i + 1,
        events: b.length,
        minIngested: now,
        maxIngested: now,
      });
      await store.insertRows(
        'positions',
        Buffer.from(JSON.stringify({ stream: 'bench', consumer: 'c', seq: 2 * i + 1, ack_floor: 2 * i, updated: now })),
      );
      await sleep(Math.max(0, t0 + (i + 1) * lingerMs - Date.now()));
    }
    const used = processCpuSeconds() - c0;
    const wallS = (Date.now() - t0) / 1000;
    const events = batches.length * perBatch;
    return {
      events,
      wall_s: round(wallS, 1),
      cores: round(used / wallS, 3),
      cpu_us_per_event: round((used / events) * 1e6, 1),
    };
  } finally {
    await store.stop(Date.now() + 10000);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** nats-server CPU per message of an R3 stream, with `consumers` durable pull consumers acknowledging each. */
async function natsPart(
  msgsPerS: number,
  bytes: Uint8Array,
  seconds: number,
  consumers: number,
  ackEvery = 1,
): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-nats-'));
  const ports: { client: number; route: number }[] = [];
  for (let i = 0; i < 3; i++) ports.push({ client: await freePort(), route: await freePort() });
  const routes = ports.map((p) => `nats-route://127.0.0.1:${p.route}`).join(', ');
  const servers = ports.map((p, i) => {
    const d = join(dir, `nats-${i + 1}`);
    mkdirSync(d, { recursive: true });
    const conf = join(d, 'nats.conf');
    writeFileSync(
      conf,
      `server_name: "nats-${i + 1}"\nlisten: "127.0.0.1:${p.client}"\njetstream { store_dir: "${d}/store" }\n` +
        `cluster { name: "bench"\n listen: "127.0.0.1:${p.route}"\n routes: [${routes}]\n no_advertise: true }\n`,
    );
    return spawn('nats-server', ['-c', conf], { stdio: 'ignore' });
  });
  const stops: (() => void)[] = [];
  try {
    // The servers may not listen yet: the first connect waits for them.
    const nc = await connect({
      servers: ports.map((p) => `nats://127.0.0.1:${p.client}`),
      maxReconnectAttempts: -1,
      waitOnFirstConnect: true,
    });
    let jsm: Awaited<ReturnType<typeof jetstreamManager>> | undefined;
    for (let attempt = 0; !jsm; attempt++) {
      try {
        const m = await jetstreamManager(nc);
        await m.streams.add({ name: 'BENCH', subjects: ['bench.>'], num_replicas: 3, storage: StorageType.File });
        jsm = m;
      } catch (err) {
        // JetStream answers once the servers have elected their meta leader.
        if (attempt > 60) throw err;
        await sleep(1000);
      }
    }
    const js = jetstream(nc);
    for (let k = 0; k < consumers; k++) {
      await jsm.consumers.add('BENCH', {
        durable_name: `c${k}`,
        // Acknowledging every ackEvery-th message only: one ack covers those before it (AckPolicy.All).
        ack_policy: ackEvery > 1 ? AckPolicy.All : AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: 5e9,
        max_ack_pending: 1000,
      });
      // As the log's consumers pull (src/bus/jetstream/log.ts, bus.jetstream.consumer defaults).
      const messages = await (await js.consumers.get('BENCH', `c${k}`)).consume({ max_messages: 64, expires: 2000 });
      stops.push(() => messages.stop());
      void (async () => {
        let n = 0;
        for await (const m of messages) if (++n % ackEvery === 0) m.ack();
      })();
    }
    await sleep(3000);
    const pids = servers.map((s) => s.pid!);
    const c0 = pids.map((p) => processCpuSeconds(p));
    const t0 = Date.now();
    let sent = 0;
    while (Date.now() - t0 < seconds * 1000) {
      await js.publish('bench.x', bytes, { msgID: `m${sent++}` });
      await sleep(Math.max(0, t0 + (sent * 1000) / msgsPerS - Date.now()));
    }
    const used = pids.reduce((n, p, i) => n + processCpuSeconds(p) - c0[i], 0);
    const wallS = (Date.now() - t0) / 1000;
    for (const stop of stops) stop();
    await nc.close();
    return {
      consumers,
      ack_every: ackEvery,
      messages: sent,
      cores: round(used / wallS, 3),
      cpu_ms_per_message: round((used / sent) * 1000, 2),
    };
  } finally {
    for (const s of servers) s.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

export const clusterPartsBenchmark: Benchmark = {
  name: 'cluster-parts',
  description: "the cluster's CPU per event taken apart: bus codec, one store replica's writes, NATS per delivery",
  async run(opts) {
    const params = {
      rate: intOption(opts, 'rate', 3000),
      linger_ms: intOption(opts, 'linger-ms', 1000),
      seconds: intOption(opts, 'seconds', 30),
      // `--ack-every N`: the NATS part also measured with consumers acknowledging every Nth message (AckPolicy.All).
      ack_every: intOption(opts, 'ack-every', 1),
      // `--nats-only true`: the NATS parts only.
      nats_only: opts['nats-only'] === 'true' || opts['nats-only'] === true,
    };
    // One request's events as the suite's bus message: what the NATS parts publish.
    const msgsPerS = params.rate / REQUEST_EVENTS;
    const body = encodeBatches(loadEvents(REQUEST_EVENTS), {
      subjectPrefix: 'bench',
      maxBytes: 1024 * 1024,
      compress: true,
    })[0].body;
    if (params.nats_only) {
      const runs: Record<string, number>[] = [];
      // Alternated, twice: the machine is shared.
      for (let pass = 0; pass < 2; pass++) {
        for (const every of params.ack_every > 1 ? [1, params.ack_every] : [1]) {
          progress(`NATS: ${msgsPerS} messages/s, ${CONSUMERS} consumers acknowledging every ${every}`);
          runs.push(await natsPart(msgsPerS, body, params.seconds, CONSUMERS, every));
        }
      }
      return { params, results: { nats_with_consumers: runs }, targets: {}, met: {} };
    }
    progress('bus codec: encode and decode of 500-event messages');
    const codec = codecParts();
    progress(`one store replica written at ${params.rate} events/s, a batch every ${params.linger_ms} ms`);
    const replica = await replicaPart(params.rate, params.linger_ms, params.seconds);
    progress(`NATS: ${msgsPerS} messages/s of ${body.length} bytes to an R3 stream, no consumer`);
    const publishOnly = await natsPart(msgsPerS, body, params.seconds, 0);
    progress(`NATS: the same with ${CONSUMERS} consumers`);
    const consumed = await natsPart(msgsPerS, body, params.seconds, CONSUMERS);
    const natsUsPerEvent = (consumed.cores / params.rate) * 1e6;
    const model = {
      encode_us: codec.encode_us,
      decode_us: round(CONSUMERS * codec.decode_us, 1),
      store_replicas_us: round(STORE_REPLICAS * replica.cpu_us_per_event, 1),
      nats_us: round(natsUsPerEvent, 1),
    };
    return {
      params,
      results: {
        codec,
        store_replica: replica,
        nats_publish_only: publishOnly,
        nats_with_consumers: consumed,
        nats_cpu_ms_per_delivery: round(
          ((consumed.cores - publishOnly.cores) * params.seconds * 1000) / (consumed.messages * CONSUMERS),
          2,
        ),
        cluster_model_us_per_event: {
          ...model,
          total: round(
            Object.values(model).reduce((a, b) => a + b, 0),
            1,
          ),
          left_out: 'HTTP intake and normalization, detection, fixed costs (leases, polls), Node per request',
        },
      },
      targets: {},
      met: {},
    };
  },
};

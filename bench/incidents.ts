/**
 * Incident grouping cost on PGlite (the single node's embedded PostgreSQL, in its worker thread as a node
 * runs it): a stream of alerts over a set of grouping keys, in batches as the alert log's consumer hands
 * them over, ingested by the incident service. Prints the process's CPU time (PGlite's thread included) and
 * the SQL statements per alert, counted under the service's Db. Each round uses a fresh tenant, so every
 * round opens its incidents anew; a first round warms PGlite up and is not counted.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { type Db, migrate, openPglite, type Queryable } from '../src/db/index.ts';
import type { Alert } from '../src/detect/alerts/index.ts';
import { createIncidentService, INCIDENT_MIGRATIONS, incidentsConfigSchema } from '../src/incidents/index.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { type Benchmark, intOption, progress, round } from './common.ts';

const LEVELS = ['low', 'medium', 'medium', 'high', 'critical'] as const;
const MINUTE = 60_000;

/** A statement's kind: its first words (`INSERT INTO incident_alerts`, `SELECT pg_advisory_xact_lock`). */
const kindOf = (sql: string) => sql.trim().split(/\s+/).slice(0, 3).join(' ').replace(/\(.*$/, '');

/**
 * A Db that counts the statements run through it, transactions' included (BEGIN/COMMIT are not counted),
 * and sums their wall time by kind: PGlite runs one statement at a time, so that is where its thread works.
 */
function counting(db: Db): { db: Db; statements: () => number; byKind: Map<string, { n: number; ms: number }> } {
  let n = 0;
  const byKind = new Map<string, { n: number; ms: number }>();
  const wrap = (q: Queryable): Queryable => ({
    async query(sql, params) {
      n++;
      const t = performance.now();
      try {
        return await q.query(sql, params);
      } finally {
        const k = byKind.get(kindOf(sql)) ?? { n: 0, ms: 0 };
        k.n++;
        k.ms += performance.now() - t;
        byKind.set(kindOf(sql), k);
      }
    },
  });
  return {
    db: {
      ...wrap(db),
      kind: db.kind,
      close: () => db.close(),
      transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    },
    statements: () => n,
    byKind,
  };
}

/** A deterministic pseudo-random sequence (mulberry32), so that every run groups the same stream. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `alerts` alerts of one tenant over `keys` keys (rule x host), in time order over `spanMin` minutes (longer
 * than the 1 h window, so some keys open a second incident), each key's alerts of the rule's level with one
 * in ten a level higher (a severity change), two events each, from four partitions.
 */
function alertStream(tenant: string, alerts: number, keys: number, spanMin: number, seed: number): Alert[] {
  const rnd = random(seed);
  const hosts = Math.max(1, Math.round(Math.sqrt(keys)));
  const rules = Math.ceil(keys / hosts);
  const t0 = Date.now() - 24 * 60 * MINUTE;
  const times = Array.from({ length: alerts }, () => t0 + Math.floor(rnd() * spanMin * MINUTE)).sort((a, b) => a - b);
  return times.map((timestamp, i) => {
    const k = Math.floor(rnd() * keys);
    const rule = k % rules;
    const level = Math.min(LEVELS.length - 1, (rule % LEVELS.length) + (rnd() < 0.1 ? 1 : 0));
    return {
      id: `${tenant}-alert-${i}`,
      timestamp,
      created: timestamp,
      tenant,
      kind: 'rule',
      rule: { id: `rule-${rule}`, title: `Rule ${rule}`, level: LEVELS[level], tags: ['attack.t1059'] },
      host: `host-${Math.floor(k / rules)}`,
      status: 'new',
      matched: {},
      eventIds: [`${tenant}-ev-${i}-a`, `${tenant}-ev-${i}-b`],
      partition: `p${k % 4}`,
      fencingToken: 1,
    };
  });
}

export const incidentsBenchmark: Benchmark = {
  name: 'incidents',
  description: 'Incident grouping on PGlite: CPU-ms and SQL statements per alert',
  async run(opts) {
    const alerts = intOption(opts, 'alerts', 500);
    const keys = intOption(opts, 'keys', 50);
    const batch = intOption(opts, 'batch', 50);
    const rounds = intOption(opts, 'rounds', 3);
    const spanMin = intOption(opts, 'span-min', 90);
    const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-incidents-'));
    const raw = await openPglite(join(dir, 'pg'));
    try {
      await migrate(raw, INCIDENT_MIGRATIONS);
      const { db, statements, byKind } = counting(raw);
      const incidents = createIncidentService(incidentsConfigSchema.parse({}), {
        db,
        metrics: new Registry(),
        logger: silentLogger,
      });
      await incidents.start();
      const ingest = async (tenant: string, seed: number) => {
        const stream = alertStream(tenant, alerts, keys, spanMin, seed);
        let opened = 0;
        let linked = 0;
        for (let i = 0; i < stream.length; i += batch) {
          const r = await incidents.ingestAlerts(stream.slice(i, i + batch));
          opened += r.opened;
          linked += r.linked;
        }
        return { opened, linked };
      };
      await ingest('warmup', 1);
      progress('warm-up round done');
      byKind.clear();
      const s0 = statements();
      const cpu0 = process.cpuUsage();
      const wall0 = performance.now();
      let opened = 0;
      let linked = 0;
      for (let r = 0; r < rounds; r++) {
        const out = await ingest(`t${r}`, 100 + r);
        opened += out.opened;
        linked += out.linked;
      }
      const cpu = process.cpuUsage(cpu0);
      const wallMs = performance.now() - wall0;
      const stmts = statements() - s0;
      const total = alerts * rounds;
      await incidents.stop(Date.now() + 10_000);
      const cpuMs = (cpu.user + cpu.system) / 1000;
      progress(`${total} alerts: ${round(cpuMs)} CPU-ms, ${stmts} statements`);
      return {
        params: { alerts, keys, batch, rounds, span_min: spanMin, backend: 'pglite (worker thread)' },
        results: {
          alerts_measured: total,
          alerts_linked: linked,
          incidents_opened: opened,
          statements: stmts,
          statements_per_alert: round(stmts / total, 2),
          statements_per_batch: round(stmts / (Math.ceil(alerts / batch) * rounds), 1),
          cpu_ms_per_alert: round(cpuMs / total, 3),
          wall_ms_per_alert: round(wallMs / total, 3),
          statement_wall_ms_per_alert_by_kind: Object.fromEntries(
            [...byKind]
              .sort(([, a], [, b]) => b.ms - a.ms)
              .map(([k, v]) => [k, { statements: v.n, ms_per_alert: round(v.ms / total, 3) }]),
          ),
        },
        targets: {},
        met: {},
      };
    } finally {
      await raw.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

/**
 * Rolling upgrade through the balancer: a dev cluster of 3 Vigil nodes behind HAProxy (`--lb`), sharing one
 * PostgreSQL, under a small steady NDJSON load sent only to HAProxy. Each node in turn is drained
 * (maintenance API), stopped, started as the "new version" and rejoined, as docs/deployment.md tells an
 * operator to do. The client retries a 503 with Retry-After after the time it asks (that request counts as
 * failed only if it never succeeds); any other failed attempt makes its request failed.
 *
 * The "new version" is a copy of this checkout (bin/, src/, the same node_modules) whose package.json version
 * is one patch higher and whose SQL migrations end with one more, additive migration (a new table and a
 * nullable column on `incidents`): what a real release that changes the schema looks like, with no hook in
 * the product. The first upgraded node applies it to the shared database while the two others still run the
 * old version and keep serving against the migrated schema.
 *
 * HAProxy runs the template of src/devcluster/haproxy.ts with one change: `timeout check` 8 s instead of 1 s.
 * A drain is seen by its 503 and a stop by its refused connection, which that timeout does not delay; it
 * only decides how long a node that does not answer stays in. On this shared 2-core machine at a load
 * average of 60, healthy nodes starved of CPU missed two 1-second checks in a row 26 times in one run, until
 * none was left and HAProxy answered 503 itself: that measures the machine, not the upgrade. Such marks are
 * still counted (`balancer_unplanned_downs`).
 *
 * Printed and written to test/faults/results/rolling-upgrade.json: requests sent, failed as the client saw
 * them, events lost and duplicated (every store replica read id by id), p99 answer time before and during
 * the upgrade, and per node how long HAProxy took to take it out of rotation and put it back. Asserted:
 * failed = 0, lost = 0, duplicated = 0.
 */
import assert from 'node:assert/strict';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { balancerServerStates, HAPROXY_CHECK } from '../../src/devcluster/index.ts';
import { VERSION } from '../../src/lib/version.ts';
import { startDevCluster, type TestDevCluster } from '../harness/dev-cluster.ts';
import { ensureHaproxy } from '../harness/haproxy.ts';
import { type PostgresServer, startPostgres } from '../harness/postgres.ts';
import * as wait from '../harness/wait.ts';
import { createLoadGen, type LoadGen, type RequestRecord } from './load.ts';
import { checkReplicas } from './verify.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const RUN = `upgrade${Date.now().toString(36)}`;
/** Small on purpose: the point is the client's view of the upgrade, not throughput (2 shared cores here). */
const RATE = Number(process.env.VIGIL_UPGRADE_RATE ?? 500);
const BATCH = 50;
/** Load before the first drain, the "before" of the p99, and after the last rejoin. */
const STEADY_MS = 20000;
const RESULTS = join(import.meta.dirname, 'results');
const MIGRATION_ID = 'upgrade_probe/0001_init';
/** Longest wait for every replica to hold the run's events before they are compared id by id. */
const REPLICA_WAIT_MS = 240000;
/** See the header: only the timeout of a check that gets no answer is relaxed. */
const LB_CHECK = { timeout_check_ms: 8000 };

let dc: TestDevCluster | undefined;
let gen: LoadGen | undefined;
let pgServer: PostgresServer | undefined;
let next: NewVersion | undefined;
/** The database the nodes share. */
let dbUrl = '';
let summary: Record<string, unknown> | undefined;
const startedAt = new Date();
const loadAtStart = loadavg();

const { sleep } = wait;
/** Polls every 250 ms: the drain and rejoin times reported are measured from these waits. */
const waitFor = <T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, everyMs = 250) =>
  wait.waitFor(what, timeoutMs, fn, everyMs);

/** A built "new version" of Vigil: its CLI and what it reports. */
interface NewVersion {
  dir: string;
  bin: string;
  version: string;
}

/** One patch higher: 0.1.0 -> 0.1.1. */
function bumpPatch(version: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  assert.ok(m, `package.json version ${version} is not x.y.z`);
  return `${m[1]}.${m[2]}.${Number(m[3]) + 1}`;
}

/**
 * Copies this checkout's bin/ and src/ to a temporary folder (node_modules and the console build linked),
 * with the version bumped and one more SQL migration after the others.
 */
function buildNewVersion(): NewVersion {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-next-'));
  cpSync(join(ROOT, 'bin'), join(dir, 'bin'), { recursive: true });
  cpSync(join(ROOT, 'src'), join(dir, 'src'), { recursive: true, filter: (p) => !p.endsWith('.test.ts') });
  cpSync(join(ROOT, 'tsconfig.json'), join(dir, 'tsconfig.json'));
  symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(dir, 'node_modules'));
  if (existsSync(join(ROOT, 'web/dist'))) {
    mkdirSync(join(dir, 'web'));
    symlinkSync(realpathSync(join(ROOT, 'web/dist')), join(dir, 'web/dist'));
  }
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const version = bumpPatch(pkg.version);
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ ...pkg, version }, null, 2)}\n`);
  const file = join(dir, 'src/app/migrations.ts');
  const source = readFileSync(file, 'utf8');
  assert.match(source, /export const SQL_MIGRATIONS = \[/, 'src/app/migrations.ts still lists SQL_MIGRATIONS');
  // Additive only, as a release that runs beside the previous one must be: old nodes neither read the new
  // table nor name the new column, and their INSERTs leave it NULL.
  writeFileSync(
    file,
    `${source}
SQL_MIGRATIONS.push({
  id: '${MIGRATION_ID}',
  statements: [
    'CREATE TABLE upgrade_probe (id text PRIMARY KEY, applied_by text NOT NULL)',
    'ALTER TABLE incidents ADD COLUMN upgrade_note text',
  ],
});
`,
  );
  return { dir, bin: join(dir, 'bin/vigil'), version };
}

/** p-th percentile (0..100) of `values`, nearest rank; null when empty. */
function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Answer time (first send to acknowledgement, retries included) of the requests sent in [from, to). */
function answerTimes(requests: RequestRecord[], from: number, to: number) {
  const sent = requests.filter((r) => r.sentAt >= from && r.sentAt < to);
  const times = sent.filter((r) => r.ackedAt !== undefined).map((r) => r.ackedAt! - r.sentAt);
  return {
    requests: sent.length,
    p50_ms: percentile(times, 50),
    p99_ms: percentile(times, 99),
    max_ms: times.length ? Math.max(...times) : null,
  };
}

async function balancerState(node: string): Promise<string | undefined> {
  return (await balancerServerStates(dc!.balancer!.stats)).get(node);
}

/** Every node's version as the cluster's membership reports it (asked of `observer`). */
async function versions(observer: string): Promise<Record<string, string>> {
  const res = await dc!.api(observer, 'GET', '/admin/cluster/nodes');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return Object.fromEntries((res.body.nodes as { id: string; version: string }[]).map((n) => [n.id, n.version]));
}

/** One node through the documented procedure; resolves to what was measured. */
async function upgradeNode(name: string) {
  const t0 = Date.now();
  const enable = await dc!.api(name, 'POST', '/admin/maintenance/enable');
  assert.ok([200, 202].includes(enable.status), `${name}: enable answered ${enable.status}`);
  // /health/ready is 503 from now on: HAProxy must take the node out before it stops.
  await waitFor(
    `HAProxy to mark ${name} down`,
    30000,
    async () => ((await balancerState(name))?.startsWith('DOWN') ? true : undefined),
    25,
  );
  const leftRotationMs = Date.now() - t0;
  await waitFor(`${name} to be drained`, 60000, async () => {
    const s = await dc!.api(name, 'GET', '/admin/maintenance/status');
    return s.body?.status === 'drained' ? true : undefined;
  });
  const drainedMs = Date.now() - t0;
  // Nothing on the node's disk that the cluster lacks: its spool is empty before it stops.
  await waitFor(`${name}'s spool to empty`, 60000, async () => {
    const s = await dc!.api(name, 'GET', '/admin/cluster/status');
    const spool = s.body?.streams?.bus?.spool;
    return spool && spool.batches === 0 ? true : undefined;
  });
  const stopAt = Date.now();
  const stop = await dc!.cluster.restart(name, { vigilBin: next!.bin, readyTimeoutMs: 180000 });
  const restartMs = Date.now() - stopAt;
  assert.equal(stop, 'exited', `${name} stopped on SIGTERM within its grace period`);
  // Back in maintenance (maintenance.json): out of rotation until disabled, on the new version.
  assert.equal((await dc!.api(name, 'GET', '/admin/maintenance/status')).body.status, 'drained');
  const during = await versions(name);
  assert.equal(during[name], next!.version, `${name} runs the new version`);
  // Its replica catches up while it is out of rotation (about a second of the load behind at most).
  const catchUpAt = Date.now();
  await waitFor(`${name}'s replica to catch up`, 120000, async () => {
    const s = await dc!.api(name, 'GET', '/admin/cluster/status');
    const lag = s.body?.replicas?.[0]?.lagMessages;
    return typeof lag === 'number' && lag < RATE ? true : undefined;
  });
  const caughtUpMs = Date.now() - catchUpAt;
  const rejoinAt = Date.now();
  const disable = await dc!.api(name, 'POST', '/admin/maintenance/disable');
  assert.equal(disable.status, 200, JSON.stringify(disable.body));
  await waitFor(
    `HAProxy to put ${name} back`,
    30000,
    async () => ((await balancerState(name)) === 'UP' ? true : undefined),
    25,
  );
  return {
    node: name,
    left_rotation_ms: leftRotationMs,
    drained_ms: drainedMs,
    stop_and_start_ms: restartMs,
    replica_caught_up_ms: caughtUpMs,
    back_in_rotation_ms: Date.now() - rejoinAt,
    versions_after: during,
  };
}

/**
 * Nodes HAProxy marked down that were not being drained (a check timed out on a node that was only busy),
 * from its log: each cut that node's sessions.
 */
function unplannedDowns(drained: string[]): string[] {
  const log = readFileSync(dc!.member(dc!.balancer!.name).log, 'utf8');
  const downs = [...log.matchAll(/^Server vigil_http\/(\S+) is DOWN, reason: ([^,]+)/gm)];
  const out = downs.map((m) => `${m[1]}: ${m[2]}`);
  // Each drained node is marked down once, for its 503; every other line is unplanned.
  for (const node of drained) {
    const i = out.indexOf(`${node}: Layer7 wrong status`);
    if (i >= 0) out.splice(i, 1);
  }
  return out;
}

/** Every node answers an API that reads PostgreSQL (incidents), whichever version it runs. */
async function everyNodeReadsTheDatabase(): Promise<void> {
  for (const n of dc!.nodes) {
    const res = await dc!.api(n.name, 'GET', '/api/v1/incidents?limit=1');
    assert.equal(res.status, 200, `${n.name} lists incidents: ${JSON.stringify(res.body)}`);
  }
}

before(
  async () => {
    ensureHaproxy();
    next = buildNewVersion();
    pgServer = await startPostgres();
    dbUrl = await pgServer.createDatabase('vigil_upgrade');
    dc = await startDevCluster({ nodes: 3, lb: true, lbCheck: LB_CHECK, vigilConfig: { postgres: { url: dbUrl } } });
  },
  { timeout: 240000 },
);

after(async () => {
  await gen?.close();
  if (summary) {
    mkdirSync(RESULTS, { recursive: true });
    writeFileSync(join(RESULTS, 'rolling-upgrade.json'), `${JSON.stringify(summary, null, 2)}\n`);
  }
  if (dc) {
    const logs = join(RESULTS, 'rolling-upgrade-logs');
    rmSync(logs, { recursive: true, force: true });
    cpSync(join(dc.dir, 'logs'), logs, { recursive: true });
    await dc.down({ hard: true });
  }
  await pgServer?.stop();
  if (next) rmSync(next.dir, { recursive: true, force: true });
});

test('rolling upgrade through HAProxy: no failed request, no lost or duplicated event', {
  timeout: 900000,
}, async () => {
  const cluster = dc!;
  const lb = cluster.balancer!;
  await waitFor('every node in rotation', 60000, async () => {
    const states = await balancerServerStates(lb.stats);
    return cluster.nodes.every((n) => states.get(n.name) === 'UP') ? true : undefined;
  });
  assert.deepEqual(new Set(Object.values(await versions('vigil-1'))), new Set([VERSION]));

  gen = createLoadGen({
    targets: [{ name: lb.name, url: lb.url }],
    token: cluster.token,
    run: RUN,
    rate: RATE,
    batch: BATCH,
    concurrency: 4,
    honorRetryAfter: true,
  });
  const loadFrom = Date.now();
  gen.start();
  await sleep(STEADY_MS);

  const upgradeFrom = Date.now();
  const steps = [];
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  try {
    for (const [i, n] of cluster.nodes.entries()) {
      const step = await upgradeNode(n.name);
      steps.push(step);
      process.stdout.write(`# upgraded ${JSON.stringify(step)}\n`);
      const applied = await db.query('SELECT id FROM schema_migrations WHERE id = $1', [MIGRATION_ID]);
      assert.equal(applied.rowCount, 1, `the new version's migration is applied once ${n.name} runs it`);
      if (i === 0) {
        // Old and new side by side on the migrated schema.
        const mixed = new Set(Object.values(step.versions_after));
        assert.deepEqual(mixed, new Set([VERSION, next!.version]), JSON.stringify(step.versions_after));
      }
      await everyNodeReadsTheDatabase();
    }
  } finally {
    await db.end();
  }
  const upgradeTo = Date.now();
  await sleep(STEADY_MS / 2);
  const unacked = await gen.pause(60000);
  const loadTo = Date.now();

  // A replica still catching up is not a loss: each is compared once it holds as many events as were
  // acknowledged, or after REPLICA_WAIT_MS (seconds on an idle machine; 58 s at a load average of 70).
  const replicas = await checkReplicas(cluster, gen, RUN, { since: loadTo, timeoutMs: REPLICA_WAIT_MS });
  const requests = gen.requests();
  const failed = requests.filter((r) => r.ackedAt === undefined || r.hardFailures.length > 0);
  const failedReasons: Record<string, number> = {};
  for (const r of failed) for (const why of r.hardFailures) failedReasons[why] = (failedReasons[why] ?? 0) + 1;
  const lost = Math.max(0, ...replicas.map((c) => c.lost));
  const duplicated = Math.max(0, ...replicas.map((c) => c.duplicated));
  summary = {
    run: RUN,
    started_at: startedAt.toISOString(),
    machine: { cpus: cpus().length, loadavg_at_start: loadAtStart.map((l) => Math.round(l * 10) / 10) },
    cluster: { vigil_nodes: 3, nats_servers: 3, etcd_members: 3, balancer: 'haproxy', postgres: 'shared' },
    balancer_check: { ...HAPROXY_CHECK, ...LB_CHECK },
    versions: { old: VERSION, new: next!.version, migration: MIGRATION_ID },
    load: { rate_events_per_s: RATE, batch_events: BATCH, target: 'haproxy only', duration_ms: loadTo - loadFrom },
    requests_sent: requests.length,
    requests_failed: failed.length,
    failed_attempt_reasons: failedReasons,
    requests_retried_after_503: requests.filter((r) => r.retryAfters > 0).length,
    requests_unacknowledged: unacked,
    events_acknowledged: gen.acked(),
    lost,
    duplicated,
    answer_time_before: answerTimes(requests, loadFrom, upgradeFrom),
    answer_time_during: answerTimes(requests, upgradeFrom, upgradeTo),
    upgrade_ms: upgradeTo - upgradeFrom,
    balancer_unplanned_downs: unplannedDowns(cluster.nodes.map((n) => n.name)),
    nodes: steps,
    replicas: replicas.map(({ node, stored, lost, duplicated, caughtUpMs }) => ({
      node,
      stored,
      lost,
      duplicated,
      caughtUpMs,
    })),
  };
  process.stdout.write(`# rolling upgrade: ${JSON.stringify(summary)}\n`);

  assert.equal(failed.length, 0, `requests failed as the client saw them: ${JSON.stringify(failedReasons)}`);
  for (const c of replicas) {
    assert.equal(c.lost, 0, `${c.node} lost ${c.lost} acknowledged events, e.g. ${c.lostSample.join(', ')}`);
    assert.equal(c.duplicated, 0, `${c.node} returns duplicates, e.g. ${c.duplicatedSample.join(', ')}`);
  }
  assert.deepEqual(new Set(Object.values(await versions('vigil-1'))), new Set([next!.version]));
});

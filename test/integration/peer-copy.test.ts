import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { Manifest } from '../../src/backup/index.ts';
import { type NatsCluster, startNatsCluster } from '../harness/nats.ts';
import { startVigil, type VigilNode, vigilCli } from '../harness/vigil.ts';

async function ids(node: VigilNode): Promise<string[]> {
  const res = await node.get('/api/v1/search?q=*&from=now-1d&to=now%2B1h&limit=10000');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return (res.body.events as Record<string, string>[]).map((e) => e['event.id']);
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function metric(node: VigilNode, name: string): Promise<number> {
  const res = await fetch(`${node.url}/metrics`);
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').pop()) : Number.NaN;
}

const batch = (tag: string, n: number) =>
  Array.from({ length: n }, (_, i) => JSON.stringify({ event: { id: `${tag}-${i}` }, message: tag })).join('\n');

let nats: NatsCluster;
const root = mkdtempSync(join(tmpdir(), 'vigil-peer-copy-'));
before(async () => {
  nats = await startNatsCluster({ size: 1 });
});
after(async () => {
  await nats?.stop();
  rmSync(root, { recursive: true, force: true });
});

test('a replica restored from a backup older than the stream copies the missing range from a peer, or names it', {
  timeout: 900_000,
}, async () => {
  const dir = join(root, 'backups');
  const env = (node: string) => ({
    VIGIL_BUS__KIND: 'jetstream',
    VIGIL_BUS__JETSTREAM__SERVERS: JSON.stringify(nats.urls),
    VIGIL_BUS__JETSTREAM__REPLICAS: '1',
    VIGIL_CLUSTER__NODE_ID: node,
    VIGIL_BACKUP__DIR: join(root, `backups-${node}`),
    VIGIL_STORE__COPY__RETRY_INTERVAL_MS: '1000',
    // Small pages, so that the copy takes several.
    VIGIL_STORE__COPY__PAGE_MAX_EVENTS: '40',
  });
  const a = await startVigil({ env: { ...env('replica-1'), VIGIL_BACKUP__DIR: dir } });
  const peerData = mkdtempSync(join(tmpdir(), 'vigil-peer-'));
  let b = await startVigil({ env: env('replica-2'), dataDir: peerData });
  let manifest: Manifest;
  try {
    assert.equal((await a.post('/api/v1/ingest', batch('before', 100))).status, 200);
    await until(
      'both replicas to hold the first events',
      async () => (await ids(a)).length === 100 && (await ids(b)).length === 100,
    );
    const created = await vigilCli(['backup', 'create'], { VIGIL_URL: a.url, VIGIL_TOKEN: a.token });
    assert.equal(created.code, 0, created.err);
    manifest = JSON.parse(readFileSync(join(dir, created.out.trim(), 'manifest.json'), 'utf8'));
    // Acknowledged after the backup, in several messages: only the peer will have these once the stream drops them.
    for (let i = 0; i < 3; i++) assert.equal((await b.post('/api/v1/ingest', batch(`after${i}`, 50))).status, 200);
    await until(
      'both replicas to hold every event',
      async () => (await ids(a)).length === 250 && (await ids(b)).length === 250,
    );
  } finally {
    await a.close();
    await b.close({ keepData: true });
  }

  // Retention drops every message so far, as max_age would after a week: the backup's position is gone.
  const nc = await connect({ servers: nats.urls });
  let firstSeq: number;
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.purge('VIGIL_EVENTS');
    firstSeq = (await jsm.streams.info('VIGIL_EVENTS')).state.first_seq;
  } finally {
    await nc.close();
  }
  const position = manifest.engine.positions[0];
  assert.ok(
    position.ack_floor + 1 < firstSeq,
    `the stream starts at ${firstSeq}, past the backup's ${position.ack_floor}`,
  );

  const target = join(root, 'restored');
  const restored = await vigilCli(['backup', 'restore', manifest.id, '--data-dir', target], { VIGIL_BACKUP__DIR: dir });
  assert.equal(restored.code, 0, restored.err);
  const copy = await startVigil({ dataDir: target, env: env('replica-1') });
  try {
    // No peer is up: the replica names exactly what it lacks, in /health and /metrics.
    const from = position.ack_floor + 1;
    const to = firstSeq - 1;
    await until('the missing range to be reported', async () => {
      const h = await copy.get('/health/ready');
      return /no peer replica holds it/.test(h.body.checks?.materialize?.detail ?? '');
    });
    const health = await copy.get('/health/ready');
    assert.equal(health.status, 200, 'readiness stays: searches answer from what the replica holds');
    assert.match(
      health.body.checks.materialize.detail,
      new RegExp(`missing stream messages ${from}-${to} \\(no peer replica holds it\\)`),
    );
    assert.equal(await metric(copy, 'vigil_store_replica_missing_messages'), to - from + 1);
    assert.equal(await metric(copy, 'vigil_store_replica_missing_first_sequence'), from);
    assert.equal(await metric(copy, 'vigil_store_replica_missing_last_sequence'), to);
    assert.match(copy.output(), /Stream messages this replica never wrote are missing/);
    assert.equal((await ids(copy)).length, 100, 'only what the backup held');

    // The peer comes back: the range is copied from it, page by page, and nothing is stored twice.
    b = await startVigil({ env: env('replica-2'), dataDir: peerData });
    await until('the restored replica to copy the range from its peer', async () => (await ids(copy)).length >= 250);
    await until(
      'the range to be reported filled',
      async () => (await metric(copy, 'vigil_store_replica_missing_messages')) === 0,
    );
    const received = await metric(copy, 'vigil_store_copy_events_total{direction="received"}');
    assert.ok(received >= 150, `copied ${received} events`);
    assert.ok((await metric(copy, 'vigil_store_copy_pages_total{direction="received"}')) >= 4, 'several pages');
    assert.ok((await metric(b, 'vigil_store_copy_events_total{direction="served"}')) >= 150);
    const h2 = await copy.get('/health/ready');
    assert.doesNotMatch(h2.body.checks.materialize.detail, /missing/);

    // And the stream goes on from where it is.
    assert.equal((await copy.post('/api/v1/ingest', batch('later', 50))).status, 200);
    await until('the later events', async () => (await ids(copy)).length >= 300);
    const seen = await ids(copy);
    assert.equal(seen.length, 300);
    assert.equal(new Set(seen).size, 300, 'each event once');
    for (const [tag, n] of [
      ['before', 100],
      ['after0', 50],
      ['after1', 50],
      ['after2', 50],
      ['later', 50],
    ] as const) {
      for (let i = 0; i < n; i++) assert.ok(seen.includes(`${tag}-${i}`), `${tag}-${i}`);
    }
  } finally {
    await copy.close();
    await b.close();
  }
});

/**
 * A copy interrupted after some pages goes on after its last recorded page, and a page committed but not
 * recorded (a crash between the two) is read again without being stored twice. The receiving replica is a
 * real store; the peer answers the copy protocol with rows and cursors the real page reader read from the
 * same store beforehand (one chdb store per process), their tenant renamed so that the copies are told apart.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { gzipSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { openTestStore } from '../../../test/harness/event-store.ts';
import type { JetStreamConnection } from '../../bus/jetstream/index.ts';
import { silentLogger } from '../../lib/logger.ts';
import type { EventStore } from '../index.ts';
import { rangeCopyConfigSchema } from './config.ts';
import { type CopyProgress, createRangeCopy } from './index.ts';
import { type Cursor, type PageRequest, readPage } from './pages.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'vigil-copy-resume-'));
let store: EventStore;
/** The peer's rows in copy order, each with the cursor after it, as readPage gives them. */
const peerRows: { row: string; cursor: Cursor }[] = [];
const N = 95;
const PAGE = 10;
const T0 = Date.parse('2026-12-06T08:00:00Z');

before(async () => {
  store = openTestStore(dataDir);
  await store.start();
  await store.write(
    Array.from({ length: N }, (_, i) => ({
      id: `ev-${i}`,
      timestamp: T0 - i * 1000,
      ingested: T0 + Math.floor(i / 3) * 1000,
      tenant: 'peer',
      source: 'http',
      layout: 'json',
      raw: `event ${i}`,
      fields: { n: i },
    })),
  );
  let after: Cursor | null = null;
  const req = { from_ingested: T0, to_ingested: T0 + N * 1000, max_events: 1 };
  for (;;) {
    const page = await readPage(store, { page_max_events: 1, page_max_bytes: 1 << 20 }, { ...req, after });
    if (!page.rows?.length || !page.next) break;
    peerRows.push({ row: page.rows[0].replace('"tenant":"peer"', '"tenant":"copied"'), cursor: page.next });
    after = page.next;
  }
  assert.equal(peerRows.length, N);
});
after(async () => {
  await store?.stop(Date.now() + 5000);
  rmSync(dataDir, { recursive: true, force: true });
});

/** The peer: answers offers, and pages of {@link peerRows} in order after the cursor asked. */
function peer() {
  const asked: (Cursor | null)[] = [];
  const nc = {
    async request(subject: string, data: string) {
      if (subject === '_vigil.copy.offer') {
        const answer = { node: 'peer-1', from_ingested: T0, to_ingested: T0 + N * 1000 };
        return { json: () => answer };
      }
      const req = JSON.parse(data) as PageRequest;
      asked.push(req.after);
      const at = req.after === null ? 0 : peerRows.findIndex((r) => isDeepStrictEqual(r.cursor, req.after)) + 1;
      assert.ok(at >= 0, 'a cursor the peer gave');
      const rows = peerRows.slice(at, at + Math.min(PAGE, req.max_events));
      const next = at + rows.length < peerRows.length ? rows[rows.length - 1].cursor : null;
      return { data: gzipSync(JSON.stringify({ rows: rows.map((r) => r.row), next })) };
    },
  };
  // Only what copy() uses of the connection: its core client's request/reply.
  const connection = { clients: () => ({ nc }), ready: () => true } as unknown as JetStreamConnection;
  return { connection, asked };
}

async function counts(): Promise<{ physical: number; final: number; distinct: number }> {
  const [r] = await store.query<{ p: string; f: string; d: string }>(
    `SELECT (SELECT count() FROM vigil.events WHERE tenant = 'copied') AS p,
            (SELECT count() FROM vigil.events FINAL WHERE tenant = 'copied') AS f,
            (SELECT uniqExact(id) FROM vigil.events WHERE tenant = 'copied') AS d`,
    {},
  );
  return { physical: Number(r.p), final: Number(r.f), distinct: Number(r.d) };
}

test('an interrupted copy resumes after its last recorded page; the page committed but not recorded is not stored twice', async (t) => {
  const p = peer();
  const copier = createRangeCopy(
    rangeCopyConfigSchema.parse({ page_max_events: PAGE, max_events_per_second: 0, request_timeout_ms: 1000 }),
    { connection: p.connection, store, nodeId: 'receiver', metrics: new Registry(), logger: silentLogger },
  );
  const range = { fromIngested: T0, toIngested: T0 + N * 1000 };
  const recorded: CopyProgress[] = [];
  // Without merges a row stored twice stays two rows, so that the count below sees it.
  await store.exec('SYSTEM STOP MERGES vigil.events');
  t.after(() => store.exec('SYSTEM START MERGES vigil.events'));
  const pages = Math.ceil(N / PAGE);

  // The 4th page is committed, then recording its progress fails (as a crash between the two would).
  await assert.rejects(
    copier.copy(range, {
      onPage: async (progress) => {
        if (progress.pages === 4) throw new Error('the node died before it recorded page 4');
        recorded.push(progress);
      },
    }),
    /page 4/,
  );
  assert.deepEqual(
    recorded.map((r) => [r.pages, r.events]),
    [
      [1, PAGE],
      [2, 2 * PAGE],
      [3, 3 * PAGE],
    ],
  );
  assert.equal(new Set(recorded.map((r) => r.id)).size, 1, 'one copy id for the whole copy');
  assert.equal((await counts()).physical, 4 * PAGE, 'four pages committed');

  // Resumed from what was recorded: page 4 is asked again (after page 3's cursor), and dropped by its token.
  const firstAsk = p.asked.length;
  const last = recorded[recorded.length - 1];
  const result = await copier.copy(range, {
    resume: last,
    onPage: async (progress) => {
      recorded.push(progress);
    },
  });
  assert.deepEqual(p.asked[firstAsk], last.after, 'the first page asked starts after the last recorded one');
  assert.ok(
    p.asked.slice(firstAsk).every((a) => a !== null),
    'no page of the resumed attempt starts from the beginning',
  );
  assert.equal(result.resumedPages, 3);
  // 3 recorded + 7 read now (page 4's first read was never recorded, so it counts once).
  assert.equal(result.pages, pages);
  assert.equal(result.events, N);
  assert.equal(result.peer, 'peer-1');
  assert.equal(recorded[recorded.length - 1].id, last.id, 'the resumed copy keeps its id');
  assert.deepEqual(await counts(), { physical: N, final: N, distinct: N }, 'every row once, page 4 included');
});

test("rows deleted (a shard dropped, then given back) are copied again by a new copy: the first copy's page tokens do not drop them", async (t) => {
  await store.exec(`ALTER TABLE vigil.events DELETE WHERE tenant = 'copied' SETTINGS mutations_sync = 2`);
  assert.equal((await counts()).physical, 0);
  await store.exec('SYSTEM STOP MERGES vigil.events');
  t.after(() => store.exec('SYSTEM START MERGES vigil.events'));
  const p = peer();
  const copier = createRangeCopy(rangeCopyConfigSchema.parse({ page_max_events: PAGE, max_events_per_second: 0 }), {
    connection: p.connection,
    store,
    nodeId: 'receiver',
    metrics: new Registry(),
    logger: silentLogger,
  });
  const result = await copier.copy({ fromIngested: T0, toIngested: T0 + N * 1000 });
  assert.equal(p.asked[0], null, 'from the first page');
  assert.equal(result.resumedPages, 0);
  assert.deepEqual(await counts(), { physical: N, final: N, distinct: N });
});

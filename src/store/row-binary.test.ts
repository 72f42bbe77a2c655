import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Session } from 'chdb';
import { eventLoopTurnsDuring } from '../../test/harness/event-loop.ts';
import type { FieldValue, NormalizedEvent } from '../lib/event.ts';
import { insertFromFileSql } from './index.ts';
import {
  attachRows,
  eventsToRowBinary,
  eventsToRowBinarySliced,
  eventsToRowBinaryWithEnds,
  ROW_BINARY_STRUCTURE,
  RowBuffers,
  rowsOf,
} from './row-binary.ts';
import { eventsToRows } from './rows.ts';
import { DATABASE, EVENTS_TABLE, eventsTableDdl } from './schema.ts';

// chdb binds one data directory per process: this file has its own.
const dataDir = mkdtempSync(join(tmpdir(), 'vigil-row-binary-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));

const BASE = 1_795_000_000_000;

/** Events with what a binary encoding can get wrong: lengths past one varint byte, multi-byte text, big maps. */
function tricky(): NormalizedEvent[] {
  const many: Record<string, FieldValue> = {};
  for (let i = 0; i < 300; i++) many[`k${i}`] = `v${i}`;
  const base = { tenant: 'default', source: 'http', layout: 'windows' as const };
  return [
    {
      ...base,
      id: 'plain',
      timestamp: BASE,
      ingested: BASE + 1,
      raw: '{"EventID":4688}',
      fields: { EventID: 4688, Channel: 'Security', 'host.name': 'dc01', message: 'a process was created' },
    },
    {
      ...base,
      id: 'long-and-wide',
      timestamp: BASE + 2,
      ingested: BASE + 3,
      raw: `{"Message":"${'x'.repeat(20_000)}"}`,
      parseError: 'e'.repeat(200),
      fields: { ...many, Message: 'y'.repeat(20_000), 'host.name': 42 },
    },
    {
      ...base,
      id: 'text-é€😀',
      timestamp: BASE + 4,
      ingested: BASE + 5,
      raw: 'café € 😀 \r\n\t\\ "quoted" \u0000 end',
      fields: {
        'user.name': 'Zoë',
        emoji: '😀'.repeat(50),
        crlf: 'a\r\nb\r\n',
        nul: 'a\u0000b',
        // Around the length past which the writer measures text before writing it (42 UTF-16 units), and
        // non-ASCII text first, last and alone.
        ascii42: 'a'.repeat(42),
        ascii43: 'b'.repeat(43),
        lateAccent: `${'c'.repeat(41)}é`,
        // Where the length's varint width is known without measuring (128 to 5,461 units: 2 bytes) and past it.
        ascii127: 'f'.repeat(127),
        ascii128: 'g'.repeat(128),
        euro5461: '€'.repeat(5461),
        euro5462: '€'.repeat(5462),
        accents5461: `${'é'.repeat(5460)}h`,
        emoji2730: `${'😀'.repeat(2730)}i`,
        firstAccent: `é${'d'.repeat(20)}`,
        onlyAccent: 'é',
        del: '\u007f\u0080',
        empty: '',
        nothing: null,
        yes: true,
        num: 1.5,
        list: ['a', 2, true],
        __proto__key: 'x',
        'vigil.logsource.product': 'from the event',
      },
      logsource: { product: 'windows', service: 'security' },
    },
    {
      ...base,
      id: 'old',
      timestamp: -86_400_000 * 365 * 50 + 123,
      ingested: BASE + 6,
      raw: '{}',
      fields: {},
    },
  ];
}

function mordorLike(n: number): NormalizedEvent[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `e-${i}`,
    timestamp: BASE + i,
    ingested: BASE + i,
    tenant: 'default',
    source: 'http',
    layout: 'ecs',
    raw: `{"message":"line ${i}","user":{"name":"u${i % 7}"}}`,
    fields: { message: `line ${i}`, 'user.name': `u${i % 7}`, 'event.code': i, tags: ['a', `t${i}`] },
  }));
}

test('RowBinary rows store exactly what JSONEachRow rows store, promoted columns included', async () => {
  const s = new Session(join(dataDir, 'engine'));
  try {
    await s.queryAsync(`CREATE DATABASE IF NOT EXISTS ${DATABASE}`);
    await s.queryAsync(eventsTableDdl(3650));
    await s.queryAsync(eventsTableDdl(3650, `${DATABASE}.events_json`));
    const events = tricky();
    await s.insert({ table: `${DATABASE}.events_json`, values: eventsToRows(events), format: 'JSONEachRow' });
    const file = join(dataDir, 'rows.bin');
    writeFileSync(file, eventsToRowBinary(events));
    await s.queryAsync(insertFromFileSql(file));
    const read = async (table: string) =>
      (
        await s.queryAsync(
          `SELECT *, ${['f_EventID', 'f_Channel', 'f_user_name'].join(', ')} FROM ${table} ORDER BY id FORMAT JSONEachRow`,
        )
      ).text();
    const json = await read(`${DATABASE}.events_json`);
    const binary = await read(EVENTS_TABLE);
    assert.equal(json.trim().split('\n').length, events.length);
    assert.equal(binary, json);
    // The map of 300+ entries needed a varint of two bytes for its size.
    const rows = binary
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; fields: Record<string, string> });
    const wide = rows.find((r) => r.id === 'long-and-wide');
    assert.equal(Object.keys(wide?.fields ?? {}).length, 301);
  } finally {
    s.close();
  }
});

test('an event whose time is past the last day a Date holds is stored at its receipt time, by both writers', async () => {
  // toDate(ts) would put it in a partition of another day (2200-01-01 in 2020-07-27's), which searches read
  // whole by partition.
  const s = new Session(join(dataDir, 'engine'));
  try {
    await s.queryAsync(`CREATE DATABASE IF NOT EXISTS ${DATABASE}`);
    const table = `${DATABASE}.far_future`;
    await s.queryAsync(eventsTableDdl(3650, table));
    const event = (id: string, timestamp: number): NormalizedEvent => ({
      tenant: 'default',
      source: 'http',
      layout: 'json',
      id,
      timestamp,
      ingested: BASE,
      raw: `{"@timestamp":${timestamp}}`,
      fields: {},
    });
    const far = Date.UTC(2200, 0, 1);
    const last = Date.UTC(2149, 5, 6, 23, 59, 59, 999);
    await s.insert({
      table,
      values: eventsToRows([event('json-far', far), event('json-last', last)]),
      format: 'JSONEachRow',
    });
    const file = join(dataDir, 'far.bin');
    writeFileSync(file, eventsToRowBinary([event('binary-far', far), event('binary-last', last)]));
    await s.queryAsync(insertFromFileSql(file).replace(EVENTS_TABLE, table));
    const stored = (
      await s.queryAsync(
        `SELECT id, toUnixTimestamp64Milli(ts) AS ms, _partition_id AS p FROM ${table} ORDER BY id FORMAT JSONEachRow`,
      )
    )
      .text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; ms: string; p: string });
    const day = new Date(BASE).toISOString().slice(0, 10).replaceAll('-', '');
    assert.deepEqual(
      stored.map((r) => [r.id, Number(r.ms), r.p]),
      [
        ['binary-far', BASE, day],
        ['binary-last', last, '21490606'],
        ['json-far', BASE, day],
        ['json-last', last, '21490606'],
      ],
    );
  } finally {
    s.close();
  }
});

test('a promoted column holds the value, an empty value as empty, and NULL only when the field is absent', async () => {
  const s = new Session(join(dataDir, 'engine'));
  try {
    await s.queryAsync(`CREATE DATABASE IF NOT EXISTS ${DATABASE}`);
    await s.queryAsync(eventsTableDdl(3650, `${DATABASE}.events_promoted`));
    const base = tricky()[0];
    const events: NormalizedEvent[] = [
      { ...base, id: 'p-value', fields: { Channel: 'Security' } },
      { ...base, id: 'p-empty', fields: { Channel: '' } },
      { ...base, id: 'p-absent', fields: { Other: 'x' } },
    ];
    const file = join(dataDir, 'promoted.bin');
    writeFileSync(file, eventsToRowBinary(events));
    await s.queryAsync(insertFromFileSql(file).replace(EVENTS_TABLE, `${DATABASE}.events_promoted`));
    const text = (
      await s.queryAsync(`SELECT id, f_Channel FROM ${DATABASE}.events_promoted ORDER BY id FORMAT JSONEachRow`)
    ).text();
    assert.deepEqual(
      text
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
      [
        { id: 'p-absent', f_Channel: null },
        { id: 'p-empty', f_Channel: '' },
        { id: 'p-value', f_Channel: 'Security' },
      ],
    );
  } finally {
    s.close();
  }
});

test('the RowBinary structure is the events table columns and types, in the DDL', async () => {
  const s = new Session(join(dataDir, 'engine'));
  try {
    const text = (
      await s.queryAsync(
        `SELECT name, type FROM system.columns WHERE database = '${DATABASE}' AND table = 'events' AND default_kind != 'MATERIALIZED' ORDER BY position FORMAT JSONEachRow`,
      )
    ).text();
    const columns = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { name: string; type: string });
    assert.deepEqual(
      Object.fromEntries(columns.map((c) => [c.name, c.type])),
      Object.fromEntries(ROW_BINARY_STRUCTURE),
    );
  } finally {
    s.close();
  }
});

test('rows built in slices are the same bytes as in one go, and the event loop turns between slices', async () => {
  const batch = mordorLike(100);
  // A budget of 0 turns at every look at the clock (every 16 rows).
  const { result: sliced, turns } = await eventLoopTurnsDuring(() => eventsToRowBinarySliced(batch, 0));
  assert.ok(sliced.equals(eventsToRowBinary(batch)), 'same RowBinary bytes');
  assert.ok(turns >= 5, `the event loop turned ${turns} times while the rows were built`);
  assert.ok((await eventsToRowBinarySliced(batch.slice(0, 10))).equals(eventsToRowBinary(batch.slice(0, 10))));
});

test('rows built elsewhere are written as they are, cut event by event; an event without one has its rows built here', async () => {
  const events = tricky();
  const { rows, ends } = eventsToRowBinaryWithEnds(events);
  assert.ok(rows.equals(eventsToRowBinary(events)));
  assert.equal(ends.length, events.length);
  assert.equal(ends[ends.length - 1], rows.length);
  // Attached rows are what the store writes: marked here so that a rebuild would show.
  const marked = Buffer.from(rows);
  marked[0] ^= 0xff;
  const copies = events.map((e) => ({ ...e }));
  attachRows(copies, marked, ends);
  assert.ok((await rowsOf(copies)).equals(marked));
  assert.ok((await rowsOf(copies.slice(1))).equals(marked.subarray(ends[0])));
  // One event without attached rows: the chunk's rows are built from the events.
  assert.ok((await rowsOf([...copies, { ...events[0] }])).equals(eventsToRowBinary([...events, events[0]])));
  assert.throws(() => attachRows(copies.slice(1), rows, ends), /rows of \d+ events/);
});

test('chunks built with RowBuffers are written over a buffer handed back, grown when too small, with the same bytes', async () => {
  const buffers = new RowBuffers();
  const chunks = [mordorLike(400), mordorLike(300).map((e) => ({ ...e, id: `b-${e.id}` })), tricky()];
  const first = await rowsOf(chunks[0], 0, buffers);
  assert.ok(first.equals(eventsToRowBinary(chunks[0])));
  buffers.give(first);
  const second = await rowsOf(chunks[1], 0, buffers);
  assert.equal(second.buffer, first.buffer, 'the buffer handed back is reused');
  assert.ok(second.equals(eventsToRowBinary(chunks[1])), 'only the rows of this chunk, nothing of the first left');
  // Not handed back yet: the next chunk gets a buffer of its own.
  const third = await rowsOf(chunks[2], 0, buffers);
  assert.notEqual(third.buffer, second.buffer);
  assert.ok(third.equals(eventsToRowBinary(chunks[2])));
  // Too small for the chunk: grown (a new buffer), the rows whole.
  buffers.give(Buffer.alloc(64 * 1024));
  const grown = await rowsOf(mordorLike(2000), 0, buffers);
  assert.ok(grown.buffer.byteLength > 64 * 1024);
  assert.ok(grown.equals(eventsToRowBinary(mordorLike(2000))));
  // Rows built elsewhere are copied into a kept buffer too.
  const { rows, ends } = eventsToRowBinaryWithEnds(chunks[1]);
  const copies = chunks[1].map((e) => ({ ...e }));
  attachRows(copies, rows, ends);
  buffers.give(grown);
  const attached = await rowsOf(copies, 0, buffers);
  assert.equal(attached.buffer, grown.buffer);
  assert.ok(attached.equals(rows));
});

test('RowBuffers keeps at most two buffers, never a slice of the shared pool of Node nor one past 64 MB', () => {
  const buffers = new RowBuffers();
  // Small allocUnsafe buffers share Node's pool with unrelated data: written over, they would corrupt it.
  buffers.give(Buffer.allocUnsafe(100));
  buffers.give(Buffer.allocUnsafe(65 * 1024 * 1024));
  assert.equal(buffers.take(), undefined);
  const a = Buffer.alloc(128 * 1024);
  const b = Buffer.alloc(128 * 1024);
  buffers.give(a.subarray(0, 10));
  buffers.give(a);
  buffers.give(b);
  buffers.give(Buffer.alloc(128 * 1024));
  const kept = [buffers.take(), buffers.take(), buffers.take()];
  assert.deepEqual(
    kept.map((k) => k?.buffer),
    [b.buffer, a.buffer, undefined],
    'the same buffer handed back twice is kept once; a third is left to the collector',
  );
  assert.equal(kept[1]?.length, 128 * 1024, 'a kept buffer is whole, whatever slice of it came back');
  // After a burst of large events, a small chunk's rows in a large buffer do not keep it.
  const large = Buffer.alloc(28 * 1024 * 1024);
  buffers.give(large.subarray(0, 272));
  assert.equal(buffers.take(), undefined, 'a buffer far larger than its rows is left to the collector');
  buffers.give(large.subarray(0, 4 * 1024 * 1024));
  assert.equal(buffers.take()?.buffer, large.buffer, 'one its rows fill enough is kept');
});

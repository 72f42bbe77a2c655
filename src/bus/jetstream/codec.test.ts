import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { InputError, VigilError } from '../../lib/errors.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import { shardOf } from '../../cluster/shards/types.ts';
import { batchId, decodeBatch, encodeBatches, eventsOfLines, MAX_DECODED_BYTES, tenantToken } from './codec.ts';

function ev(i: number, tenant = 'default', rawBytes = 200): NormalizedEvent {
  return {
    id: `id-${i}`,
    timestamp: 1700000000000 + i,
    ingested: 1700000000000 + i,
    tenant,
    source: 'http',
    layout: 'json',
    raw: `${i} `.padEnd(rawBytes, String.fromCharCode(97 + (i % 26))),
    fields: { 'host.name': `h${i % 5}`, n: i, tags: ['a', i], ok: true, nothing: null },
  };
}

test('a batch round-trips through both encodings, one subject per tenant, order kept within a tenant', () => {
  const events = [ev(0, 'a'), ev(1, 'b'), ev(2, 'a'), ev(3, 'acme.corp *')];
  for (const compress of [false, true]) {
    const out = encodeBatches(events, { subjectPrefix: 'vigil.events', maxBytes: 1024 * 1024, compress });
    assert.deepEqual(
      out.map((b) => [b.subject, b.events]),
      [
        ['vigil.events.a', 2],
        ['vigil.events.b', 1],
        [`vigil.events.${tenantToken('acme.corp *')}`, 1],
      ],
    );
    assert.equal(out[0].encoding, compress ? 'json+gzip' : 'json');
    assert.deepEqual(decodeBatch(out[0].encoding, out[0].body), [events[0], events[2]]);
    assert.deepEqual(decodeBatch(out[2].encoding, out[2].body), [events[3]]);
  }
  assert.match(tenantToken('acme.corp *'), /^~[0-9a-f]+$/);
});

test('the message id depends only on the event ids: a retried publish gets the same ids', () => {
  const events = Array.from({ length: 50 }, (_, i) => ev(i));
  const a = encodeBatches(events, { subjectPrefix: 'p', maxBytes: 4096, compress: false });
  const b = encodeBatches(
    events.map((e) => ({ ...e, ingested: e.ingested + 1 })),
    { subjectPrefix: 'p', maxBytes: 4096, compress: false },
  );
  assert.ok(a.length > 1);
  assert.deepEqual(
    a.map((x) => x.id),
    b.map((x) => x.id),
  );
  assert.equal(new Set(a.map((x) => x.id)).size, a.length);
  assert.notEqual(batchId([ev(1)]), batchId([ev(2)]));
});

test('big batches are split under the message limit, compressed or not, and nothing is lost', () => {
  const events = Array.from({ length: 3000 }, (_, i) => ev(i, 'default', 600));
  for (const compress of [false, true]) {
    const maxBytes = 64 * 1024;
    const out = encodeBatches(events, { subjectPrefix: 'p', maxBytes, compress });
    assert.ok(out.length > 1, `split (${compress})`);
    for (const b of out) assert.ok(b.body.length <= maxBytes, `${b.body.length} <= ${maxBytes}`);
    const back = out.flatMap((b) => decodeBatch(b.encoding, b.body));
    assert.deepEqual(
      back.map((e) => e.id),
      events.map((e) => e.id),
    );
  }
});

test('a batch is cut at the same events whether it fits one message or not, so a retry gets the same ids', () => {
  // The cut of the event texts, one a line: `[\n`, each text and `,\n` (the last one `\n]`).
  const cuts = (events: NormalizedEvent[], target: number) => {
    const out: number[] = [];
    let size = 2;
    events.forEach((e, i) => {
      const add = Buffer.byteLength(JSON.stringify(e)) + 2;
      if (i > 0 && size + add > target && out.length === 0) out.push(i);
      size += add;
    });
    return { size, first: out[0] };
  };
  const events = Array.from({ length: 40 }, (_, i) => ev(i, 'default', 100));
  const { size } = cuts(events, Number.POSITIVE_INFINITY);
  for (const [maxBytes, messages] of [
    [size, 1],
    [size - 1, 2],
  ] as const) {
    const out = encodeBatches(events, { subjectPrefix: 'p', maxBytes, compress: false });
    assert.equal(out.length, messages, `limit ${maxBytes}`);
    assert.equal(out[0].events, cuts(events, maxBytes).first ?? events.length);
    for (const b of out) assert.ok(b.body.length <= maxBytes, `${b.body.length} <= ${maxBytes}`);
    if (messages === 1) assert.equal(out[0].body.length, size, "the size counted is the body's");
    const text = Buffer.from(out[0].body).toString();
    assert.equal(
      text,
      `[\n${events
        .slice(0, out[0].events)
        .map((e) => JSON.stringify(e))
        .join(',\n')}\n]`,
    );
  }
  // Compressed: what fits 8x the limit uncompressed but not the limit once gzip'ed is still halved until it fits.
  const noisy = Array.from({ length: 64 }, (_, i) => ({ ...ev(i), raw: randomBytes(1500).toString('base64') }));
  const out = encodeBatches(noisy, { subjectPrefix: 'p', maxBytes: 64 * 1024, compress: true });
  assert.ok(out.length > 1);
  for (const b of out) assert.ok(b.body.length <= 64 * 1024);
  assert.deepEqual(
    out.flatMap((b) => decodeBatch(b.encoding, b.body)),
    noisy,
  );
});

test('a message holds one event a line; bodies in that layout or any other JSON array decode to the same events', () => {
  const events = [ev(0), { ...ev(1), raw: 'line one\nline two, "quoted" \u2028 é 😀 \ud800' }, ev(2)];
  const [plain] = encodeBatches(events, { subjectPrefix: 'p', maxBytes: 1 << 20, compress: false });
  const text = Buffer.from(plain.body).toString();
  assert.equal(text.split('\n').length, events.length + 2, 'one line an event, besides the brackets');
  assert.deepEqual(JSON.parse(text), events, 'any JSON parser reads it (an older node)');
  assert.deepEqual(decodeBatch('json', plain.body), events);
  assert.deepEqual(eventsOfLines(Buffer.from(plain.body)), events, 'decoded a line at a time');
  // An older node's one-line array, other spacing, and texts that look like the layout but are not, decode whole.
  const other = [
    JSON.stringify(events),
    JSON.stringify(events, null, 2),
    `[\n${JSON.stringify(events[0])},${JSON.stringify(events[1])}\n]`,
    `[\n${JSON.stringify(events[0])}\n,\n${JSON.stringify(events[1])}\n]`,
    '[\n\n]',
    '[\n1,\n[2,3],\n"x"\n]',
  ];
  for (const body of other) {
    const inLayout = body === '[\n\n]' || body.startsWith('[\n1,');
    assert.equal(eventsOfLines(Buffer.from(body)) !== undefined, inLayout, `line layout: ${body.slice(0, 40)}`);
    assert.deepEqual(decodeBatch('json', Buffer.from(body)), JSON.parse(body), body.slice(0, 40));
    assert.deepEqual(decodeBatch('json+gzip', gzipSync(body)), JSON.parse(body), body.slice(0, 40));
  }
  // What is not a JSON array is refused as before, in the layout or not.
  for (const bad of ['[\n{"a":1},\n\n]', '[\n{"a":1},\n{"b":\n]', '[\n{"a":1}\n', '{"a":1}']) {
    assert.throws(
      () => decodeBatch('json', Buffer.from(bad)),
      (err: Error) => err instanceof SyntaxError || err instanceof VigilError,
      bad,
    );
  }
});

test('an event larger than the message limit on its own is refused with event_too_large', () => {
  const big = { ...ev(0), raw: Buffer.alloc(200000).toString('base64') };
  assert.throws(
    () => encodeBatches([ev(1), big], { subjectPrefix: 'p', maxBytes: 64 * 1024, compress: false }),
    (err: unknown) => err instanceof InputError && err.code === 'event_too_large',
  );
});

test('an unknown encoding or a body that is not an array is a bus_bad_message error', () => {
  assert.throws(() => decodeBatch('zstd', Buffer.from('[]')), /unknown message encoding/);
  assert.throws(() => decodeBatch('json', Buffer.from('{}')), /not a JSON array/);
});

test('a gzip bomb is refused as bus_bad_message before it inflates past the bound', () => {
  // 4 MiB of one repeated byte gzips to about 4 KiB: 1000x, far beyond any real batch.
  const bomb = gzipSync(Buffer.alloc(4 * 1024 * 1024, 0x5b));
  assert.ok(bomb.length < 64 * 1024);
  assert.throws(
    () => decodeBatch('json+gzip', bomb, 1024 * 1024),
    (err: unknown) =>
      err instanceof VigilError && err.code === 'bus_bad_message' && /inflates beyond/.test(err.message),
  );
  // Under the bound, a gzip'ed body decodes.
  const fine = gzipSync(Buffer.from('[]'));
  assert.deepEqual(decodeBatch('json+gzip', fine, 1024 * 1024), []);
  assert.equal(MAX_DECODED_BYTES, 256 * 1024 * 1024);
});

test('with shards, a message holds one shard of one tenant, on <prefix>.s<shard>.<tenant>, the same cut every time', () => {
  const events = Array.from({ length: 400 }, (_, i) => ev(i, i % 3 === 0 ? 'a' : 'b', 100));
  const out = encodeBatches(events, { subjectPrefix: 'vigil.events', maxBytes: 8192, compress: true, shards: 8 });
  const seen = new Map<string, number>();
  for (const b of out) {
    const m = /^vigil\.events\.s(\d)\.(a|b)$/.exec(b.subject);
    assert.ok(m, b.subject);
    const decoded = decodeBatch(b.encoding, b.body);
    assert.equal(decoded.length, b.events);
    for (const e of decoded) {
      assert.equal(shardOf(e.id, 8), Number(m[1]), `${e.id} on ${b.subject}`);
      assert.equal(e.tenant, m[2]);
      seen.set(e.id, (seen.get(e.id) ?? 0) + 1);
    }
  }
  assert.equal(seen.size, 400);
  assert.ok([...seen.values()].every((n) => n === 1));
  assert.equal(new Set(out.map((b) => b.subject)).size, 16);
  const again = encodeBatches(events, { subjectPrefix: 'vigil.events', maxBytes: 8192, compress: true, shards: 8 });
  assert.deepEqual(
    again.map((b) => [b.subject, b.id]),
    out.map((b) => [b.subject, b.id]),
  );
  // One shard: the subjects of before shards existed.
  const one = encodeBatches(events, { subjectPrefix: 'vigil.events', maxBytes: 1 << 20, compress: true, shards: 1 });
  assert.deepEqual(one.map((b) => b.subject).sort(), ['vigil.events.a', 'vigil.events.b']);
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import {
  createHttpIntake,
  createIdempotencyKeys,
  type HttpIntake,
  httpIntakeConfigSchema,
  type IngestRequest,
} from '../../intake/http/index.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import { silentLogger } from '../../lib/logger.ts';
import { createNormalizer, isJsonPieces, parseConfigSchema } from '../../parse/index.ts';
import type { Principal } from '../../users/index.ts';
import { httpConfigSchema } from '../config.ts';
import { createApiServer } from '../server.ts';
import { ingestRoutes } from './ingest.ts';

const root = mkdtempSync(join(tmpdir(), 'vigil-ingest-route-'));
after(() => rmSync(root, { recursive: true, force: true }));

const WRITER: Principal = { name: 'writer', role: 'admin', tenants: ['default'] };

/** About 2.7 KB a line, with characters of 2 to 4 bytes (some cut by the socket's chunks), as Mordor events are. */
function line(i: number): string {
  return JSON.stringify({
    EventID: 4688,
    Channel: 'Security',
    Hostname: `host-${i % 7}`,
    EventTime: `2021-01-0${1 + (i % 9)} 10:00:00`,
    CommandLine: `${'é€𝄞 '.repeat(200)}${'x'.repeat(i % 300)}`,
  });
}

test('the ingest route gets a large body in pieces and answers and publishes exactly as for the whole text', {
  timeout: 60_000,
}, async () => {
  const metrics = new Registry();
  const published: NormalizedEvent[][] = [];
  const intake = createHttpIntake(httpIntakeConfigSchema.parse({}), {
    normalizer: createNormalizer(parseConfigSchema.parse({})),
    publish: async (events) => {
      published.push(events);
    },
    metrics,
    keys: createIdempotencyKeys({ dir: join(root, 'keys'), maxKeys: 100, metrics, logger: silentLogger }),
  });
  const bodies: IngestRequest['body'][] = [];
  const seen: HttpIntake = {
    ...intake,
    ingest: (req) => {
      bodies.push(req.body);
      return intake.ingest(req);
    },
  };
  await intake.start();
  const api = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0' }), {
    auth: { authenticate: () => WRITER },
    metrics,
    logger: silentLogger,
    routes: [ingestRoutes({ intake: seen, metrics })],
  });
  await api.start();
  try {
    const lines = Array.from({ length: 3000 }, (_, i) => line(i));
    // Malformed lines, a pretty-printed object and an unindented one that runs over lines starting with `{`:
    // wherever the pieces are cut, each is read as in the whole text.
    for (let i = 250; i < lines.length; i += 500) {
      lines[i] = '{"EventID": 1, "broken":';
      lines[i + 1] = `{\n  "EventID": 4624,\n  "Channel": "Security",\n  "Hostname": "pretty-${i}"\n}`;
      lines[i + 2] = `{\n"EventID":\n{\n"#text": 4625\n},\n"Channel": "Security",\n"Hostname": "nested-${i}"\n}`;
      lines[i + 3] = 'not json at all';
    }
    const text = `${lines.join('\n')}\n`;
    assert.ok(Buffer.byteLength(text) > 6 << 20, 'several pieces of a mebibyte');
    const post = async (key: string) => {
      const res = await fetch(`http://127.0.0.1:${api.address().port}/api/v1/ingest`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson', 'idempotency-key': key },
        body: text,
      });
      assert.equal(res.status, 200);
      return res.json();
    };
    const overHttp = await post('k1');
    const pieces = bodies.at(-1);
    assert.ok(isJsonPieces(pieces) && pieces.pieces.length >= 6, 'the route was given the body in pieces');
    // The same key: the same receipt time and event ids, so the two requests' events can be compared.
    const whole = await intake.ingest({ body: text, tenant: 'default', idempotencyKey: 'k1' });
    assert.deepEqual(overHttp, whole);
    assert.equal(whole.accepted, 2988);
    assert.deepEqual(
      whole.rejected.map((r) => r.line),
      // Each group adds 11 lines: the pretty object 4, the unindented one 7.
      [251, 265, 762, 776, 1273, 1287, 1784, 1798, 2295, 2309, 2806, 2820],
    );
    assert.equal(published.length, 2);
    assert.deepEqual(published[0], published[1]);
    assert.deepEqual(
      published[0]
        .filter((e) => String(e.fields['host.name']).startsWith('nested-'))
        .map((e) => e.fields['EventID.#text']),
      [4625, 4625, 4625, 4625, 4625, 4625],
    );
  } finally {
    await api.stop(Date.now() + 5000);
    await intake.stop(Date.now() + 5000);
  }
});

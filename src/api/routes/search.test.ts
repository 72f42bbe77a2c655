import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { VigilError } from '../../lib/errors.ts';
import type { EventStore } from '../../store/index.ts';
import { withoutSchemaChecks } from '../server.ts';
import { searchRoutes } from './search.ts';

let peer: Server;
let peerUrl = '';
const peerSaw: { url?: string; authorization?: string; forwarded?: string }[] = [];

before(async () => {
  peer = createServer((req, res) => {
    peerSaw.push({
      url: req.url,
      authorization: req.headers.authorization,
      forwarded: req.headers['x-vigil-forwarded'] as string,
    });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ total: 1, events: [], took_ms: 1, replica: { node: 'peer', lag_messages: 3 } }));
  });
  await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
  peerUrl = `http://127.0.0.1:${(peer.address() as AddressInfo).port}`;
});

after(() => peer.close());

/** A store whose queries answer no rows, or fail as a broken replica does. */
function fakeStore(fail: boolean): EventStore {
  const scope = {
    async query() {
      if (fail) throw new VigilError('store_query_failed', 'the query failed: disk error', { status: 500 });
      return [];
    },
  };
  return { ...scope, search: (_user: string, fn: (s: typeof scope) => unknown) => fn(scope) } as unknown as EventStore;
}

async function app(
  store: EventStore | undefined,
  peers: string[] | undefined,
  self = { node: 'here', lag_messages: 0 },
) {
  const a: FastifyInstance = Fastify();
  withoutSchemaChecks(a);
  a.addHook('onRequest', async (req) => {
    (req as unknown as { principal: unknown }).principal = { name: 't', role: 'viewer', tenants: ['default'] };
  });
  a.setErrorHandler((err: VigilError, _req, reply) => reply.status(err.status ?? 500).send({ error: err.code }));
  const metrics = new Registry();
  const replicas = peers ? { self: () => self, peers: () => peers } : undefined;
  searchRoutes({ store, metrics, maxLimit: 100, replicas })(a);
  return { a, metrics };
}

test('an answer names the replica that gave it and its lag', async () => {
  const { a } = await app(fakeStore(false), [peerUrl], { node: 'vigil-1', lag_messages: 7 });
  const res = await a.inject({ url: '/api/v1/search?q=*' });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json().replica, { node: 'vigil-1', lag_messages: 7 });
  assert.equal(peerSaw.length, 0);
});

test('a replica failing mid-query: the search is retried on the next one, with the caller credentials', async () => {
  const { a, metrics } = await app(fakeStore(true), ['http://127.0.0.1:1', peerUrl]);
  const res = await a.inject({ url: '/api/v1/search?q=user.name:x', headers: { authorization: 'Bearer abc' } });
  assert.equal(res.statusCode, 200);
  assert.equal(res.json().replica.node, 'peer');
  assert.deepEqual(peerSaw.at(-1), {
    url: '/api/v1/search?q=user.name:x',
    authorization: 'Bearer abc',
    forwarded: '1',
  });
  const m = await metrics.getSingleMetric('vigil_search_forwarded_total')?.get();
  assert.equal(m?.values.find((v) => v.labels.outcome === 'answered')?.value, 1);
});

test('a forwarded search is never forwarded again; with no replica left the error stands', async () => {
  const { a } = await app(fakeStore(true), [peerUrl]);
  const before = peerSaw.length;
  const res = await a.inject({ url: '/api/v1/search?q=*', headers: { 'x-vigil-forwarded': '1' } });
  assert.equal(res.statusCode, 500);
  assert.equal(peerSaw.length, before);
  const none = await app(fakeStore(true), []);
  assert.equal((await none.a.inject({ url: '/api/v1/search?q=*' })).statusCode, 500);
});

test('a node without the store role forwards every search to a store node, never answering from its own', async () => {
  const before = peerSaw.length;
  const { a } = await app(undefined, [peerUrl]);
  const res = await a.inject({ url: '/api/v1/search?q=*', headers: { authorization: 'Bearer abc' } });
  assert.equal(res.statusCode, 200);
  assert.equal(res.json().replica.node, 'peer');
  assert.equal(peerSaw.length, before + 1);
  assert.equal(peerSaw.at(-1)?.forwarded, '1');
});

test('a node without the store role and no store node to ask answers 503 no_replica, not an empty result', async () => {
  for (const peers of [undefined, []]) {
    const { a } = await app(undefined, peers);
    const res = await a.inject({ url: '/api/v1/search?q=*' });
    assert.equal(res.statusCode, 503, `peers ${JSON.stringify(peers)}`);
    assert.equal(res.json().error, 'no_replica');
  }
  const before = peerSaw.length;
  const { a } = await app(undefined, [peerUrl]);
  const res = await a.inject({ url: '/api/v1/search?q=*', headers: { 'x-vigil-forwarded': '1' } });
  assert.equal(res.statusCode, 503, 'a forwarded search is not sent on again');
  assert.equal(peerSaw.length, before);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import type { JetStreamConnection, SourceLag } from '../bus/index.ts';
import { clusterConfigSchema } from '../cluster/config.ts';
import type { EtcdSession } from '../cluster/index.ts';
import { silentLogger } from '../lib/logger.ts';
import { createSite, initialRole, parsePeerAnswer, type SiteRecord } from './index.ts';

test('cluster.site and cluster.peer_site: set together, different; the first name starts active by default', () => {
  const parse = (v: object) => clusterConfigSchema.safeParse(v);
  assert.equal(parse({ site: 'a' }).success, false, 'site without peer_site');
  assert.equal(parse({ peer_site: 'b' }).success, false, 'peer_site without site');
  assert.equal(parse({ site: 'a', peer_site: 'a' }).success, false, 'a site is not its own peer');
  assert.equal(parse({ site: 'a.b', peer_site: 'c' }).success, false, 'a site name is a JetStream domain token');
  const a = clusterConfigSchema.parse({ site: 'a', peer_site: 'b' });
  const b = clusterConfigSchema.parse({ site: 'b', peer_site: 'a' });
  assert.equal(initialRole(a), 'active');
  assert.equal(initialRole(b), 'standby');
  assert.equal(initialRole({ ...b, site_role_at_start: 'active' }), 'active');
  assert.equal(initialRole({ ...a, site_role_at_start: 'standby' }), 'standby');
});

test('a peer answer is a site status (role active|standby, a safe integer epoch >= 0) or it is refused', () => {
  assert.deepEqual(parsePeerAnswer('{"site":"b","role":"active","epoch":3}'), { role: 'active', epoch: 3 });
  assert.deepEqual(parsePeerAnswer('{"role":"standby","epoch":0}'), { role: 'standby', epoch: 0 });
  for (const bad of [
    'not json',
    'null',
    '[]',
    '{"role":"leader","epoch":1}',
    '{"role":"active"}',
    '{"role":"active","epoch":-1}',
    '{"role":"active","epoch":1.5}',
    '{"role":"active","epoch":"7"}',
    `{"role":"active","epoch":${2 ** 60}}`,
  ]) {
    assert.throws(() => parsePeerAnswer(bad), { code: 'site_bad_peer_answer' }, bad);
  }
});

/** A site over an in-memory etcd and NATS: counts the record reads, captures the status responder. */
function fakeSite(
  /** The peer's answer; an Error: the request fails with it (the peer is unreachable). */
  peerAnswer: string | Error,
  start: SiteRecord = { site: 'a', role: 'active', epoch: 4, peer_epoch: 2, changed_at: '2026-01-01T00:00:00Z' },
  over: Record<string, unknown> = {},
  replication: () => Promise<SourceLag[]> = async () => [],
) {
  let stored = start;
  let revision = 1;
  let reads = 0;
  let readFailure: Error | undefined;
  let watch: { put(kv: { value: Buffer }): void } | undefined;
  type Responder = (err: Error | null, msg: { respond(text: string): void }) => void;
  let responder: Responder | undefined;
  const session = {
    async run(name: string, fn: (e: unknown) => unknown) {
      if (name === 'site_write') {
        // The compare-and-set of the record: if(key, 'Mod', '==', rev).then(put(key).value(v)).commit().
        let want = '';
        let value = '';
        const e = {
          if: (_k: string, _w: string, _op: string, rev: string) => {
            want = rev;
            return e;
          },
          // biome-ignore lint/suspicious/noThenProperty: etcd3's transaction builder names its branch then().
          then: () => e,
          put: () => ({
            value: (v: string) => {
              value = v;
            },
          }),
          commit: async () => {
            if (want !== String(revision)) return { succeeded: false };
            stored = JSON.parse(value);
            revision++;
            return { succeeded: true };
          },
        };
        return fn(e);
      }
      if (name !== 'site_read') throw new Error(`unexpected etcd call ${name}`);
      if (readFailure) throw readFailure;
      reads++;
      return { kvs: [{ value: Buffer.from(JSON.stringify(stored)), mod_revision: String(revision) }] };
    },
    watchPrefix(_key: string, handlers: { put(kv: { value: Buffer }): void }) {
      watch = handlers;
      return async () => {};
    },
  };
  const nc = {
    subscribe(subject: string, opts: { callback: Responder }) {
      if (subject.endsWith('.status')) responder = opts.callback;
      return { unsubscribe() {} };
    },
    async request() {
      if (peerAnswer instanceof Error) throw peerAnswer;
      return { string: () => peerAnswer };
    },
  };
  const connection = { ready: () => true, wait: async () => {}, clients: () => ({ nc }) };
  const site = createSite(clusterConfigSchema.parse({ site: 'a', peer_site: 'b', ...over }), {
    session: session as unknown as EtcdSession,
    connection: connection as unknown as JetStreamConnection,
    replication,
    metrics: new Registry(),
    logger: silentLogger,
  });
  return {
    site,
    reads: () => reads,
    stored: () => stored,
    /** etcd reads fail with `err` from now on (undefined: they work again). */
    failReads(err: Error | undefined) {
      readFailure = err;
    },
    change(next: SiteRecord) {
      stored = next;
      watch?.put({ value: Buffer.from(JSON.stringify(next)) });
    },
    async ask(): Promise<unknown> {
      for (let i = 0; !responder && i < 100; i++) await new Promise((r) => setTimeout(r, 5));
      return new Promise((resolve) => responder?.(null, { respond: (text) => resolve(JSON.parse(text)) }));
    },
  };
}

test('a peer that answers something other than a site status counts as unreachable, with an error', async () => {
  const f = fakeSite('{"role":"boss","epoch":"many"}');
  await f.site.start();
  const status = await f.site.status();
  await f.site.stop(Date.now() + 1000);
  assert.equal(status.peer.reachable, false);
  assert.equal(status.peer.role, undefined);
  assert.match(status.peer.error ?? '', /peer site b answered badly/);
});

test('etcd not answering, status shows the record last read and says so (the operator still sees the role)', async () => {
  const f = fakeSite('{"role":"standby","epoch":2}');
  await f.site.start();
  f.failReads(new Error('deadline exceeded'));
  const status = await f.site.status();
  f.failReads(undefined);
  const again = await f.site.status();
  await f.site.stop(Date.now() + 1000);
  assert.deepEqual([status.role, status.epoch], ['active', 4]);
  assert.match(status.error ?? '', /could not be read again \(deadline exceeded\): the last one read is shown/);
  assert.equal(again.error, undefined);
});

test('cut off from its peer, a site says the lag in events is unknown and the time since it last heard', async () => {
  // What the server reports through a partition: the lag of the last contact (0), the silence growing.
  const source: SourceLag = {
    name: 'VIGIL_EVENTS',
    domain: 'b',
    lag: 0,
    activeAgoMs: 25000,
    lastReceived: { seq: 7, time: Date.parse('2026-12-06T11:00:00Z') },
  };
  const standby: SiteRecord = {
    site: 'a',
    role: 'standby',
    epoch: 1,
    peer_epoch: 1,
    changed_at: '2026-01-01T00:00:00Z',
  };
  const cut = fakeSite(new Error("no responders: 'vigil.dr.b.status'"), standby, {}, async () => [source]);
  await cut.site.start();
  const plan = await cut.site.activate({ confirm: false });
  await cut.site.stop(Date.now() + 1000);
  assert.equal(plan.peer.reachable, false);
  assert.equal(plan.refused, undefined);
  assert.deepEqual(plan.data_at_risk, {
    lag_events: null,
    lag_seconds: 25,
    last_received: { seq: 7, at: '2026-12-06T11:00:00.000Z' },
  });
  // Reachable, the same source is caught up: nothing at risk.
  const linked = fakeSite('{"role":"standby","epoch":2}', undefined, {}, async () => [source]);
  await linked.site.start();
  const status = await linked.site.status();
  await linked.site.stop(Date.now() + 1000);
  assert.deepEqual([status.peer.lag_events, status.peer.lag_seconds], [0, 0]);
});

test("the peer's status requests are answered from the watched record, without an etcd read each", async () => {
  const f = fakeSite('{"role":"standby","epoch":2}');
  await f.site.start();
  // The start check asks the peer once (and reads the record to compare epochs) in the background.
  await new Promise((r) => setTimeout(r, 100));
  const readsAtStart = f.reads();
  const answer = { site: 'a', role: 'active', epoch: 4, lag_events: null };
  for (let i = 0; i < 20; i++) assert.deepEqual(await f.ask(), answer);
  assert.equal(f.reads(), readsAtStart, 'no etcd read per request');
  // A change seen by the watch is what the next answer says.
  f.change({ site: 'a', role: 'standby', epoch: 4, peer_epoch: 2, changed_at: '2026-01-02T00:00:00Z' });
  assert.deepEqual(await f.ask(), { ...answer, role: 'standby' });
  assert.equal(f.reads(), readsAtStart);
  await f.site.stop(Date.now() + 1000);
});

test('a site recorded active that hears a greater epoch from its peer at start comes back standby, never active', async () => {
  const f = fakeSite('{"role":"active","epoch":5}', {
    site: 'a',
    role: 'active',
    epoch: 3,
    peer_epoch: 2,
    changed_at: '2026-01-01T00:00:00Z',
  });
  const told: string[] = [];
  f.site.onRole((r) => told.push(r));
  await f.site.start();
  assert.equal(f.site.role(), 'standby', 'not active while the start check runs');
  for (let i = 0; i < 100 && told.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  await f.site.stop(Date.now() + 1000);
  assert.deepEqual(told, ['standby'], 'the listeners (detection, notify) never heard active');
  assert.deepEqual([f.stored().role, f.stored().epoch, f.stored().peer_epoch], ['standby', 3, 5]);
  assert.equal(f.site.highestEpoch(), 5);
});

test('a site recorded active whose peer is behind (lower epoch) or silent runs active', async () => {
  const behind = fakeSite('{"role":"standby","epoch":2}');
  const told: string[] = [];
  behind.site.onRole((r) => told.push(r));
  await behind.site.start();
  for (let i = 0; i < 100 && told.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  await behind.site.stop(Date.now() + 1000);
  assert.deepEqual(told, ['active']);
  assert.equal(behind.stored().role, 'active');

  // A peer that never answers: the site waits start_peer_wait_ms, then follows its record.
  const silent = fakeSite('not an answer', undefined, { start_peer_wait_ms: 300 });
  const heard: string[] = [];
  silent.site.onRole((r) => heard.push(r));
  const t0 = Date.now();
  await silent.site.start();
  for (let i = 0; i < 300 && heard.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  await silent.site.stop(Date.now() + 1000);
  assert.deepEqual(heard, ['active']);
  assert.ok(Date.now() - t0 >= 300, 'it waited for the peer first');
});

test('a failback whose outputs position cannot be read is refused with the reason, never taken as caught up', async () => {
  const f = fakeSite(
    '{"role":"active","epoch":5}',
    {
      site: 'a',
      role: 'standby',
      epoch: 4,
      peer_epoch: 5,
      changed_at: '2026-01-01T00:00:00Z',
    },
    {},
    async () => [{ name: 'events-b', domain: 'b', lag: 0, activeAgoMs: 10 }],
  );
  f.site.trackOutputs(async () => {
    throw new Error('outputs consumer info timed out');
  });
  await f.site.start();
  try {
    const plan = await f.site.failback({ confirm: true });
    assert.equal(plan.changed, false);
    assert.match(
      plan.refused ?? '',
      /cannot tell whether it applied its peer's outputs: outputs consumer info timed out/,
    );
    assert.equal(f.stored().role, 'standby');
  } finally {
    await f.site.stop(Date.now() + 1000);
  }
});

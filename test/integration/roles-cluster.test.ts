/**
 * Roles on a cluster: a node that runs only `api` holds no events (no local engine is opened), and its
 * searches are answered by a store node of the cluster, with the caller's credentials.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { startDevCluster, type TestDevCluster } from '../harness/dev-cluster.ts';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

describe('an api node on a cluster', { timeout: 180000 }, () => {
  let dc: TestDevCluster;
  let api: VigilNode;

  before(async () => {
    dc = await startDevCluster({ nodes: 1 });
    // The api node joins the same etcd and NATS with vigil-1's settings, but its own roles, id and address.
    const config = parse(readFileSync(dc.member('vigil-1').files.config!, 'utf8'));
    config.roles = ['api'];
    config.cluster.node_id = 'api-1';
    delete config.cluster.advertise_addr;
    delete config.data_dir;
    delete config.http;
    delete config.syslog;
    const file = `${dc.dir}/api-1.yml`;
    writeFileSync(file, stringify(config));
    api = await startVigil({ env: { VIGIL_CONFIG: file, VIGIL_ADMIN_TOKEN: dc.token } });
  });

  after(async () => {
    await api?.close();
    await dc?.down({ hard: true });
  });

  const search = async (url: string, q: string) => {
    const res = await fetch(`${url}/api/v1/search?q=${encodeURIComponent(q)}&from=now-1h`, {
      headers: { authorization: `Bearer ${dc.token}` },
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  test('its searches are answered by a store node, never by an empty local engine', async () => {
    const store = dc.nodes[0].url;
    const marker = `roles-${Date.now()}`;
    const res = await fetch(`${store}/api/v1/ingest`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dc.token}`, 'content-type': 'application/x-ndjson' },
      body: [1, 2, 3].map((i) => JSON.stringify({ message: `${marker} ${i}`, marker })).join('\n'),
    });
    assert.equal(res.status, 200, await res.text());
    const deadline = Date.now() + 30000;
    for (;;) {
      const local = await search(store, `marker:${marker}`);
      if (local.status === 200 && local.body.total === 3) break;
      assert.ok(Date.now() < deadline, `stored on vigil-1 within 30 s: ${JSON.stringify(local.body)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const answer = await search(api.url, `marker:${marker}`);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.total, 3);
    assert.equal(answer.body.replica?.node, 'vigil-1', 'answered by the store node');
    assert.ok(!readdirSync(api.dataDir).includes('events'), 'the api node opened no event engine');
  });
});

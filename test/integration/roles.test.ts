import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { freePort } from '../harness/ports.ts';
import { startVigil } from '../harness/vigil.ts';

const BIN = resolve(import.meta.dirname, '../../bin/vigil');

/** Runs `vigil start` and waits (at most `ms`, generous: a loaded CI machine took over 15 s to load the CLI) for it to exit; a node still running after that is killed. */
async function start(env: Record<string, string>, ms = 60_000) {
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-roles-'));
  const proc = spawn(BIN, ['start'], {
    env: {
      ...process.env,
      VIGIL_DATA_DIR: dataDir,
      VIGIL_HTTP_ADDR: `127.0.0.1:${await freePort()}`,
      VIGIL_SYSLOG_PORT: String(await freePort()),
      VIGIL_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const timer = setTimeout(() => proc.kill('SIGKILL'), ms);
  const code = await new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  clearTimeout(timer);
  const files = readdirSync(dataDir);
  rmSync(dataDir, { recursive: true, force: true });
  return { code, out, files };
}

test('ingest without store on the in-process bus is refused at start, naming the roles and the bus', async () => {
  for (const roles of ['ingest', 'ingest,detect', 'ingest,api']) {
    const { code, out, files } = await start({ VIGIL_ROLES: roles });
    assert.equal(code, 1, `roles ${roles} exit non-zero (a running node is killed: null)\n${out}`);
    assert.match(
      out,
      new RegExp(`roles \\[${roles.replace(',', ', ')}\\] on the in-process bus \\(bus.kind: memory\\)`),
    );
    assert.match(out, /acknowledged to senders and then dropped/);
    assert.deepEqual(files, [], 'nothing is written to the data folder (no admin token generated)');
  }
});

test('an api node without the store role answers a search 503 no_replica, not an empty result', async () => {
  const node = await startVigil({ env: { VIGIL_ROLES: 'api' } });
  try {
    const res = await node.get('/api/v1/search?q=*');
    assert.equal(res.status, 503, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'no_replica');
    assert.ok(!readdirSync(node.dataDir).includes('events'), 'no local event engine was opened');
  } finally {
    await node.close();
  }
});

test('cluster.site is refused at start without cluster mode or without the JetStream bus', async () => {
  const site = { VIGIL_CLUSTER__SITE: 'a', VIGIL_CLUSTER__PEER_SITE: 'b' };
  const noCluster = await start(site);
  assert.equal(noCluster.code, 1, noCluster.out);
  assert.match(noCluster.out, /cluster\.site needs cluster mode/);
  const memoryBus = await start({ ...site, VIGIL_CLUSTER__ENABLED: 'true' });
  assert.equal(memoryBus.code, 1, memoryBus.out);
  assert.match(memoryBus.out, /cluster\.site needs bus\.kind: jetstream/);
});

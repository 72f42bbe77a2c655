import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { test } from 'node:test';
import { freePort } from '../harness/ports.ts';
import { startVigil } from '../harness/vigil.ts';

test('SIGTERM stops intake, commits what it acknowledged, and exits 0', async () => {
  const node = await startVigil();
  const run = `stop${Date.now()}`;
  const acked: number[] = [];
  let seq = 0;
  const client = async () => {
    for (;;) {
      const first = seq;
      seq += 300;
      const body = Array.from({ length: 300 }, (_, i) =>
        JSON.stringify({ message: run, 'test.run': run, 'test.seq': first + i }),
      ).join('\n');
      try {
        const res = await fetch(`${node.url}/api/v1/ingest`, {
          method: 'POST',
          headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/x-ndjson' },
          body,
        });
        if (res.status !== 200) return;
        for (let i = first; i < first + 300; i++) acked.push(i);
      } catch {
        return;
      }
    }
  };
  const clients = [client(), client(), client()];
  while (acked.length < 6000) await new Promise((r) => setTimeout(r, 20));
  const code = await node.kill('SIGTERM');
  await Promise.all(clients);
  assert.equal(code, 0, node.output());
  await node.restart();
  const res = await node.get(
    `/api/v1/search?q=${encodeURIComponent(`test.run:${run} | stats count() by test.seq`)}&from=now-1h&limit=10000`,
  );
  const stored = new Map<number, number>(res.body.rows.map((r: [string, number]) => [Number(r[0]), r[1]]));
  const lost = acked.filter((s) => !stored.has(s));
  console.log(JSON.stringify({ acknowledged: acked.length, stored: stored.size, lost: lost.length }));
  assert.equal(lost.length, 0);
  assert.ok([...stored.values()].every((c) => c === 1));
  await node.close();
});

test('syslog over TLS is received when a certificate is configured', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-tls-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      '/CN=localhost',
      '-days',
      '1',
      '-keyout',
      join(dir, 'k.pem'),
      '-out',
      join(dir, 'c.pem'),
    ],
    { stdio: 'ignore' },
  );
  const tlsPort = await freePort();
  const config = join(dir, 'vigil.yml');
  writeFileSync(
    config,
    `syslog:\n  tls_port: ${tlsPort}\n  tls_cert_file: ${join(dir, 'c.pem')}\n  tls_key_file: ${join(dir, 'k.pem')}\n`,
  );
  const node = await startVigil({ env: { VIGIL_CONFIG: config } });
  try {
    await new Promise<void>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: tlsPort, rejectUnauthorized: false }, () => {
        // Stamped relative to now: a fixed date falls out of the now-7d window a week later.
        const at = new Date(Date.now() - 3_600_000).toISOString();
        s.end(`<38>1 ${at} tls-host app - - - tls-marker over tls\n`);
      });
      s.on('error', reject);
      s.on('close', () => resolve());
    });
    const deadline = Date.now() + 10000;
    let total = 0;
    while (total === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      total = (await node.get(`/api/v1/search?q=tls-marker&from=now-7d`)).body.total;
    }
    assert.equal(total, 1);
    const found = await node.get(`/api/v1/search?q=tls-marker&from=now-7d`);
    assert.equal(found.body.events[0]['input.type'], 'syslog-tls');
  } finally {
    await node.close();
  }
});

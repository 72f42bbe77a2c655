import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { checkHaproxyConfig } from '../../test/harness/haproxy.ts';
import { balancerConfig, HAPROXY_CHECK, HAPROXY_DOC_EXAMPLE, renderHaproxyConfig } from './haproxy.ts';
import { planDevCluster } from './plan.ts';
import { planSites } from './sites.ts';

const BINARIES = { 'nats-server': '/usr/sbin/nats-server', etcd: '/usr/bin/etcd', haproxy: '/usr/sbin/haproxy' };
const GUIDE = resolve(import.meta.dirname, '../../docs/deployment.md');
const MARKER = '<!-- haproxy-example: the output of renderHaproxyConfig(HAPROXY_DOC_EXAMPLE) -->';

/** The fenced block right after the marker in docs/deployment.md. */
function guideBlock(): string {
  const text = readFileSync(GUIDE, 'utf8');
  const at = text.indexOf(MARKER);
  assert.ok(at >= 0, `docs/deployment.md has no ${MARKER}`);
  const m = /^```haproxy\n([\s\S]*?)^```$/m.exec(text.slice(at + MARKER.length));
  assert.ok(m, 'a ```haproxy block follows the marker');
  return m[1];
}

test("the deployment guide's HAProxy example is the template's output, and haproxy -c accepts it", () => {
  const config = renderHaproxyConfig(HAPROXY_DOC_EXAMPLE);
  assert.equal(
    guideBlock(),
    config,
    'the block in docs/deployment.md differs from the template: replace it with the output of ' +
      `node --import tsx -e "import('./src/devcluster/haproxy.ts').then((m) => process.stdout.write(m.renderHaproxyConfig(m.HAPROXY_DOC_EXAMPLE)))"`,
  );
  const check = checkHaproxyConfig(config);
  assert.ok(check.ok, check.output);
  assert.match(check.output, /Configuration file is valid/);
});

test('health checks take a dead or draining node out within 2 s', () => {
  const c = HAPROXY_CHECK;
  // A 503 or a refused connection: seen at the next check, confirmed at the next fast one.
  const answered = c.inter_ms + (c.fall - 1) * c.fastinter_ms;
  // A vanished host: each check waits out the connect timeout, min(timeout connect 2 s, inter).
  const connectMs = Math.min(2000, c.inter_ms);
  const vanished = c.inter_ms + connectMs + (c.fall - 1) * (c.fastinter_ms + connectMs);
  assert.ok(answered <= 2000 && vanished <= 2000, `${answered} ms, ${vanished} ms`);
  const config = renderHaproxyConfig(HAPROXY_DOC_EXAMPLE);
  assert.match(config, /timeout connect 2s\n/);
  assert.match(config, new RegExp(`timeout check ${c.timeout_check_ms / 1000}s\\n`));
  assert.match(
    config,
    new RegExp(`default-server inter ${c.inter_ms}ms fastinter ${c.fastinter_ms}ms .*fall ${c.fall} rise ${c.rise}\n`),
  );
  assert.match(config, /option httpchk GET \/health\/ready/);
});

test('a dev cluster with lb: haproxy-1 in front of every node for HTTP, syslog TCP and RELP; a valid config', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-plan-lb-'));
  try {
    const plan = await planDevCluster({ dir, nodes: 3, lb: true }, BINARIES);
    const lb = plan.state.members.at(-1)!;
    assert.equal(lb.kind, 'haproxy');
    assert.equal(lb.name, 'haproxy-1');
    assert.equal(lb.command, BINARIES.haproxy);
    assert.deepEqual(lb.args, ['-W', '-f', lb.files.config, '-db'], 'master-worker: reloaded by SIGUSR2 to its PID');
    assert.match(lb.addresses.http, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(lb.ready_url, /^http:\/\/127\.0\.0\.1:\d+\/ready$/);
    const config = plan.files.find((f) => f.path === lb.files.config)!.content;
    const port = (url: string) => new URL(url.includes('://') ? url : `tcp://${url.split(' ')[0]}`).port;
    assert.match(config, new RegExp(`bind 127\\.0\\.0\\.1:${port(lb.addresses.http)}\\n`));
    assert.match(config, new RegExp(`bind 127\\.0\\.0\\.1:${port(lb.addresses.relp)}\\n`));
    for (const node of plan.state.members.filter((m) => m.kind === 'vigil')) {
      const yml = parse(plan.files.find((f) => f.path === node.files.config)!.content);
      assert.ok(yml.syslog.relp_port > 0, `${node.name} listens for RELP`);
      assert.equal(`127.0.0.1:${yml.syslog.relp_port}`, node.addresses.relp);
      assert.ok(config.includes(`server ${node.name} ${yml.http.addr} check\n`));
      // Streams to a node marked down are cut, so that senders reconnect to another node.
      for (const p of [yml.syslog.tcp_port, yml.syslog.relp_port]) {
        const line = `server ${node.name} 127.0.0.1:${p} track vigil_http/${node.name} on-marked-down shutdown-sessions\n`;
        assert.ok(config.includes(line), line);
      }
    }
    const check = checkHaproxyConfig(config);
    assert.ok(check.ok, check.output);

    assert.match(config, /timeout check 1s\n/);
    const relaxed = await planDevCluster({ dir, nodes: 1, lb: true, lbCheck: { timeout_check_ms: 8000 } }, BINARIES);
    const relaxedConfig = relaxed.files.find((f) => f.path.endsWith('haproxy.cfg'))!.content;
    assert.match(relaxedConfig, /timeout check 8s\n/);
    assert.match(relaxedConfig, /default-server inter 500ms fastinter 250ms/, 'only the timeout changes');

    const without = await planDevCluster({ dir, nodes: 1 }, BINARIES);
    assert.ok(!without.state.members.some((m) => m.kind === 'haproxy'), 'no balancer unless asked');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('two sites with lb: each site its own balancer (a-haproxy-1, b-haproxy-1) in front of its own nodes only', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-plan-sites-lb-'));
  try {
    const plan = await planSites({ dir, nodes: 2, sites: 2, lb: true }, BINARIES);
    for (const site of ['a', 'b']) {
      const lbs = plan.state.members.filter((m) => m.kind === 'haproxy' && m.site === site);
      assert.deepEqual(
        lbs.map((m) => m.name),
        [`${site}-haproxy-1`],
      );
      const config = plan.files.find((f) => f.path === lbs[0].files.config)!.content;
      const servers = [...config.matchAll(/^ {2}server (\S+) (\S+) check$/gm)].map((m) => m[2]).sort();
      const own = plan.state.members
        .filter((m) => m.kind === 'vigil' && m.site === site)
        .map((m) => m.addresses.http.replace('http://', ''))
        .sort();
      assert.deepEqual(servers, own, `site ${site}'s balancer sends HTTP to its own nodes only`);
      const names = [...config.matchAll(/^ {2}server (\S+) (\S+) check$/gm)].map((m) => m[1]).sort();
      assert.deepEqual(names, [`${site}-vigil-1`, `${site}-vigil-2`], 'under the names status gives them');
      assert.equal(
        config,
        balancerConfig(lbs[0], plan.state.members),
        'what add renders: no reload until a node joins',
      );
      const check = checkHaproxyConfig(config);
      assert.ok(check.ok, check.output);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { startDevCluster, type TestDevCluster } from '../harness/dev-cluster.ts';
import { buildConsole, CHROMIUM, launchBrowser, NO_CHROMIUM, SHOTS, until } from './browser.ts';

/**
 * The Cluster view in Chromium against a real dev cluster (3 nats-server, 3 etcd, 2 Vigil nodes on
 * loopback, every process stopped by PID at the end): an admin drains the node serving the console after a
 * confirmation and it rejoins; a viewer gets the server's refusal of the cluster API. Bounded: the suite
 * gives up after two minutes.
 */

const PASSWORD = 'correct horse battery staple';

interface NodeView {
  id: string;
  maintenance: string;
  partitions: number[];
}

describe('console: cluster view on a dev cluster', { timeout: 120000 }, () => {
  let cluster: TestDevCluster;
  let browser: Awaited<ReturnType<typeof launchBrowser>>;
  let page: Page;
  let url: string;
  const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
  /** The nodes as vigil-2 (the node that is not drained) sees them. */
  const nodesSeenBy2 = async () =>
    (await cluster.api('vigil-2', 'GET', '/admin/cluster/nodes')).body.nodes as NodeView[];
  const state = () => page.getByTestId('maintenance-state');

  before(async () => {
    assert.ok(existsSync(CHROMIUM), NO_CHROMIUM);
    await buildConsole();
    mkdirSync(SHOTS, { recursive: true });
    cluster = await startDevCluster({ nodes: 2, readyTimeoutMs: 60000 });
    url = cluster.nodes.find((n) => n.name === 'vigil-1')!.url;
    const created = await cluster.api(
      'vigil-1',
      'POST',
      '/api/v1/users',
      JSON.stringify({ username: 'vera', password: PASSWORD, role: 'viewer' }),
    );
    assert.equal(created.status, 201, JSON.stringify(created.body));
    // A drained node answers /health/ready with 503; the view shows that itself.
    browser = await launchBrowser({ expectFailedLoads: /\/health\/ready$/ });
    page = browser.page;
  });

  after(async () => {
    await browser?.close();
    await cluster?.down({ hard: true });
  });

  test('an admin sees both nodes, drains the node serving the console after confirming, and it rejoins', async () => {
    await page.goto(`${url}/ui/cluster`);
    await page.getByRole('radio', { name: 'Token' }).check();
    await page.getByLabel('API token').fill(cluster.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Maintenance mode of vigil-1' }).waitFor();
    const nodes = page.getByRole('table', { name: 'Nodes' });
    await nodes.getByRole('cell', { name: 'vigil-1', exact: true }).waitFor();
    await nodes.getByRole('cell', { name: 'vigil-2', exact: true }).waitFor();
    assert.match(String(await nodes.locator('tr[aria-current="true"]').textContent()), /^vigil-1/);
    await until('the active state', async () => /^Active/.test((await state().textContent()) ?? ''));

    await page.getByRole('button', { name: 'Enable maintenance…' }).click();
    const confirm = page.getByRole('dialog', { name: 'Enable maintenance mode?' });
    await confirm.getByText('Node vigil-1 will stop taking new work').waitFor();
    await shot('20-cluster-confirm-drain');
    // Asking is not doing: nothing changed before the confirmation.
    assert.equal((await nodesSeenBy2()).find((n) => n.id === 'vigil-1')?.maintenance, 'active');
    await confirm.getByRole('button', { name: 'Enable maintenance' }).click();
    await page.getByText(/^Maintenance enabled: the node is (draining|drained)\.$/).waitFor();

    await until('the drain, in the view', async () => /^Drained/.test((await state().textContent()) ?? ''), 30000);
    const drained = await until(
      'vigil-2 to own every partition',
      async () => {
        const all = await nodesSeenBy2();
        const one = all.find((n) => n.id === 'vigil-1');
        const two = all.find((n) => n.id === 'vigil-2');
        return one?.maintenance === 'drained' && one.partitions.length === 0 && two?.partitions.length === 16 && all;
      },
      30000,
    );
    assert.equal(drained.length, 2);
    // The view refreshes by itself: the node's row and its health say it is drained.
    await nodes.locator('tr[aria-current="true"]').filter({ hasText: 'drained' }).waitFor({ timeout: 12000 });
    await page.getByRole('cell', { name: 'maintenance: drained' }).waitFor({ timeout: 12000 });
    await shot('21-cluster-drained');

    await page.getByRole('button', { name: 'Disable maintenance…' }).click();
    const rejoin = page.getByRole('dialog', { name: 'Disable maintenance mode?' });
    await rejoin.getByText('Node vigil-1 will take work and partitions again.').waitFor();
    await rejoin.getByRole('button', { name: 'Disable maintenance' }).click();
    await page.getByText('Maintenance disabled: the node rejoined the cluster.').waitFor();
    await until('the active state again', async () => /^Active/.test((await state().textContent()) ?? ''));
    await until(
      'vigil-1 to own partitions again',
      async () => {
        const one = (await nodesSeenBy2()).find((n) => n.id === 'vigil-1');
        return one?.maintenance === 'active' && one.partitions.length > 0;
      },
      30000,
    );
    await page.getByRole('button', { name: 'Enable maintenance…' }).waitFor();
    await shot('22-cluster-rejoined');
  });

  test('a viewer signed in with a password gets the server refusal of the cluster API, and no action', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Username', { exact: true }).fill('vera');
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('whoami').filter({ hasText: 'vera' }).waitFor();
    const refused = page.getByRole('alert').filter({ hasText: 'Cluster status is for administrators' });
    await refused.waitFor();
    const text = String(await refused.textContent());
    assert.match(text, /the cluster admin API needs the global admin/);
    assert.match(text, /you are signed in as vera \(viewer\)/);
    await page.getByRole('heading', { name: 'This node' }).waitFor();
    assert.equal(await page.getByRole('button', { name: /maintenance/i }).count(), 0);
    assert.equal(await page.getByRole('table', { name: 'Nodes' }).count(), 0);
    await shot('23-cluster-viewer-refused');
  });

  test('no script errors and no unexpected failed loads along the way', () => {
    assert.deepEqual(browser.problems, []);
  });
});

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

/**
 * What the console's end-to-end suites share: Debian's Chromium and its flags, a build of the console as
 * it is in the tree (made once even when suites run in parallel), and a polling wait.
 */

const ROOT = resolve(import.meta.dirname, '../..');
export const WEB = join(ROOT, 'web');
/** Screenshots of every view, for a person to look at (gitignored: test/e2e/.gitignore). */
export const SHOTS = join(import.meta.dirname, 'screenshots');
export const CHROMIUM = process.env.VIGIL_E2E_CHROMIUM ?? '/usr/bin/chromium';
/** Flags that keep Chromium off the network (closed here) and quiet. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

export const NO_CHROMIUM = `Chromium is missing at ${CHROMIUM}: install it (apt-get install -y chromium) to run the console tests`;

/** The newest modification time of the files under `dir` (recursively), in ms. */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

function distIsFresh(): boolean {
  const built = join(WEB, 'dist', 'index.html');
  if (!existsSync(built)) return false;
  const sources = Math.max(
    newest(join(WEB, 'src')),
    ...['index.html', 'vite.config.ts', 'package.json', 'package-lock.json'].map((f) => statSync(join(WEB, f)).mtimeMs),
  );
  return statSync(built).mtimeMs > sources;
}

/**
 * Builds web/dist unless it is newer than every source. Suites in other processes take turns through a
 * lock folder, so one does not empty dist while another's server reads it.
 */
export async function buildConsole(): Promise<void> {
  if (!existsSync(join(WEB, 'node_modules'))) {
    throw new Error('the console dependencies are missing: run npm --prefix web ci (npm run build:web does it)');
  }
  const lock = join(tmpdir(), `vigil-console-build-${Buffer.from(WEB).toString('hex').slice(-32)}.lock`);
  const deadline = Date.now() + 180000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock older than any build is left by a killed run.
      const held = statSync(lock, { throwIfNoEntry: false });
      if (held && Date.now() - held.mtimeMs > 300000) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`the console build lock ${lock} was held for 3 minutes`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    if (!distIsFresh()) execFileSync('npm', ['--prefix', WEB, 'run', 'build'], { stdio: 'pipe' });
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/**
 * A Chromium with its own throwaway profile; `problems` collects script errors and console errors.
 * `expectFailedLoads` names URLs whose 5xx answers a test provokes (a drained node's /health/ready).
 */
export async function launchBrowser(
  opts: { colorScheme?: 'light' | 'dark'; expectFailedLoads?: RegExp } = {},
): Promise<{
  context: BrowserContext;
  page: Page;
  problems: string[];
  close(): Promise<void>;
}> {
  const profile = mkdtempSync(join(tmpdir(), 'vigil-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    viewport: { width: 1400, height: 900 },
    colorScheme: opts.colorScheme ?? 'light',
    acceptDownloads: true,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(10000);
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // Refusals the tests provoke (a wrong token, a bad query, a role's 403, endpoints a node lacks) are
    // logged by the browser as failed loads; the console shows each of them itself.
    if (m.type() !== 'error') return;
    if (/Failed to load resource: .*status of 4\d\d/.test(m.text())) return;
    if (opts.expectFailedLoads?.test(m.location().url) && /Failed to load resource/.test(m.text())) return;
    problems.push(`console: ${m.text()}`);
  });
  return {
    context,
    page,
    problems,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Polls `check` every 100 ms until it answers something truthy, or fails naming `what`. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false>, ms = 10000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { consoleRoutes, isConsolePath } from '../../src/api/routes/console.ts';

/** The console route on its own Fastify, over a fake build: no Vigil node and no browser needed. */
describe('console route', () => {
  let dist: string;
  let app: FastifyInstance;
  let missing: FastifyInstance;
  const INDEX = '<!doctype html><title>Vigil</title><script type="module" src="/assets/index-abc123.js"></script>';
  const JS = 'console.log("vigil");'.repeat(50);

  before(async () => {
    dist = mkdtempSync(join(tmpdir(), 'vigil-console-'));
    mkdirSync(join(dist, 'assets'));
    writeFileSync(join(dist, 'index.html'), INDEX);
    writeFileSync(join(dist, 'assets', 'index-abc123.js'), JS);
    writeFileSync(join(dist, 'assets', 'index-abc123.js.gz'), gzipSync(JS));
    writeFileSync(join(dist, 'assets', 'index-abc123.css'), 'body{}');
    writeFileSync(join(dist, 'secret.txt'), 'not an asset');
    app = Fastify();
    consoleRoutes({ distDir: dist })(app);
    missing = Fastify();
    consoleRoutes({ distDir: join(dist, 'nothing-here') })(missing);
  });
  after(async () => {
    await app.close();
    await missing.close();
    rmSync(dist, { recursive: true, force: true });
  });

  test('index.html is served at /, /ui and every /ui/* path, never cached, with a strict CSP', async () => {
    for (const url of ['/', '/ui', '/ui/search?q=a', '/ui/alerts/123']) {
      const res = await app.inject({ url });
      assert.equal(res.statusCode, 200, url);
      assert.equal(res.body, INDEX);
      assert.match(String(res.headers['content-type']), /^text\/html/);
      assert.equal(res.headers['cache-control'], 'no-cache');
      assert.match(String(res.headers['content-security-policy']), /script-src 'self'/);
      assert.equal(res.headers['x-frame-options'], 'DENY');
    }
  });

  test('hashed assets are cached for a year, with their type, and gzip when the client takes it', async () => {
    const plain = await app.inject({ url: '/assets/index-abc123.js' });
    assert.equal(plain.statusCode, 200);
    assert.equal(plain.body, JS);
    assert.match(String(plain.headers['content-type']), /^text\/javascript/);
    assert.equal(plain.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.equal(plain.headers['content-encoding'], undefined);

    const gz = await app.inject({ url: '/assets/index-abc123.js', headers: { 'accept-encoding': 'gzip, br' } });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal(gz.headers.vary, 'Accept-Encoding');
    assert.ok(gz.rawPayload.length < JS.length);

    // No .gz beside it: the plain file, even to a client that takes gzip.
    const css = await app.inject({ url: '/assets/index-abc123.css', headers: { 'accept-encoding': 'gzip' } });
    assert.equal(css.headers['content-encoding'], undefined);
    assert.match(String(css.headers['content-type']), /^text\/css/);
  });

  test('nothing outside assets/ is reachable and unknown assets are 404', async () => {
    for (const url of [
      '/assets/../secret.txt',
      '/assets/%2e%2e/secret.txt',
      '/assets/..%2fsecret.txt',
      '/assets/nope.js',
    ]) {
      const res = await app.inject({ url });
      assert.equal(res.statusCode, 404, url);
      assert.doesNotMatch(res.body, /not an asset/);
    }
  });

  test('without a build, the console answers 503 with what to run', async () => {
    const res = await missing.inject({ url: '/ui/search' });
    assert.equal(res.statusCode, 503);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    assert.match(res.body, /npm run build:web/);
    assert.equal((await missing.inject({ url: '/assets/index-abc123.js' })).statusCode, 404);
  });

  test('the console paths are the ones served without a token', () => {
    for (const p of ['/', '/ui', '/ui/alerts/1', '/assets/index-abc123.js']) assert.equal(isConsolePath(p), true, p);
    for (const p of ['/api/v1/search', '/uix', '/metrics', '/assetsx', '/health/ready']) {
      assert.equal(isConsolePath(p), false, p);
    }
  });
});

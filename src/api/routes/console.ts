import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import type { FastifyReply } from 'fastify';
import type { RouteGroup } from '../server.ts';

/** Where `npm run build:web` writes the console: web/dist at the root of the checkout. */
export const DEFAULT_CONSOLE_DIST = resolve(import.meta.dirname, '../../../web/dist');

/**
 * Paths of the console, served without a token: the SPA signs in itself and sends the token on every
 * API call. Only static files are behind them.
 */
export function isConsolePath(path: string): boolean {
  return path === '/' || path === '/ui' || path.startsWith('/ui/') || path.startsWith('/assets/');
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * The console's page: scripts and styles only from this server, no inline script, no framing. React sets
 * styles through the CSSOM, which `style-src 'self'` allows.
 */
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Vigil console not built</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1b1f27}
code{background:#eef0f3;padding:.1em .3em;border-radius:3px}
@media (prefers-color-scheme:dark){body{background:#0f1216;color:#e7eaf0}code{background:#20262e}}</style></head>
<body><h1>The Vigil console is not built</h1>
<p>This server has no built console to serve. From the Vigil checkout, run:</p>
<p><code>npm run build:web</code></p>
<p>then reload this page. The HTTP API works without the console (see the README).</p></body></html>
`;

/** Options of the console routes. */
export interface ConsoleOptions {
  /** The Vite build output: index.html and assets/ (default DEFAULT_CONSOLE_DIST). */
  distDir?: string;
}

/**
 * The web console: `index.html` at `/`, `/ui` and every `/ui/*` path (the SPA routes in the browser),
 * hashed files at `/assets/*` cached for a year (their names change with their content), and a 503
 * page that says how to build it when the build is missing. The build is looked up per request, so a
 * build made after the server started is served without a restart.
 */
export function consoleRoutes(opts: ConsoleOptions = {}): RouteGroup {
  const distDir = resolve(opts.distDir ?? DEFAULT_CONSOLE_DIST);
  const assetsDir = join(distDir, 'assets');

  const sendIndex = async (reply: FastifyReply) => {
    let html: string;
    try {
      html = await readFile(join(distDir, 'index.html'), 'utf8');
    } catch {
      return reply
        .status(503)
        .header('Content-Type', 'text/html; charset=utf-8')
        .header('Cache-Control', 'no-store')
        .send(NOT_BUILT);
    }
    return reply
      .header('Content-Type', 'text/html; charset=utf-8')
      .header('Cache-Control', 'no-cache')
      .header('Content-Security-Policy', CSP)
      .header('X-Content-Type-Options', 'nosniff')
      .header('Referrer-Policy', 'no-referrer')
      .header('X-Frame-Options', 'DENY')
      .send(html);
  };

  return (app) => {
    app.get('/', (_req, reply) => sendIndex(reply));
    app.get('/ui', (_req, reply) => sendIndex(reply));
    app.get('/ui/*', (_req, reply) => sendIndex(reply));
    app.get<{ Params: { '*': string } }>('/assets/*', async (req, reply) => {
      const name = req.params['*'];
      const file = resolve(assetsDir, name);
      // Vite writes flat, hashed names; anything else (.., absolute paths, odd characters) is not ours.
      const safe = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(name) && file.startsWith(assetsDir + sep);
      const info = safe ? await stat(file).catch(() => null) : null;
      if (!info?.isFile()) {
        return reply.status(404).send({ error: { code: 'not_found', message: `no console asset ${name}` } });
      }
      reply
        .header('Content-Type', TYPES[extname(file)] ?? 'application/octet-stream')
        .header('Cache-Control', 'public, max-age=31536000, immutable')
        .header('X-Content-Type-Options', 'nosniff')
        .header('Vary', 'Accept-Encoding');
      // The build writes a gzip copy of scripts and styles (a third of the size); no compression at run time.
      if (/\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))) {
        const gz = await stat(`${file}.gz`).catch(() => null);
        if (gz?.isFile()) {
          return reply
            .header('Content-Encoding', 'gzip')
            .header('Content-Length', gz.size)
            .send(createReadStream(`${file}.gz`));
        }
      }
      return reply.header('Content-Length', info.size).send(createReadStream(file));
    });
  };
}

import { gzipSync } from 'node:zlib';
import type { Plugin } from 'vite';
import { defineConfig } from 'vitest/config';

/**
 * The console is served by the Vigil API server: index.html at / and /ui/*, hashed files at /assets/*
 * (see src/api/routes/console.ts). `npm run dev` proxies the API to VIGIL_URL (default 127.0.0.1:8080).
 */
const api = process.env.VIGIL_URL ?? 'http://127.0.0.1:8080';

/** Writes `name.gz` beside each script and stylesheet; the server sends it to clients that take gzip. */
function precompress(): Plugin {
  return {
    name: 'vigil-precompress',
    apply: 'build',
    generateBundle(_options, bundle) {
      for (const [name, out] of Object.entries(bundle)) {
        if (!/\.(js|css|svg)$/.test(name)) continue;
        const source = out.type === 'chunk' ? out.code : out.source;
        this.emitFile({ type: 'asset', fileName: `${name}.gz`, source: gzipSync(source, { level: 9 }) });
      }
    },
  };
}

export default defineConfig({
  base: '/',
  oxc: { jsx: { runtime: 'automatic' } },
  plugins: [precompress()],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
  },
  server: {
    proxy: { '/api': api, '/admin': api, '/health': api },
  },
  test: {
    environment: 'happy-dom',
    include: ['src/**/*.test.{ts,tsx}'],
  },
});

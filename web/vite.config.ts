import { defineConfig } from 'vitest/config';

/**
 * The console is served by the Vigil API server: index.html at / and /ui/*, hashed files at /assets/*
 * (see src/api/routes/console.ts). `npm run dev` proxies the API to VIGIL_URL (default 127.0.0.1:8080).
 */
const api = process.env.VIGIL_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  base: '/',
  oxc: { jsx: { runtime: 'automatic' } },
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

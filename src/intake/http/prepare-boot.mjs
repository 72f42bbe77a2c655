// Starts an intake thread of prepare-pool.ts: a worker thread does not inherit the TypeScript loader the
// node process runs with (bin/vigil, tests), so it registers it before loading the TypeScript worker.
import { register } from 'tsx/esm/api';

register();
await import('./prepare-worker.ts');

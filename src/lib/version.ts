import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** This build's version, from package.json: reported by membership and the admin API. */
export const VERSION: string = (
  JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')) as { version: string }
).version;

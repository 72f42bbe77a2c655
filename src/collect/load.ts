import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../config/load.ts';
import { redactUrls } from '../lib/redact.ts';
import { type CollectConfig, collectConfigSchema } from './config.ts';

/**
 * Reads and validates the collector's configuration file (YAML): every problem at once, each naming its key;
 * unknown keys are refused at every level. No environment overrides: the file is the whole configuration.
 */
export function loadCollectConfig(file: string): Readonly<CollectConfig> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    // A YAML error quotes the offending line, which may hold a token or a URL with credentials.
    throw new ConfigError([`${file}: ${redactUrls((err as Error).message).replace(/vgk_\S+/g, 'vgk_<redacted>')}`]);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError([`${file}: expected a mapping at the top level`]);
  }
  const result = collectConfigSchema.safeParse(doc);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => {
        const key = issue.path.join('.') || '(root)';
        const extra = issue.code === 'unrecognized_keys' ? ` ${issue.keys.join(', ')}` : '';
        return `${key}: ${issue.message}${extra}`;
      }),
    );
  }
  return Object.freeze(result.data);
}

import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { InputError } from '../lib/errors.ts';
import { redactUrls } from '../lib/redact.ts';
import { configSchema, type VigilConfig } from './schema.ts';

/** Environment variables with a fixed meaning; any other `VIGIL_<SECTION>__<KEY>` sets `section.key`. */
const NAMED_ENV: Record<string, string[][]> = {
  VIGIL_HTTP_ADDR: [['http', 'addr']],
  VIGIL_SYSLOG_PORT: [
    ['syslog', 'udp_port'],
    ['syslog', 'tcp_port'],
  ],
  VIGIL_DATA_DIR: [['data_dir']],
  VIGIL_ADMIN_TOKEN: [['auth', 'admin_token']],
  VIGIL_LOG_LEVEL: [['log', 'level']],
  VIGIL_ROLES: [['roles']],
  VIGIL_POSTGRES_URL: [['postgres', 'url']],
};

/** Variables read elsewhere, never config keys. */
const IGNORED_ENV = new Set(['VIGIL_CONFIG', 'VIGIL_TOKEN', 'VIGIL_URL']);

/** Invalid configuration: every problem, each naming its key, in one error. */
export class ConfigError extends InputError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super('config_invalid', `invalid configuration:\n  ${problems.join('\n  ')}`, { problems });
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * Loads the configuration: defaults, then the YAML file (if any), then `VIGIL_*` variables; validates the
 * whole and returns it frozen. Errors name the bad key (`store.retention_days: expected number`).
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv } = {}): Readonly<VigilConfig> {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.VIGIL_CONFIG;
  const problems: string[] = [];
  let raw: Record<string, unknown> = {};
  if (file) {
    try {
      const doc = parseYaml(readFileSync(file, 'utf8'));
      if (doc !== null && doc !== undefined) {
        if (typeof doc !== 'object' || Array.isArray(doc))
          problems.push(`${file}: expected a mapping at the top level`);
        else raw = doc as Record<string, unknown>;
      }
    } catch (err) {
      // A YAML error quotes the offending line, which may hold a URL with credentials.
      problems.push(`${file}: ${redactUrls((err as Error).message)}`);
    }
  }
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('VIGIL_') || value === undefined || IGNORED_ENV.has(name)) continue;
    const named = NAMED_ENV[name];
    if (named) {
      for (const path of named) setPath(raw, path, envValue(name, value));
    } else if (name.includes('__')) {
      const path = name.slice('VIGIL_'.length).toLowerCase().split('__');
      setPath(raw, path, envValue(name, value));
    } else {
      problems.push(`${name}: unknown variable (sections are set as VIGIL_<SECTION>__<KEY>)`);
    }
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const key = issue.path.join('.') || '(root)';
      const extra = issue.code === 'unrecognized_keys' ? ` ${issue.keys.join(', ')}` : '';
      problems.push(`${key}: ${issue.message}${extra}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(result.data as VigilConfig);
}

function envValue(name: string, value: string): unknown {
  if (name === 'VIGIL_ROLES') return value.split(',').map((r) => r.trim());
  // Lists and maps are given as JSON: VIGIL_DETECT__RULES_DIRS='["./rules"]'.
  if (/^\s*[[{]/.test(value)) {
    try {
      return JSON.parse(value);
    } catch {
      return value;
    }
  }
  if (/^-?\d+(\.\d+)?$/.test(value)) return Number(value);
  if (value === 'true' || value === 'false') return value === 'true';
  return value;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]] = value;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

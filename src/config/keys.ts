import { z } from 'zod';
import { configSchema } from './schema.ts';

/** One setting: its dotted key, default and description, for the README table and `vigil config`. */
export interface SettingDoc {
  key: string;
  type: string;
  default: unknown;
  description: string;
}

/** Lists every leaf setting of the configuration schema. */
export function listSettings(): SettingDoc[] {
  const json = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const out: SettingDoc[] = [];
  walk(json, '', out);
  return out;
}

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  default?: unknown;
  description?: string;
  items?: JsonSchema;
  enum?: unknown[];
  anyOf?: JsonSchema[];
}

function walk(node: JsonSchema, prefix: string, out: SettingDoc[]): void {
  if (node.properties) {
    for (const [k, v] of Object.entries(node.properties)) walk(v, prefix ? `${prefix}.${k}` : k, out);
    return;
  }
  const type = node.enum ? node.enum.join('|') : Array.isArray(node.type) ? node.type.join('|') : (node.type ?? 'any');
  out.push({ key: prefix, type, default: node.default, description: node.description ?? '' });
}

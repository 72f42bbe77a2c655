/**
 * Logsource routing and field-name mapping, read from YAML data (src/detect/mappings/*.yml by default).
 *
 * Windows events are routed by (channel, EventID) like SigmaHQ's thor.yml: a service is a set of channels and a
 * category is a list of variants (service + EventIDs + extra conditions + field renames, e.g. process_creation
 * is Sysmon 1, or Security 4688 with Image -> NewProcessName). Other products are "sources": a logsource plus,
 * per layout, a `when` test that recognizes its events and the names of its fields.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { InputError } from '../../lib/errors.ts';
import type { EventLayout, Logsource } from '../../lib/event.ts';

/** A test on an event's fields that recognizes a source; comparisons are case-insensitive. */
export type WhenCond =
  | {
      field: string;
      equals?: string | number | (string | number)[];
      startswith?: string | string[];
      contains?: string | string[];
      exists?: boolean;
    }
  | { all: WhenCond[] }
  | { any: WhenCond[] };

const scalarList = z.union([z.string(), z.number(), z.array(z.union([z.string(), z.number()]))]);
const textList = z.union([z.string(), z.array(z.string())]);

const whenSchema: z.ZodType<WhenCond> = z.lazy(() =>
  z.union([
    z.strictObject({
      field: z.string(),
      equals: scalarList.optional(),
      startswith: textList.optional(),
      contains: textList.optional(),
      exists: z.boolean().optional(),
    }),
    z.strictObject({ all: z.array(whenSchema) }),
    z.strictObject({ any: z.array(whenSchema) }),
  ]),
);

const keyList = z.array(z.string());
const fieldMap = z.record(z.string(), keyList);

const windowsLayoutSchema = z.strictObject({
  /** Event keys holding the channel, tried in order. */
  channel: keyList,
  /** Event keys holding the EventID. */
  eventId: keyList,
  /** Windows field name -> event keys, tried in order before `default`. */
  fields: fieldMap.default({}),
  /** Per Sigma category: Windows field name -> event keys (ECS names differ per event type). */
  categoryFields: z.record(z.string(), fieldMap).default({}),
  /**
   * Key templates tried last; `{field}` is the field name, `{field:spaced}` the name with the spaces Sigma
   * strips (`NewValue` -> `New Value`), `**` any run of nested elements.
   */
  default: keyList,
});

const variantSchema = z.strictObject({
  service: z.string(),
  eventIds: z.array(z.union([z.number(), z.string()])).optional(),
  /** Extra equality conditions on Windows fields (thor.yml's `conditions` beyond EventID). */
  conditions: z.record(z.string(), scalarList).optional(),
  /** Sigma field -> Windows field of this event type. */
  fieldmappings: z.record(z.string(), z.string()).optional(),
  /** The variant also serves rules that name no product (category `antivirus`). */
  anyProduct: z.boolean().optional(),
});

const windowsSchema = z.strictObject({
  layouts: z.partialRecord(z.enum(['windows', 'evtx', 'ecs']), windowsLayoutSchema),
  services: z.record(z.string(), z.array(z.string())),
  categories: z.record(z.string(), z.array(variantSchema)),
});

const sourceLayoutSchema = z.strictObject({
  when: z.union([whenSchema, z.array(whenSchema)]).optional(),
  fields: fieldMap.default({}),
  default: keyList.default(['{field}']),
  /** A built-in derivation of extra fields (`@name` keys): `auditd` parses auditd key=value records. */
  derive: z.enum(['auditd']).optional(),
});

const logsourceSchema = z.strictObject({
  product: z.string().optional(),
  service: z.string().optional(),
  category: z.string().optional(),
});

const sourceSchema = z.strictObject({
  name: z.string(),
  logsource: logsourceSchema,
  layouts: z.partialRecord(z.enum(['ecs', 'windows', 'evtx', 'syslog', 'json']), sourceLayoutSchema),
});

const mappingFileSchema = z.strictObject({
  description: z.string().optional(),
  windows: windowsSchema.optional(),
  sources: z.array(sourceSchema).optional(),
});

export type WindowsLayoutMapping = z.infer<typeof windowsLayoutSchema>;
export type WindowsVariant = z.infer<typeof variantSchema>;
export type WindowsMapping = z.infer<typeof windowsSchema>;
export type SourceLayoutMapping = z.infer<typeof sourceLayoutSchema>;
export type SourceMapping = z.infer<typeof sourceSchema>;

/** The whole mapping: Windows routing plus the other sources. Build it with `loadMappings`. */
export interface SigmaMappings {
  readonly windows: WindowsMapping;
  readonly sources: readonly SourceMapping[];
}

/** The folder of the mapping data shipped with Vigil. */
export const DEFAULT_MAPPINGS_DIR = fileURLToPath(new URL('../mappings/', import.meta.url));

/**
 * Reads and validates every .yml/.yaml file of the given folders (the shipped mappings by default), merging
 * them: later files add services, categories, layouts and sources. Throws InputError naming the file.
 */
export function loadMappings(dirs: readonly string[] = [DEFAULT_MAPPINGS_DIR]): SigmaMappings {
  const windows: WindowsMapping = { layouts: table({}), services: table({}), categories: table({}) };
  const sources: SourceMapping[] = [];
  for (const dir of dirs) {
    const files = readdirSync(dir)
      .filter((f) => /\.ya?ml$/i.test(f))
      .sort();
    for (const f of files) {
      const file = join(dir, f);
      let data: unknown;
      try {
        data = parseYaml(readFileSync(file, 'utf8'));
      } catch (err) {
        throw new InputError('sigma_mapping_invalid', `Cannot read the Sigma mapping ${file}.`, {
          file,
          reason: (err as Error).message,
        });
      }
      const parsed = mappingFileSchema.safeParse(data);
      if (!parsed.success) {
        const reason = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
        throw new InputError('sigma_mapping_invalid', `The Sigma mapping ${file} is invalid: ${reason}`, { file });
      }
      const m = withoutPrototypes(parsed.data);
      if (m.windows) {
        Object.assign(windows.layouts, m.windows.layouts);
        Object.assign(windows.services, m.windows.services);
        for (const [cat, variants] of Object.entries(m.windows.categories)) {
          windows.categories[cat] = [...(windows.categories[cat] ?? []), ...variants];
        }
      }
      if (m.sources) sources.push(...m.sources);
    }
  }
  return { windows, sources };
}

/** A table indexed by names a rule writes: without a prototype, `constructor` or `toString` find nothing. */
function table<T>(entries: Record<string, T>): Record<string, T> {
  return Object.assign(Object.create(null) as Record<string, T>, entries);
}

/**
 * The mapping with every table that rules index (fields, categories, services, field renames, conditions)
 * made prototype-free: a rule naming the field `constructor` threw a TypeError for every Windows event.
 */
function withoutPrototypes(m: z.infer<typeof mappingFileSchema>): z.infer<typeof mappingFileSchema> {
  const layout = <L extends { fields: Record<string, string[]> }>(l: L): L => ({ ...l, fields: table(l.fields) });
  const windows = m.windows && {
    layouts: table(
      Object.fromEntries(
        Object.entries(m.windows.layouts).map(([k, l]) => [
          k,
          l && {
            ...layout(l),
            categoryFields: table(Object.fromEntries(Object.entries(l.categoryFields).map(([c, f]) => [c, table(f)]))),
          },
        ]),
      ),
    ),
    services: table(m.windows.services),
    categories: table(
      Object.fromEntries(
        Object.entries(m.windows.categories).map(([c, vs]) => [
          c,
          vs.map((v) => ({
            ...v,
            conditions: v.conditions && table(v.conditions),
            fieldmappings: v.fieldmappings && table(v.fieldmappings),
          })),
        ]),
      ),
    ),
  };
  const sources = m.sources?.map((s) => ({
    ...s,
    layouts: table(Object.fromEntries(Object.entries(s.layouts).map(([k, l]) => [k, l && layout(l)]))),
  }));
  return { ...m, windows, sources };
}

let defaultMappings: SigmaMappings | undefined;

/** The shipped mappings, read once. */
export function defaultSigmaMappings(): SigmaMappings {
  defaultMappings ??= loadMappings();
  return defaultMappings;
}

/** The Windows layouts, where routing is by channel and EventID. */
export const WINDOWS_LAYOUTS: ReadonlySet<EventLayout> = new Set<EventLayout>(['windows', 'evtx', 'ecs']);

/** Whether a rule's logsource is served by a declared or mapped logsource: every attribute the rule names matches. */
export function logsourceCovers(provided: Logsource, rule: Logsource): boolean {
  if (!rule.product && !rule.service && !rule.category) return false;
  return (
    (!rule.product || eqi(rule.product, provided.product)) &&
    (!rule.service || eqi(rule.service, provided.service)) &&
    (!rule.category || eqi(rule.category, provided.category))
  );
}

function eqi(a: string, b: string | undefined): boolean {
  return b !== undefined && a.toLowerCase() === b.toLowerCase();
}

/**
 * A field name as Windows displays it when the event's own name has spaces: Sigma strips them (rules
 * specification, "Field Usage"), so `NewValue` is `New Value`, `Feature_Name` is `Feature Name`.
 */
export function spacedName(field: string): string {
  return field.replace(/_/g, ' ').replace(/([a-z])([A-Z])/g, '$1 $2');
}

/**
 * Expands key templates for one field: `{field}` is the name, `{field:spaced}` its spaced form; duplicates are
 * dropped, order kept.
 */
export function expandKeys(
  explicit: readonly string[] | undefined,
  templates: readonly string[],
  field: string,
): string[] {
  const out: string[] = [];
  const add = (k: string): void => {
    if (!out.includes(k)) out.push(k);
  };
  for (const k of explicit ?? []) add(k);
  const spaced = spacedName(field);
  for (const t of templates) add(t.replaceAll('{field:spaced}', spaced).replaceAll('{field}', field));
  return out;
}

/** Maps a Sigma field name to the event keys that hold it, for one layout and logsource variant. */
export type FieldResolver = (sigmaField: string) => string[];

/** The resolver of a Windows layout for a rule category and an optional variant (its field renames). */
export function windowsResolver(
  layout: WindowsLayoutMapping,
  category: string | undefined,
  variant: WindowsVariant | undefined,
): FieldResolver {
  const catFields = category ? layout.categoryFields[category] : undefined;
  return (sigmaField) => {
    const name = variant?.fieldmappings?.[sigmaField] ?? sigmaField;
    const explicit = catFields?.[name] ?? layout.fields[name];
    return expandKeys(explicit, layout.default, name);
  };
}

/** The resolver of a non-Windows source in one layout. */
export function sourceResolver(layout: SourceLayoutMapping | undefined): FieldResolver {
  if (!layout) return (f) => [f];
  return (f) => expandKeys(layout.fields[f], layout.default, f);
}

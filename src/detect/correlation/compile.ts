import { createHash } from 'node:crypto';
import { InputError } from '../../lib/errors.ts';

/** The correlation types of the Sigma correlation specification 2.1. */
export type CorrelationType =
  | 'event_count'
  | 'value_count'
  | 'temporal'
  | 'temporal_ordered'
  | 'value_sum'
  | 'value_avg'
  | 'value_percentile';

/** Sigma rule levels; a correlation without `level` gets `medium`. */
export type CorrelationLevel = 'informational' | 'low' | 'medium' | 'high' | 'critical';

/** The comparison operators of a correlation condition; several in one condition are AND-ed (a range). */
export type ConditionOperator = 'gt' | 'gte' | 'lt' | 'lte' | 'eq' | 'neq';

/** A validated correlation condition. */
export interface CorrelationCondition {
  /** At least one operator; all must hold. */
  ops: Partial<Record<ConditionOperator, number>>;
  /** `field` of value_* types: one name, or several for value_count (distinct tuples). */
  field?: string[];
  /**
   * value_percentile only: the percentile rank (0-100) to compute over the numeric `field`. Without it,
   * value_percentile compares the share (in percent) of the arriving event's `field` value instead.
   */
  percentile?: number;
}

/** A correlation rule validated and ready for the engine. Immutable. */
export interface CompiledCorrelation {
  /** The `id` of the document, or when absent a stable id derived from its content (`derived-<hex>`). */
  readonly id: string;
  readonly name?: string;
  readonly title: string;
  readonly level: CorrelationLevel;
  readonly tags: readonly string[];
  readonly type: CorrelationType;
  /** References to Sigma rules or correlations, by id or name, in the order written. */
  readonly rules: readonly string[];
  /** Group-by field names (or alias names); empty means one group for all events. */
  readonly groupBy: readonly string[];
  /** alias -> rule reference (id or name) -> field name in events matched by that rule. */
  readonly aliases: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** The timespan as written (`10m`). */
  readonly timespan: string;
  readonly timespanMs: number;
  readonly condition: Readonly<CorrelationCondition>;
  /**
   * Whether the referenced rules also emit their own alerts. `false` (the Sigma default) means the caller
   * withholds the alerts of every rule this correlation references; see `createCorrelationEngine().suppresses`.
   */
  readonly generate: boolean;
  /** The file the document came from, for error messages. */
  readonly file: string;
}

const TYPES: readonly CorrelationType[] = [
  'event_count',
  'value_count',
  'temporal',
  'temporal_ordered',
  'value_sum',
  'value_avg',
  'value_percentile',
];
const LEVELS: readonly CorrelationLevel[] = ['informational', 'low', 'medium', 'high', 'critical'];
const OPERATORS: readonly ConditionOperator[] = ['gt', 'gte', 'lt', 'lte', 'eq', 'neq'];
const SECTION_KEYS = new Set(['type', 'rules', 'group-by', 'timespan', 'condition', 'aliases', 'generate']);
const VALUE_TYPES = new Set<CorrelationType>(['value_count', 'value_sum', 'value_avg', 'value_percentile']);
const TEMPORAL_TYPES = new Set<CorrelationType>(['temporal', 'temporal_ordered']);

/**
 * Seconds per timespan unit. The spec lists s/m/h/d; w/M/y are accepted as pySigma does, with its lengths
 * (a month is 1/12 of a Gregorian year, a year is 365.2425 days), so converted and native rules agree.
 */
const UNIT_SECONDS: Record<string, number> = {
  s: 1,
  m: 60,
  h: 3600,
  d: 86400,
  w: 604800,
  M: 2629746,
  y: 31556952,
};

/** Parses a Sigma timespan (`30s`, `10m`, `1h`, `7d`, `2w`, `1M`, `1y`) into milliseconds; undefined if invalid. */
export function parseTimespan(spec: unknown): number | undefined {
  if (typeof spec !== 'string') return undefined;
  const m = /^([0-9]+)([smhdwMy])$/.exec(spec);
  if (!m) return undefined;
  const ms = Number(m[1]) * UNIT_SECONDS[m[2]] * 1000;
  return ms > 0 && Number.isSafeInteger(ms) ? ms : undefined;
}

/** Whether a parsed YAML document is a correlation rule (it has a `correlation` section). */
export function isCorrelationDocument(doc: unknown): boolean {
  return isRecord(doc) && 'correlation' in doc;
}

/**
 * Validates one correlation document (a parsed YAML object) and compiles it. Every problem is collected and
 * thrown together as one InputError (`invalid_correlation`) whose message names the file.
 * References to other rules are checked later, by `createCorrelationEngine`, which sees the whole set.
 */
export function compileCorrelation(doc: unknown, file: string): CompiledCorrelation {
  const errors: string[] = [];
  const fail = (): never => {
    throw new InputError('invalid_correlation', `${file}: invalid correlation rule: ${errors.join('; ')}`, {
      file,
      errors,
    });
  };
  if (!isRecord(doc)) {
    errors.push('the document must be a mapping');
    return fail();
  }

  const title = doc.title;
  if (typeof title !== 'string' || title.trim() === '') errors.push('title: required, a non-empty string');
  else if (title.length > 256) errors.push('title: at most 256 characters');

  const id = optionalString(doc, 'id', errors);
  const name = optionalString(doc, 'name', errors);

  let level: CorrelationLevel = 'medium';
  if (doc.level !== undefined) {
    if (LEVELS.includes(doc.level as CorrelationLevel)) level = doc.level as CorrelationLevel;
    else errors.push(`level: must be one of ${LEVELS.join(', ')}`);
  }

  let tags: string[] = [];
  if (doc.tags !== undefined) {
    if (Array.isArray(doc.tags) && doc.tags.every((t) => typeof t === 'string')) tags = doc.tags as string[];
    else errors.push('tags: must be a list of strings');
  }

  const section = doc.correlation;
  if (!isRecord(section)) {
    errors.push('correlation: required, a mapping');
    return fail();
  }
  for (const key of Object.keys(section)) {
    if (!SECTION_KEYS.has(key)) errors.push(`correlation.${key}: unknown key`);
  }

  const type = section.type as CorrelationType;
  const typeOk = TYPES.includes(type);
  if (!typeOk) errors.push(`correlation.type: must be one of ${TYPES.join(', ')}`);

  let rules: string[] | undefined;
  if (section.rules === undefined) errors.push('correlation.rules: required, the rules or correlations to correlate');
  else rules = stringList(section.rules, 'correlation.rules', errors, true);
  if (rules && rules.length === 0) errors.push('correlation.rules: must reference at least one rule');

  const groupBy =
    section['group-by'] === undefined ? [] : stringList(section['group-by'], 'correlation.group-by', errors, true);

  const timespanMs = parseTimespan(section.timespan);
  if (timespanMs === undefined) {
    errors.push(
      'correlation.timespan: required, a positive number followed by one unit of s, m, h, d, w, M, y (e.g. 10m)',
    );
  }

  const aliases = compileAliases(section.aliases, errors);
  const generate = compileGenerate(doc.generate, section.generate, errors);
  const condition = typeOk ? compileCondition(section.condition, type, rules?.length ?? 0, errors) : undefined;

  if (errors.length > 0 || !condition || !rules || !groupBy || timespanMs === undefined) return fail();

  return Object.freeze({
    id: id ?? deriveId(doc),
    ...(name === undefined ? {} : { name }),
    title: title as string,
    level,
    tags: Object.freeze([...tags]),
    type,
    rules: Object.freeze(rules),
    groupBy: Object.freeze(groupBy),
    aliases: Object.freeze(aliases),
    timespan: section.timespan as string,
    timespanMs,
    condition: Object.freeze(condition),
    generate,
    file,
  });
}

function compileCondition(
  raw: unknown,
  type: CorrelationType,
  ruleCount: number,
  errors: string[],
): CorrelationCondition | undefined {
  if (raw === undefined) {
    if (TEMPORAL_TYPES.has(type)) return { ops: { gte: ruleCount } };
    errors.push(`correlation.condition: required for ${type}`);
    return undefined;
  }
  if (!isRecord(raw)) {
    errors.push('correlation.condition: must be a mapping of operators (gt, gte, lt, lte, eq, neq)');
    return undefined;
  }
  const before = errors.length;
  const ops: Partial<Record<ConditionOperator, number>> = {};
  let field: string[] | undefined;
  let percentile: number | undefined;
  for (const [key, value] of Object.entries(raw)) {
    if (OPERATORS.includes(key as ConditionOperator)) {
      if (typeof value === 'number' && Number.isFinite(value)) ops[key as ConditionOperator] = value;
      else errors.push(`correlation.condition.${key}: must be a number`);
    } else if (key === 'field') {
      field = typeof value === 'string' ? [value] : stringList(value, 'correlation.condition.field', errors, true);
      if (field && field.length === 0) errors.push('correlation.condition.field: must name a field');
    } else if (key === 'percentile') {
      if (typeof value === 'number' && value >= 0 && value <= 100) percentile = value;
      else errors.push('correlation.condition.percentile: must be a number from 0 to 100');
    } else {
      errors.push(`correlation.condition.${key}: unknown key`);
    }
  }
  if (Object.keys(ops).length === 0) {
    errors.push('correlation.condition: needs at least one of gt, gte, lt, lte, eq, neq');
  }
  if (VALUE_TYPES.has(type)) {
    if (raw.field === undefined) errors.push(`correlation.condition.field: required for ${type}`);
    else if (field && field.length > 1 && type !== 'value_count') {
      errors.push(`correlation.condition.field: ${type} aggregates one field`);
    }
  } else if (raw.field !== undefined) {
    errors.push(`correlation.condition.field: not used by ${type}`);
  }
  if (percentile !== undefined && type !== 'value_percentile') {
    errors.push(`correlation.condition.percentile: only for value_percentile`);
  }
  const lower = Math.max(ops.gt ?? -Infinity, ops.gte ?? -Infinity, ops.eq ?? -Infinity);
  const upper = Math.min(ops.lt ?? Infinity, ops.lte ?? Infinity, ops.eq ?? Infinity);
  if (lower > upper || (ops.gt !== undefined && ops.gt >= upper) || (ops.lt !== undefined && ops.lt <= lower)) {
    errors.push('correlation.condition: the range is empty, so the correlation could never match');
  }
  if (errors.length > before) return undefined;
  return { ops, ...(field ? { field } : {}), ...(percentile === undefined ? {} : { percentile }) };
}

function compileAliases(raw: unknown, errors: string[]): Record<string, Record<string, string>> {
  if (raw === undefined) return {};
  if (!isRecord(raw)) {
    errors.push('correlation.aliases: must be a mapping of alias -> rule -> field');
    return {};
  }
  const out: Record<string, Record<string, string>> = {};
  for (const [alias, mapping] of Object.entries(raw)) {
    if (!isRecord(mapping) || Object.keys(mapping).length === 0) {
      errors.push(`correlation.aliases.${alias}: must map rule names to field names`);
      continue;
    }
    const fields: Record<string, string> = {};
    for (const [rule, field] of Object.entries(mapping)) {
      if (typeof field === 'string' && field !== '') fields[rule] = field;
      else errors.push(`correlation.aliases.${alias}.${rule}: must be a field name`);
    }
    out[alias] = Object.freeze(fields);
  }
  return out;
}

/** `generate` is top-level in the JSON schema and inside `correlation` in pySigma; both are accepted. */
function compileGenerate(top: unknown, inSection: unknown, errors: string[]): boolean {
  for (const [where, v] of [
    ['generate', top],
    ['correlation.generate', inSection],
  ] as const) {
    if (v !== undefined && typeof v !== 'boolean') errors.push(`${where}: must be true or false`);
  }
  if (typeof top === 'boolean' && typeof inSection === 'boolean' && top !== inSection) {
    errors.push('generate: given twice with different values');
  }
  return (typeof inSection === 'boolean' ? inSection : undefined) ?? (typeof top === 'boolean' ? top : false);
}

function deriveId(doc: Record<string, unknown>): string {
  const canonical = JSON.stringify([doc.name ?? null, doc.title, doc.correlation], sortedKeys);
  return `derived-${createHash('sha256').update(canonical).digest('hex').slice(0, 32)}`;
}

function sortedKeys(_key: string, value: unknown): unknown {
  if (!isRecord(value)) return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((k) => [k, value[k]]),
  );
}

function optionalString(doc: Record<string, unknown>, key: string, errors: string[]): string | undefined {
  const v = doc[key];
  if (v === undefined) return undefined;
  if (typeof v === 'string' && v.trim() !== '') return v;
  errors.push(`${key}: must be a non-empty string`);
  return undefined;
}

function stringList(raw: unknown, where: string, errors: string[], unique: boolean): string[] | undefined {
  const list = typeof raw === 'string' ? [raw] : raw;
  if (!Array.isArray(list) || !list.every((x) => typeof x === 'string' && x !== '')) {
    errors.push(`${where}: must be a list of non-empty strings`);
    return undefined;
  }
  if (unique && new Set(list).size !== list.length) {
    errors.push(`${where}: must not repeat an entry`);
    return undefined;
  }
  return [...list];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

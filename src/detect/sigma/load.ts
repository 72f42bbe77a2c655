/**
 * Loading Sigma files: folders recursively, multi-document files (collections: `action: global`, `reset`,
 * `repeat`, and later documents without a title inheriting from the first), rules, filters and correlations.
 * A document that cannot be loaded is reported with its place and reason and never stops the others.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  type CST,
  Composer,
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  Parser,
} from 'yaml';
import type { Logsource } from '../../lib/event.ts';
import { setOwn } from '../../lib/lookup.ts';
import { type DocPath, NumLit, type Placeholders, parseDetection, RuleError } from './detection.ts';
import type { RejectedRule, SigmaFilter, SigmaLoadResult, SigmaRule } from './types.ts';

export interface LoadOptions {
  /**
   * Values of `%placeholder%`s for the `expand` modifier. Rules whose placeholders have no values are rejected.
   * The engine can be given other values later (`createSigmaEngine({ placeholders })`).
   */
  placeholders?: Placeholders;
  /** Bounds on each file or text; `FILE_LIMITS` by default. */
  limits?: SigmaLoadLimits;
}

/**
 * Bounds on the YAML of one file or request, so that no document costs more than a bounded time to load:
 * rules are user input (the rules API, hunts), and a few hundred bytes of nested YAML aliases expand to
 * billions of nodes. Each rejection names the limit it passed.
 */
export interface SigmaLoadLimits {
  /** The size of the text in bytes (UTF-8). */
  readonly max_bytes: number;
  /** YAML nodes (map entries, list items, scalars) of all documents together, every alias expanded. */
  readonly max_nodes: number;
  /** Nesting of maps and lists, aliases followed. */
  readonly max_depth: number;
  /** Aliases (`*name`) written in one document; each is resolved once, by a walk of its document. */
  readonly max_aliases: number;
}

/**
 * For rule files from folders and the rules API's store. The SigmaHQ corpus (2026-12) peaks at 295 KB and
 * 4,475 nodes in one file, a depth of 5 and no alias.
 */
export const FILE_LIMITS: SigmaLoadLimits = Object.freeze({
  max_bytes: 1 << 20,
  max_nodes: 100_000,
  max_depth: 64,
  max_aliases: 100,
});

/**
 * For a rule sent to the API (`POST /api/v1/rules`, hunts). Parsing is about 5 µs per byte on the worst
 * nesting, so 64 KiB bounds a request to about 0.3 s; one SigmaHQ file of 4,100 is larger.
 */
export const REQUEST_LIMITS: SigmaLoadLimits = Object.freeze({
  max_bytes: 64 << 10,
  max_nodes: 20_000,
  max_depth: 64,
  max_aliases: 100,
});

/** A document that passes a bound of SigmaLoadLimits: the whole file or text is rejected. */
class LimitError extends RuleError {
  override readonly limit: keyof SigmaLoadLimits;
  constructor(limit: keyof SigmaLoadLimits, message: string) {
    super(`${message} (limit ${limit})`);
    this.limit = limit;
  }
}

function depthError(limits: SigmaLoadLimits): LimitError {
  return new LimitError('max_depth', `the document is nested more than ${limits.max_depth} levels deep`);
}

/** Lists the .yml/.yaml files under the given files and folders, recursively, in a stable order. */
export function listRuleFiles(paths: string | readonly string[]): string[] {
  const out: string[] = [];
  const visit = (p: string): void => {
    const st = statSync(p);
    if (st.isDirectory()) {
      for (const name of readdirSync(p).sort()) {
        if (name.startsWith('.')) continue;
        visit(join(p, name));
      }
    } else if (/\.ya?ml$/i.test(p)) {
      out.push(p);
    }
  };
  for (const p of typeof paths === 'string' ? [paths] : paths) visit(p);
  return out;
}

/** Loads every rule, filter and correlation document under the given files and folders. */
export function loadSigmaRules(paths: string | readonly string[], opts: LoadOptions = {}): SigmaLoadResult {
  const result: SigmaLoadResult = { rules: [], filters: [], correlations: [], rejected: [] };
  const files: string[] = [];
  for (const p of typeof paths === 'string' ? [paths] : paths) {
    try {
      files.push(...listRuleFiles(p));
    } catch (err) {
      result.rejected.push({ file: p, reason: `cannot list rule files: ${(err as Error).message}` });
    }
  }
  const limits = opts.limits ?? FILE_LIMITS;
  for (const file of files) {
    let text: string;
    try {
      const size = statSync(file).size;
      if (size > limits.max_bytes) {
        result.rejected.push({
          file,
          reason: `the file has ${size} bytes, more than ${limits.max_bytes} (limit max_bytes)`,
          limit: 'max_bytes',
        });
        continue;
      }
      text = readFileSync(file, 'utf8');
    } catch (err) {
      result.rejected.push({ file, reason: `cannot read the file: ${(err as Error).message}` });
      continue;
    }
    let one: SigmaLoadResult;
    try {
      one = loadSigmaText(text, file, opts);
    } catch (err) {
      // A defect of ours must cost one file, never the whole rule set (a node that cannot start).
      result.rejected.push({
        file,
        reason: `the file could not be loaded: ${(err as Error).message}`,
        unexpected: true,
      });
      continue;
    }
    result.rules.push(...one.rules);
    result.filters.push(...one.filters);
    result.correlations.push(...one.correlations);
    result.rejected.push(...one.rejected);
  }
  return result;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof NumLit);
}

/** Nodes converted so far in one file or text, against `limits.max_nodes`. */
interface Budget {
  nodes: number;
  readonly limits: SigmaLoadLimits;
  /** The node each alias of the current document stands for. */
  aliases: Map<object, unknown>;
}

function spend(budget: Budget): void {
  if (++budget.nodes > budget.limits.max_nodes) {
    throw new LimitError(
      'max_nodes',
      `the YAML expands to more than ${budget.limits.max_nodes} nodes, aliases included`,
    );
  }
}

/**
 * Converts a YAML node to plain data; numbers inside detections keep their source text (`0x17`). Aliases are
 * expanded here (the yaml library's own alias limit applies only to its `toJS`), so every node, aliased or
 * not, is counted against the budget.
 */
function toData(node: unknown, doc: Document, keepNumbers: boolean, budget: Budget, depth = 0): unknown {
  if (depth > budget.limits.max_depth) {
    throw depthError(budget.limits);
  }
  spend(budget);
  if (isAlias(node)) {
    let target = budget.aliases.get(node);
    if (target === undefined) {
      if (budget.aliases.size >= budget.limits.max_aliases) {
        throw new LimitError('max_aliases', `the document has more than ${budget.limits.max_aliases} aliases`);
      }
      target = node.resolve(doc) ?? null;
      budget.aliases.set(node, target);
    }
    return toData(target, doc, keepNumbers, budget, depth + 1);
  }
  if (isMap(node)) {
    const out: Obj = {};
    for (const pair of node.items) {
      spend(budget);
      const k = isScalar(pair.key) ? pair.key.value : pair.key;
      const key = k === null || k === undefined ? '' : String(k);
      const inner = keepNumbers || (depth === 0 && (key === 'detection' || key === 'filter'));
      setOwn(out, key, toData(pair.value, doc, inner, budget, depth + 1));
    }
    return out;
  }
  if (isSeq(node)) return node.items.map((x) => toData(x, doc, keepNumbers, budget, depth + 1));
  if (isScalar(node)) {
    const v = node.value;
    if (typeof v === 'number' && keepNumbers) return new NumLit(v, node.source ?? String(v));
    if (v instanceof Date) return v.toISOString().slice(0, 10);
    if (typeof v === 'bigint') return keepNumbers ? new NumLit(Number(v), node.source ?? String(v)) : Number(v);
    return v;
  }
  return node ?? null;
}

function deepMerge(base: unknown, over: unknown): unknown {
  if (isObj(base) && isObj(over)) {
    const out: Obj = { ...base };
    for (const [k, v] of Object.entries(over)) setOwn(out, k, Object.hasOwn(base, k) ? deepMerge(base[k], v) : v);
    return out;
  }
  return over;
}

/**
 * The offset of the first document whose nodes nest deeper than `max` (counted as toData counts them, aliases
 * aside), or undefined. It walks the parser's tokens without recursion: the yaml library composes nodes
 * recursively and overflows the stack at about 800 levels of `[` (a few KB), which must be refused, naming
 * max_depth, before composing.
 */
function tooDeep(tokens: readonly CST.Token[], max: number): number | undefined {
  for (const token of tokens) {
    if (token.type !== 'document') continue;
    const stack: [CST.Token | null | undefined, number][] = [[token.value, 0]];
    for (let top = stack.pop(); top; top = stack.pop()) {
      const [node, depth] = top;
      if (!node) continue;
      if (depth > max) return token.offset;
      if (node.type === 'block-map' || node.type === 'block-seq' || node.type === 'flow-collection') {
        for (const item of node.items) {
          if ('key' in item && item.key) stack.push([item.key, depth + 1]);
          if (item.value) stack.push([item.value, depth + 1]);
        }
      }
    }
  }
  return undefined;
}

/** The 1-based line and column of the node at `path` (or of the nearest parent that exists). */
function locate(doc: Document, path: DocPath, lc: LineCounter): { line: number; column: number } | undefined {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0];
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      offset = (pair.key as Node).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number' && node.items[seg]) {
      node = node.items[seg];
      offset = (node as Node).range?.[0] ?? offset;
    } else {
      break;
    }
  }
  if (offset === undefined) return undefined;
  const pos = lc.linePos(offset);
  return { line: pos.line, column: pos.col };
}

function text(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v instanceof NumLit) return v.text;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

function parseLogsource(v: unknown): Logsource {
  if (!isObj(v)) throw new RuleError('the logsource must be a map', ['logsource']);
  const ls: { product?: string; service?: string; category?: string } = {};
  for (const k of ['product', 'service', 'category'] as const) {
    const x = v[k];
    if (x === undefined || x === null) continue;
    if (typeof x !== 'string') throw new RuleError(`logsource ${k} must be a string`, ['logsource', k]);
    ls[k] = x.toLowerCase();
  }
  return ls;
}

function stringList(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  return list.map((x) => text(x)).filter((x): x is string => x !== undefined);
}

/** Loads the documents of one file's text. */
export function loadSigmaText(source: string, file: string, opts: LoadOptions = {}): SigmaLoadResult {
  const result: SigmaLoadResult = { rules: [], filters: [], correlations: [], rejected: [] };
  const limits = opts.limits ?? FILE_LIMITS;
  const bytes = Buffer.byteLength(source, 'utf8');
  if (bytes > limits.max_bytes) {
    result.rejected.push({
      file,
      reason: `the text has ${bytes} bytes, more than ${limits.max_bytes} (limit max_bytes)`,
      limit: 'max_bytes',
    });
    return result;
  }
  const budget: Budget = { nodes: 0, limits, aliases: new Map() };
  const lc = new LineCounter();
  let docs: Document[];
  try {
    // parseAllDocuments, with a look at the tokens before they are composed.
    const tokens = Array.from(new Parser(lc.addNewLine).parse(source));
    const deep = tooDeep(tokens, limits.max_depth);
    if (deep !== undefined) {
      const err = depthError(limits);
      result.rejected.push({ file, line: lc.linePos(deep).line, reason: err.message, limit: err.limit });
      return result;
    }
    docs = Array.from(new Composer().compose(tokens));
  } catch (err) {
    result.rejected.push({ file, reason: `YAML error: ${(err as Error).message}` });
    return result;
  }
  let global: Obj | undefined;
  let globalDoc: Document | undefined;
  let first: Obj | undefined;
  let firstDoc: Document | undefined;
  let previous: Obj | undefined;

  for (let index = 0; index < docs.length; index++) {
    const doc = docs[index];
    const docStart = locate(doc, [], lc);
    if (doc.errors.length > 0) {
      const e = doc.errors[0];
      const pos = lc.linePos(e.pos[0]);
      result.rejected.push({
        file,
        line: pos.line,
        column: pos.col,
        reason: `YAML error: ${e.message.split('\n')[0]} at line ${pos.line}, column ${pos.col}`,
      });
      continue;
    }
    let data: unknown;
    try {
      budget.aliases = new Map();
      data = toData(doc.contents, doc, false, budget);
    } catch (err) {
      if (!(err instanceof LimitError)) {
        result.rejected.push({ file, line: docStart?.line, reason: (err as Error).message });
        continue;
      }
      // The budget is the file's: the documents after this one are not even tried.
      result.rejected.push({ file, line: docStart?.line, reason: err.message, limit: err.limit });
      break;
    }
    if (data === null || data === undefined) continue;
    if (!isObj(data)) {
      result.rejected.push({ file, line: docStart?.line, reason: 'a Sigma document must be a map' });
      continue;
    }
    let obj: Obj = data;
    let baseDoc: Document | undefined;
    const action = obj.action;
    if (action !== undefined) {
      const { action: _, ...rest } = obj;
      if (action === 'global') {
        global = rest;
        globalDoc = doc;
        continue;
      }
      if (action === 'reset') {
        global = undefined;
        globalDoc = undefined;
        continue;
      }
      if (action === 'repeat') {
        if (!previous) {
          result.rejected.push({ file, line: docStart?.line, reason: "'action: repeat' without a previous document" });
          continue;
        }
        obj = deepMerge(previous, rest) as Obj;
      } else {
        result.rejected.push({ file, line: docStart?.line, reason: `unknown collection action '${String(action)}'` });
        continue;
      }
    } else if (global) {
      obj = deepMerge(global, obj) as Obj;
      baseDoc = globalDoc;
    } else if (first && !('title' in obj) && !('correlation' in obj) && !('filter' in obj)) {
      obj = deepMerge(first, obj) as Obj;
      baseDoc = firstDoc;
    }
    if (!first) {
      first = obj;
      firstDoc = doc;
    }
    previous = obj;

    const where = (path: DocPath | undefined): { line?: number; column?: number } => {
      const p = path ?? [];
      const here = locate(doc, p, lc);
      // A path that exists only in the inherited document is reported there.
      if (baseDoc && p.length > 0) {
        const own = doc.contents && isMap(doc.contents) ? doc.hasIn(p) : false;
        if (!own) {
          const there = locate(baseDoc, p, lc);
          if (there) return { line: there.line, column: there.column };
        }
      }
      return { line: here?.line, column: here?.column };
    };
    const ruleId = text(obj.id);
    const title = text(obj.title);

    try {
      if ('correlation' in obj) {
        result.correlations.push({ file, line: docStart?.line, doc: obj });
        continue;
      }
      if (title === undefined) throw new RuleError('the document has no title', []);
      const logsource = parseLogsource(obj.logsource);
      if ('filter' in obj) {
        const f = obj.filter;
        if (!isObj(f)) throw new RuleError('filter must be a map', ['filter']);
        const rules = stringList(f.rules);
        if (rules.length === 0) throw new RuleError('filter.rules must name at least one rule', ['filter']);
        const filter: SigmaFilter = {
          id: ruleId,
          title,
          logsource,
          rules,
          detection: parseDetection(f, ['filter'], opts.placeholders),
          file,
          line: docStart?.line,
        };
        result.filters.push(filter);
        continue;
      }
      if (!('detection' in obj)) throw new RuleError('the rule has no detection section', []);
      if (!('logsource' in obj)) throw new RuleError('the rule has no logsource section', []);
      const detection = parseDetection(obj.detection, ['detection'], opts.placeholders ?? {});
      const status = (text(obj.status) ?? 'test').toLowerCase();
      const rule: SigmaRule = {
        id: ruleId ?? `${file}#${index + 1}`,
        name: text(obj.name),
        title,
        level: (text(obj.level) ?? 'medium').toLowerCase(),
        tags: stringList(obj.tags),
        status,
        file,
        logsource,
        detection,
        line: docStart?.line,
        deprecated: status === 'deprecated',
        unsupported: status === 'unsupported',
        doc: obj,
      };
      result.rules.push(rule);
    } catch (err) {
      if (!(err instanceof RuleError)) {
        // A defect of ours must cost one document, never the whole rule set (a node that cannot start).
        result.rejected.push({
          file,
          line: docStart?.line,
          ruleId,
          title,
          reason: `the document could not be loaded: ${(err as Error).message}`,
          unexpected: true,
        });
        continue;
      }
      const pos = where(err.path);
      const rejected: RejectedRule = { file, ...pos, ruleId, title, reason: err.message };
      if (err.limit) Object.assign(rejected, { limit: err.limit });
      result.rejected.push(rejected);
    }
  }
  return result;
}

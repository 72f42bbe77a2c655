import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, VigilError } from '../lib/errors.ts';
import { type CompiledCorrelation, compileCorrelation } from './correlation/index.ts';
import {
  createSigmaEngine,
  loadSigmaRules,
  loadSigmaText,
  type Placeholders,
  REQUEST_LIMITS,
  type RejectedRule,
  type SigmaEngine,
  type SigmaFilter,
  type SigmaLoadResult,
  type SigmaRule,
} from './sigma/index.ts';

/** Where a rule came from: a configured folder (read-only) or the rules API (<data_dir>/rules). */
export type RuleOrigin = 'folder' | 'api';

/** One rule as the rules API lists it. */
export interface RuleInfo {
  id: string;
  title: string;
  level: string;
  status: string;
  kind: 'rule' | 'correlation' | 'filter';
  origin: RuleOrigin;
  enabled: boolean;
  file: string;
}

/** A compiled, immutable rule set: what detection runs until the next change. */
export interface CompiledRuleSet {
  version: number;
  engine: SigmaEngine;
  correlations: CompiledCorrelation[];
  /** Identifies the correlation set, so an unchanged one keeps its in-memory state across reloads. */
  correlationDigest: string;
  rules: RuleInfo[];
  rejected: RejectedRule[];
}

/** A rule document validated and compiled on its own, for the API's validation answers. */
export interface ValidatedRule {
  id: string;
  kind: 'rule' | 'correlation' | 'filter';
  title: string;
}

interface RulesState {
  version: number;
  disabled: string[];
}

/**
 * The rules on disk: configured folders plus API-managed files, the disabled list and a version that
 * changes with every change. `compile()` builds the engines; callers swap them in atomically.
 */
export class RuleRepository {
  private readonly apiDir: string;
  private readonly stateFile: string;
  private state: RulesState;

  constructor(
    private readonly dataDir: string,
    private readonly folders: readonly string[],
    private readonly placeholders: Placeholders,
  ) {
    this.apiDir = join(dataDir, 'rules');
    this.stateFile = join(this.apiDir, 'state.json');
    mkdirSync(this.apiDir, { recursive: true });
    this.state = existsSync(this.stateFile)
      ? (JSON.parse(readFileSync(this.stateFile, 'utf8')) as RulesState)
      : { version: 1, disabled: [] };
  }

  /** Told of each document refused for a bound of SigmaLoadLimits (the detector counts them). */
  onLimit?: (limit: string, source: 'request' | 'stored') => void;

  get version(): number {
    return this.state.version;
  }

  /** Validates one Sigma YAML document (a rule, correlation or filter) without storing it. */
  validate(yaml: string): ValidatedRule {
    const loaded = loadSigmaText(yaml, 'request', { placeholders: this.placeholders, limits: REQUEST_LIMITS });
    const problems = loaded.rejected.map((r) => `${r.line ? `line ${r.line}: ` : ''}${r.reason}`);
    const limit = loaded.rejected.find((r) => r.limit)?.limit;
    if (limit) {
      this.onLimit?.(limit, 'request');
      throw new InputError('rule_too_large', problems.join('; '), { problems, limit });
    }
    const count = loaded.rules.length + loaded.correlations.length + loaded.filters.length;
    if (problems.length === 0 && count !== 1) problems.push(`expected exactly one rule document, found ${count}`);
    if (problems.length > 0) throw new InputError('invalid_rule', problems.join('; '), { problems });
    if (loaded.rules.length === 1) {
      const engine = createSigmaEngine({ rules: loaded.rules, placeholders: this.placeholders });
      if (engine.rejected.length > 0) {
        throw new InputError('invalid_rule', engine.rejected.map((r) => r.reason).join('; '));
      }
      const r = loaded.rules[0];
      if (!loaded.rules[0].doc.id) throw new InputError('invalid_rule', 'a rule managed by the API needs an `id`');
      return { id: r.id, kind: 'rule', title: r.title };
    }
    if (loaded.correlations.length === 1) {
      const c = compileCorrelation(loaded.correlations[0].doc, 'request');
      if (!loaded.correlations[0].doc.id)
        throw new InputError('invalid_rule', 'a correlation managed by the API needs an `id`');
      return { id: c.id, kind: 'correlation', title: c.title };
    }
    const f = loaded.filters[0];
    if (!f.id) throw new InputError('invalid_rule', 'a filter managed by the API needs an `id`');
    return { id: f.id, kind: 'filter', title: f.title };
  }

  /** Stores a validated document under its id; `mustExist` distinguishes PUT from POST. */
  save(yaml: string, opts: { expectedId?: string; create: boolean }): ValidatedRule {
    const v = this.validate(yaml);
    if (opts.expectedId !== undefined && v.id !== opts.expectedId) {
      throw new InputError('id_mismatch', `the document's id ${v.id} is not the id in the path, ${opts.expectedId}`);
    }
    const file = this.apiFile(v.id);
    if (opts.create && existsSync(file)) {
      throw new VigilError('conflict', `rule ${v.id} exists; use PUT /api/v1/rules/${v.id} to change it`, {
        status: 409,
      });
    }
    if (!opts.create && !existsSync(file)) {
      throw new VigilError('not_found', `no API-managed rule ${v.id}`, { status: 404 });
    }
    this.writeAtomic(file, yaml);
    this.bump();
    return v;
  }

  /** Deletes an API-managed rule; folder rules are read-only (disable them instead). */
  remove(id: string): void {
    const file = this.apiFile(id);
    if (!existsSync(file)) {
      throw new VigilError('not_found', `no API-managed rule ${id} (rules from folders can only be disabled)`, {
        status: 404,
      });
    }
    rmSync(file);
    this.state.disabled = this.state.disabled.filter((d) => d !== id);
    this.bump();
  }

  setEnabled(id: string, enabled: boolean): void {
    const disabled = new Set(this.state.disabled);
    if (enabled) disabled.delete(id);
    else disabled.add(id);
    this.state.disabled = [...disabled].sort();
    this.bump();
  }

  /** The YAML of an API-managed rule, or of the file a folder rule came from. */
  source(file: string): string {
    return readFileSync(file, 'utf8');
  }

  /** Loads every folder and API rule and compiles the engines. */
  compile(): CompiledRuleSet {
    const loaded = loadSigmaRules([...this.folders, this.apiDir], { placeholders: this.placeholders });
    const origin = (file: string): RuleOrigin => (file.startsWith(this.apiDir) ? 'api' : 'folder');
    return buildRuleSet(loaded, {
      disabled: new Set(this.state.disabled),
      origin,
      version: this.state.version,
      placeholders: this.placeholders,
    });
  }

  private apiFile(id: string): string {
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(id)) {
      throw new InputError('bad_rule_id', 'rule ids managed by the API are letters, digits, ".", "_" and "-"');
    }
    return join(this.apiDir, `${id}.yml`);
  }

  private bump(): void {
    this.state.version++;
    this.writeAtomic(this.stateFile, JSON.stringify(this.state));
  }

  private writeAtomic(file: string, text: string): void {
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, file);
  }
}

/** Compiles rule folders and files as they are (offline scanning): nothing disabled, nothing stored. */
export function compileRuleFolders(paths: readonly string[], placeholders: Placeholders): CompiledRuleSet {
  return buildRuleSet(loadSigmaRules(paths, { placeholders }), {
    disabled: new Set(),
    origin: () => 'folder',
    version: 0,
    placeholders,
  });
}

/** Compiles one YAML text (a rule under test) into a rule set of its own, without storing it. */
export function compileRuleText(yaml: string, placeholders: Placeholders): CompiledRuleSet {
  return buildRuleSet(loadSigmaText(yaml, 'request', { placeholders, limits: REQUEST_LIMITS }), {
    disabled: new Set(),
    origin: () => 'api',
    version: 0,
    placeholders,
  });
}

function buildRuleSet(
  loaded: SigmaLoadResult,
  opts: { disabled: Set<string>; origin: (file: string) => RuleOrigin; version: number; placeholders: Placeholders },
): CompiledRuleSet {
  const { disabled, origin } = opts;
  const rejected: RejectedRule[] = [...loaded.rejected];
  const rules: SigmaRule[] = loaded.rules.filter((r) => !disabled.has(r.id));
  const filters: SigmaFilter[] = loaded.filters.filter((f) => !f.id || !disabled.has(f.id));
  const engine = createSigmaEngine({ rules, filters, placeholders: opts.placeholders });
  rejected.push(...engine.rejected);
  const correlations: CompiledCorrelation[] = [];
  const infos: RuleInfo[] = [];
  for (const c of loaded.correlations) {
    try {
      const compiled = compileCorrelation(c.doc, c.file);
      const enabled = !disabled.has(compiled.id);
      if (enabled) correlations.push(compiled);
      infos.push({
        id: compiled.id,
        title: compiled.title,
        level: compiled.level,
        status: String(c.doc.status ?? 'test'),
        kind: 'correlation',
        origin: origin(c.file),
        enabled,
        file: c.file,
      });
    } catch (err) {
      rejected.push({ file: c.file, line: c.line, reason: (err as Error).message });
    }
  }
  for (const r of loaded.rules) {
    infos.push({
      id: r.id,
      title: r.title,
      level: r.level,
      status: r.status,
      kind: 'rule',
      origin: origin(r.file),
      enabled: !disabled.has(r.id),
      file: r.file,
    });
  }
  for (const f of loaded.filters) {
    infos.push({
      id: f.id ?? `${f.file}#filter`,
      title: f.title,
      level: '',
      status: 'filter',
      kind: 'filter',
      origin: origin(f.file),
      enabled: !f.id || !disabled.has(f.id),
      file: f.file,
    });
  }
  const digest = createHash('sha256');
  for (const c of correlations) digest.update(JSON.stringify(c));
  return {
    version: opts.version,
    engine,
    correlations,
    correlationDigest: digest.digest('hex'),
    rules: infos,
    rejected,
  };
}

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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
  /** The tenant whose events alone it runs on; null: a global rule, run on every tenant's events. */
  tenant: string | null;
  title: string;
  level: string;
  status: string;
  kind: 'rule' | 'correlation' | 'filter';
  origin: RuleOrigin;
  enabled: boolean;
  file: string;
}

/** A rule document that could not be loaded, with the scope it was stored in (null: global). */
export type ScopedRejectedRule = RejectedRule & { tenant: string | null };

/** The rules of one tenant, compiled apart: they run on that tenant's events only, beside the global ones. */
export interface TenantRuleSet {
  engine: SigmaEngine;
}

/** A compiled, immutable rule set: what detection runs until the next change. */
export interface CompiledRuleSet {
  version: number;
  /** The global rules and filters (configured folders and global API rules): every tenant's events. */
  engine: SigmaEngine;
  /** Correlations are global rules (a tenant's own correlations are not supported). */
  correlations: CompiledCorrelation[];
  /** Identifies the correlation set, so an unchanged one keeps its in-memory state across reloads. */
  correlationDigest: string;
  /** Rules and filters of single tenants, by tenant. */
  tenants: ReadonlyMap<string, TenantRuleSet>;
  /** Every rule, global and of every tenant: callers show each principal only what it may see. */
  rules: RuleInfo[];
  rejected: ScopedRejectedRule[];
}

/** A rule document validated and compiled on its own, for the API's validation answers. */
export interface ValidatedRule {
  id: string;
  kind: 'rule' | 'correlation' | 'filter';
  title: string;
}

interface RulesState {
  version: number;
  /** Disabled global rules. */
  disabled: string[];
  /** Disabled rules of each tenant. */
  tenantDisabled?: Record<string, string[]>;
}

const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Default of detect.max_rules_per_tenant: rule and filter documents one tenant stores through the API. */
export const DEFAULT_MAX_RULES_PER_TENANT = 1000;

/** The compiled rules of one tenant, kept until that tenant's rules (or the global ids) change. */
interface TenantCache {
  /** Every rule and filter id the tenant's files hold (a global rule taking one of them changes the result). */
  ids: Set<string>;
  engine: SigmaEngine;
  rules: RuleInfo[];
  rejected: ScopedRejectedRule[];
}

/** Refuses (403) what only a global admin may do to global rules. */
export class GlobalScopeError extends VigilError {
  constructor(message: string) {
    super('forbidden_scope', message, { status: 403 });
    this.name = 'GlobalScopeError';
  }
}

/**
 * The rules on disk: configured folders plus API-managed files, the disabled list and a version that
 * changes with every change. `compile()` builds the engines; callers swap them in atomically.
 *
 * Scopes: rules of configured folders and of `<data_dir>/rules` are global (rules stored there before rules
 * had tenants stay there, and so became global); a tenant's rules are in `<data_dir>/tenant-rules/<tenant>`.
 */
export class RuleRepository {
  private readonly apiDir: string;
  private readonly tenantDir: string;
  private readonly stateFile: string;
  private state: RulesState;
  // compile() rebuilds only the scopes changed since the last one: a tenant's rules when it changes, the
  // global rules (and the tenants whose ids a global id change touches) when they change.
  private global: CompiledRuleSet | undefined;
  private readonly tenantCache = new Map<string, TenantCache>();
  private readonly staleTenants = new Set<string>();

  constructor(
    private readonly dataDir: string,
    private readonly folders: readonly string[],
    private readonly placeholders: Placeholders,
    /** detect.max_rules_per_tenant: rule and filter files one tenant stores. */
    private readonly maxRulesPerTenant = DEFAULT_MAX_RULES_PER_TENANT,
  ) {
    this.apiDir = join(dataDir, 'rules');
    this.tenantDir = join(dataDir, 'tenant-rules');
    this.stateFile = join(this.apiDir, 'state.json');
    mkdirSync(this.apiDir, { recursive: true });
    mkdirSync(this.tenantDir, { recursive: true });
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

  /**
   * Stores a validated document under its id in `tenant`'s scope (null: global); `create` distinguishes
   * POST from PUT. A tenant's scope holds rules and filters; correlations are global.
   */
  save(
    yaml: string,
    opts: {
      expectedId?: string;
      create: boolean;
      tenant: string | null;
      /** Runs on the validated document before it is stored (the API's id clash check); throws to refuse. */
      check?: (v: ValidatedRule) => void;
    },
  ): ValidatedRule {
    const v = this.validate(yaml);
    if (opts.expectedId !== undefined && v.id !== opts.expectedId) {
      throw new InputError('id_mismatch', `the document's id ${v.id} is not the id in the path, ${opts.expectedId}`);
    }
    if (opts.tenant !== null && v.kind === 'correlation') {
      throw new GlobalScopeError(
        `correlation ${v.id}: correlations are global rules, which only a global admin adds (with ?scope=global)`,
      );
    }
    const file = this.apiFile(v.id, opts.tenant);
    if (opts.create && existsSync(file)) {
      throw new VigilError('conflict', `rule ${v.id} exists; use PUT /api/v1/rules/${v.id} to change it`, {
        status: 409,
      });
    }
    if (!opts.create && !existsSync(file)) {
      throw new VigilError('not_found', `no API-managed rule ${v.id}`, { status: 404 });
    }
    opts.check?.(v);
    if (opts.create && opts.tenant !== null) {
      const stored = this.tenantFiles(opts.tenant).length;
      if (stored >= this.maxRulesPerTenant) {
        this.onLimit?.('max_rules_per_tenant', 'request');
        throw new VigilError(
          'too_many_rules',
          `tenant ${opts.tenant} holds ${stored} rules, the most detect.max_rules_per_tenant allows (${this.maxRulesPerTenant}); delete one first`,
          { status: 409, details: { limit: 'max_rules_per_tenant', max: this.maxRulesPerTenant } },
        );
      }
      // The folder is made for a tenant's first rule only, never by a read, PUT or DELETE.
      mkdirSync(join(this.tenantDir, opts.tenant), { recursive: true });
    }
    this.writeAtomic(file, yaml);
    this.changed(opts.tenant);
    this.bump();
    return v;
  }

  /** Deletes an API-managed rule of `tenant` (null: global); folder rules are read-only (disable them instead). */
  remove(id: string, tenant: string | null): void {
    const file = this.apiFile(id, tenant);
    if (!existsSync(file)) {
      throw new VigilError('not_found', `no API-managed rule ${id} (rules from folders can only be disabled)`, {
        status: 404,
      });
    }
    rmSync(file);
    this.setDisabled(
      tenant,
      this.disabledOf(tenant).filter((d) => d !== id),
    );
    this.changed(tenant);
    this.bump();
  }

  /** Enables or disables a rule of `tenant` (null: global). */
  setEnabled(id: string, enabled: boolean, tenant: string | null): void {
    const disabled = new Set(this.disabledOf(tenant));
    if (enabled) disabled.delete(id);
    else disabled.add(id);
    this.setDisabled(tenant, [...disabled].sort());
    this.changed(tenant);
    this.bump();
  }

  /** The YAML of an API-managed rule, or of the file a folder rule came from. */
  source(file: string): string {
    return readFileSync(file, 'utf8');
  }

  /**
   * The engines of every folder and API rule, global and of each tenant. The first call loads and compiles
   * everything; later calls rebuild only the scopes changed since (by save, remove and setEnabled), so one
   * tenant's change does not recompile the global rules nor the other tenants'.
   */
  compile(): CompiledRuleSet {
    this.global ??= this.compileGlobal();
    const globalIds = new Set(this.global.rules.map((r) => r.id));
    const tenants = new Map<string, TenantRuleSet>();
    const rules = [...this.global.rules];
    const rejected = [...this.global.rejected];
    const present = new Set<string>();
    for (const tenant of readdirSync(this.tenantDir).sort()) {
      if (!TENANT.test(tenant)) continue;
      present.add(tenant);
      let own = this.tenantCache.get(tenant);
      if (!own || this.staleTenants.has(tenant) || this.globalIdsTouch(own, globalIds)) {
        own = this.compileTenant(tenant, globalIds);
        this.tenantCache.set(tenant, own);
      }
      if (own.engine.rules.length > 0) tenants.set(tenant, { engine: own.engine });
      rules.push(...own.rules);
      rejected.push(...own.rejected);
    }
    for (const tenant of [...this.tenantCache.keys()]) if (!present.has(tenant)) this.tenantCache.delete(tenant);
    this.staleTenants.clear();
    this.lastGlobalIds = globalIds;
    return { ...this.global, version: this.state.version, tenants, rules, rejected };
  }

  private lastGlobalIds = new Set<string>();

  /** Whether a global id change since the last compile touches a tenant's ids (a clash appears or goes). */
  private globalIdsTouch(own: TenantCache, globalIds: ReadonlySet<string>): boolean {
    for (const id of own.ids) if (globalIds.has(id) !== this.lastGlobalIds.has(id)) return true;
    return false;
  }

  private compileGlobal(): CompiledRuleSet {
    const loaded = loadSigmaRules([...this.folders, this.apiDir], { placeholders: this.placeholders });
    const origin = (file: string): RuleOrigin => (file.startsWith(this.apiDir) ? 'api' : 'folder');
    return buildRuleSet(loaded, {
      disabled: new Set(this.state.disabled),
      origin,
      version: this.state.version,
      placeholders: this.placeholders,
    });
  }

  private compileTenant(tenant: string, globalIds: ReadonlySet<string>): TenantCache {
    const loaded = loadSigmaRules(join(this.tenantDir, tenant), { placeholders: this.placeholders });
    const ids = new Set<string>([
      ...loaded.rules.map((r) => r.id),
      ...loaded.filters.flatMap((f) => (f.id ? [f.id] : [])),
    ]);
    const own = buildTenantRules(loaded, tenant, {
      disabled: new Set(this.disabledOf(tenant)),
      globalIds,
      placeholders: this.placeholders,
    });
    return { ids, ...own };
  }

  /** Marks a scope to be rebuilt by the next compile (null: the global rules). */
  private changed(tenant: string | null): void {
    if (tenant === null) this.global = undefined;
    else this.staleTenants.add(tenant);
  }

  /** The rule and filter files a tenant stores. */
  private tenantFiles(tenant: string): string[] {
    const dir = join(this.tenantDir, tenant);
    return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.yml')) : [];
  }

  private apiFile(id: string, tenant: string | null): string {
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(id)) {
      throw new InputError('bad_rule_id', 'rule ids managed by the API are letters, digits, ".", "_" and "-"');
    }
    if (tenant === null) return join(this.apiDir, `${id}.yml`);
    if (!TENANT.test(tenant)) throw new InputError('bad_tenant', `tenant ${tenant} is not a tenant name`);
    return join(this.tenantDir, tenant, `${id}.yml`);
  }

  private disabledOf(tenant: string | null): string[] {
    return tenant === null ? this.state.disabled : (this.state.tenantDisabled?.[tenant] ?? []);
  }

  private setDisabled(tenant: string | null, ids: string[]): void {
    if (tenant === null) this.state.disabled = ids;
    else this.state.tenantDisabled = { ...this.state.tenantDisabled, [tenant]: ids };
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
  const rejected: ScopedRejectedRule[] = loaded.rejected.map((r) => ({ ...r, tenant: null }));
  const rules: SigmaRule[] = loaded.rules.filter((r) => !disabled.has(r.id));
  const filters: SigmaFilter[] = loaded.filters.filter((f) => !f.id || !disabled.has(f.id));
  const engine = createSigmaEngine({ rules, filters, placeholders: opts.placeholders });
  rejected.push(...engine.rejected.map((r) => ({ ...r, tenant: null })));
  const correlations: CompiledCorrelation[] = [];
  const infos: RuleInfo[] = [];
  for (const c of loaded.correlations) {
    try {
      const compiled = compileCorrelation(c.doc, c.file);
      const enabled = !disabled.has(compiled.id);
      if (enabled) correlations.push(compiled);
      infos.push({
        id: compiled.id,
        tenant: null,
        title: compiled.title,
        level: compiled.level,
        status: String(c.doc.status ?? 'test'),
        kind: 'correlation',
        origin: origin(c.file),
        enabled,
        file: c.file,
      });
    } catch (err) {
      rejected.push({ file: c.file, line: c.line, reason: (err as Error).message, tenant: null });
    }
  }
  for (const r of loaded.rules) {
    infos.push({
      id: r.id,
      tenant: null,
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
      tenant: null,
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
    tenants: new Map(),
    rules: infos,
    rejected,
  };
}

/**
 * Compiles the rules and filters of one tenant in an engine of their own, so that its filters touch only
 * its rules and its rule ids never meet another tenant's. Correlations and ids of global rules are refused
 * (an alert id is made of the rule id, tenant and event: the same id twice would be one alert).
 */
function buildTenantRules(
  loaded: SigmaLoadResult,
  tenant: string,
  opts: { disabled: Set<string>; globalIds: ReadonlySet<string>; placeholders: Placeholders },
): { engine: SigmaEngine; rules: RuleInfo[]; rejected: ScopedRejectedRule[] } {
  const { disabled } = opts;
  const rejected: ScopedRejectedRule[] = loaded.rejected.map((r) => ({ ...r, tenant }));
  for (const c of loaded.correlations) {
    rejected.push({ file: c.file, line: c.line, reason: 'correlations are global rules, not a tenant rule', tenant });
  }
  const clash = (id: string | undefined, file: string) => {
    if (id === undefined || !opts.globalIds.has(id)) return false;
    rejected.push({ file, reason: `rule id ${id} is taken by a global rule`, tenant });
    return true;
  };
  const rules = loaded.rules.filter((r) => !clash(r.id, r.file));
  const filters = loaded.filters.filter((f) => !clash(f.id, f.file));
  const engine = createSigmaEngine({
    rules: rules.filter((r) => !disabled.has(r.id)),
    filters: filters.filter((f) => !f.id || !disabled.has(f.id)),
    placeholders: opts.placeholders,
  });
  rejected.push(...engine.rejected.map((r) => ({ ...r, tenant })));
  const infos: RuleInfo[] = [
    ...rules.map(
      (r): RuleInfo => ({
        id: r.id,
        tenant,
        title: r.title,
        level: r.level,
        status: r.status,
        kind: 'rule',
        origin: 'api',
        enabled: !disabled.has(r.id),
        file: r.file,
      }),
    ),
    ...filters.map(
      (f): RuleInfo => ({
        id: f.id ?? `${f.file}#filter`,
        tenant,
        title: f.title,
        level: '',
        status: 'filter',
        kind: 'filter',
        origin: 'api',
        enabled: !f.id || !disabled.has(f.id),
        file: f.file,
      }),
    ),
  ];
  return { engine, rules: infos, rejected };
}

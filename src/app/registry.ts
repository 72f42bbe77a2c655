import { ConfigError } from '../config/load.ts';
import type { Component } from '../lib/component.ts';
import { VigilError } from '../lib/errors.ts';

/**
 * What a module's `init` may read of the others: only the modules it declares. Reading any other module, or
 * reading after `init` returned, throws a {@link ModuleGraphError} naming both modules, so an undeclared
 * dependency shows when the graph is built, never later on a request.
 */
export interface ModuleView<E> {
  /** The value of a module listed in `deps`. */
  get<K extends keyof E & string>(name: K): E[K];
  /** The value of a module listed in `deps` or `optional`; undefined when that module does not run here. */
  find<K extends keyof E & string>(name: K): E[K] | undefined;
}

/** What a module built: the component the app starts and stops (if any), and the value others may read. */
export interface Built<T> {
  component?: Component;
  value: T;
}

/**
 * A named module (Loki's module manager, in small). `E` maps every module name to the value it builds;
 * `B` is what every module may read (configuration, logger, metrics). A module without `init` is an alias:
 * a role such as `ingest` or `all`, which only pulls in its `deps`.
 */
export interface ModuleDef<B, E, K extends keyof E & string = keyof E & string> {
  name: K;
  /** Modules this one reads; they run whenever this one does, and start before it. */
  deps?: readonly (keyof E & string)[];
  /** Modules this one reads when they run on this node; they start before it but are not pulled in. */
  optional?: readonly (keyof E & string)[];
  /** Modules that start before this one when they run; not read, not pulled in. */
  after?: readonly (keyof E & string)[];
  /**
   * Refuses a graph this module cannot keep its promise in (e.g. events acknowledged with nothing to commit
   * them): the reason, said for an operator, or undefined. `runs` tells which modules run on this node.
   */
  refuse?(base: B, runs: (name: keyof E & string) => boolean): string | undefined;
  init?(base: B, view: ModuleView<E>): Built<E[K]>;
}

/** A module graph that cannot be built: an unknown name, a cycle, or a read of an undeclared module. */
export class ModuleGraphError extends VigilError {
  constructor(message: string) {
    super('module_graph', message, { status: 500 });
    this.name = 'ModuleGraphError';
  }
}

/** Declares one module with its value type checked against `E[K]` (an identity at run time). */
export function defineModule<B, E, K extends keyof E & string>(def: ModuleDef<B, E, K>): ModuleDef<B, E> {
  return def as unknown as ModuleDef<B, E>;
}

/**
 * Returns the modules that run for `targets` (roles or module names), each after every module it reads or
 * runs after. Every edge of the whole graph is checked first, so a cycle or an unknown name fails on every
 * node whatever its roles.
 */
export function resolveModules<B, E>(defs: readonly ModuleDef<B, E>[], targets: readonly string[]): ModuleDef<B, E>[] {
  const byName = new Map<string, ModuleDef<B, E>>();
  for (const def of defs) {
    if (byName.has(def.name)) throw new ModuleGraphError(`module ${def.name} is defined twice`);
    byName.set(def.name, def);
  }
  const edges = (def: ModuleDef<B, E>) => [...(def.deps ?? []), ...(def.optional ?? []), ...(def.after ?? [])];
  for (const def of defs) {
    for (const dep of edges(def)) {
      if (!byName.has(dep)) throw new ModuleGraphError(`module ${def.name} depends on unknown module ${dep}`);
    }
  }
  const state = new Map<string, 'visiting' | 'done'>();
  const check = (def: ModuleDef<B, E>, path: string[]) => {
    const s = state.get(def.name);
    if (s === 'done') return;
    if (s === 'visiting') {
      const cycle = [...path.slice(path.indexOf(def.name)), def.name];
      throw new ModuleGraphError(`module dependency cycle: ${cycle.join(' -> ')}`);
    }
    state.set(def.name, 'visiting');
    for (const dep of edges(def)) check(byName.get(dep)!, [...path, def.name]);
    state.set(def.name, 'done');
  };
  for (const def of defs) check(def, []);

  const running = new Set<string>();
  const pull = (name: string) => {
    if (running.has(name)) return;
    running.add(name);
    for (const dep of byName.get(name)!.deps ?? []) pull(dep);
  };
  for (const target of targets) {
    if (!byName.has(target)) throw new ModuleGraphError(`unknown role or module ${target}`);
    pull(target);
  }

  const ordered: ModuleDef<B, E>[] = [];
  const placed = new Set<string>();
  const place = (def: ModuleDef<B, E>) => {
    if (placed.has(def.name)) return;
    placed.add(def.name);
    for (const dep of edges(def)) if (running.has(dep)) place(byName.get(dep)!);
    ordered.push(def);
  };
  for (const target of targets) place(byName.get(target)!);
  return ordered;
}

/** A built graph: its components in start order and the value of every module that ran. */
export interface BuiltGraph {
  modules: string[];
  components: Component[];
  values: ReadonlyMap<string, unknown>;
}

/**
 * Resolves and builds the modules for `targets`. First every running module may refuse the graph (all
 * refusals are reported at once, as a {@link ConfigError}); then each module is built in order, seeing
 * only the modules it declared. Nothing is started.
 */
export function buildModules<B, E>(defs: readonly ModuleDef<B, E>[], targets: readonly string[], base: B): BuiltGraph {
  const ordered = resolveModules(defs, targets);
  const names = new Set(ordered.map((d) => d.name as string));
  const refusals = ordered.flatMap((d) => d.refuse?.(base, (n) => names.has(n)) ?? []);
  if (refusals.length > 0) throw new ConfigError(refusals);

  const values = new Map<string, unknown>();
  const components: Component[] = [];
  for (const def of ordered) {
    if (!def.init) continue;
    let building = true;
    const read = (name: string, declared: readonly string[], how: string) => {
      if (!building) {
        throw new ModuleGraphError(`module ${def.name} read module ${name} after it was built: read it in init`);
      }
      if (!declared.includes(name)) {
        throw new ModuleGraphError(`module ${def.name} reads module ${name}, which it does not declare in ${how}`);
      }
      return values.get(name);
    };
    const view: ModuleView<E> = {
      get: (name) => {
        if (!names.has(name)) throw new ModuleGraphError(`module ${def.name} reads module ${name}, which is not built`);
        return read(name, def.deps ?? [], 'deps') as E[typeof name];
      },
      find: (name) => read(name, [...(def.deps ?? []), ...(def.optional ?? [])], 'deps or optional') as never,
    };
    const built = def.init(base, view);
    building = false;
    values.set(def.name, built.value);
    if (built.component) components.push(built.component);
  }
  return { modules: ordered.map((d) => d.name), components, values };
}

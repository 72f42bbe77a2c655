import type { Component } from '../lib/component.ts';

/** A named module: the roles that need it, the modules it needs, and how to build its component. */
export interface ModuleDef<Ctx> {
  name: string;
  deps: string[];
  /** Roles that run this module; a module also runs when a running module depends on it. */
  roles: string[];
  init(ctx: Ctx): Component;
}

/** Returns the modules to run for `roles`, dependencies first (Loki's module manager, in small). */
export function resolveModules<Ctx>(defs: ModuleDef<Ctx>[], roles: string[]): ModuleDef<Ctx>[] {
  const byName = new Map(defs.map((d) => [d.name, d]));
  const all = roles.includes('all');
  const ordered: ModuleDef<Ctx>[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, from: string) => {
    const def = byName.get(name);
    if (!def) throw new Error(`module ${from} depends on unknown module ${name}`);
    const s = state.get(name);
    if (s === 'done') return;
    if (s === 'visiting') throw new Error(`module dependency cycle through ${name}`);
    state.set(name, 'visiting');
    for (const d of def.deps) visit(d, name);
    state.set(name, 'done');
    ordered.push(def);
  };
  for (const def of defs) if (all || def.roles.some((r) => roles.includes(r))) visit(def.name, 'roles');
  return ordered;
}

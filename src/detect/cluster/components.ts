import type { CompiledCorrelation } from '../correlation/index.ts';

/**
 * Correlations linked by references (a chain: an outer correlation over an inner one) form a component;
 * a component is the unit of correlation state a partition owns, so a chain is always evaluated whole on
 * one node. Its id is the smallest correlation id in it.
 */
export interface CorrelationComponents {
  /** Components fed directly by a matched rule (by its id and name). */
  fedBy(refs: readonly string[]): string[];
  /** The correlations of a component. */
  correlations(component: string): CompiledCorrelation[];
}

export function correlationComponents(correlations: readonly CompiledCorrelation[]): CorrelationComponents {
  const parent = correlations.map((_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) {
      parent[i] = parent[parent[i]];
      i = parent[i];
    }
    return i;
  };
  const byKey = new Map<string, number>();
  correlations.forEach((c, i) => {
    byKey.set(c.id, i);
    if (c.name) byKey.set(c.name, i);
  });
  correlations.forEach((c, i) => {
    for (const ref of c.rules) {
      const j = byKey.get(ref);
      if (j !== undefined) parent[find(i)] = find(j);
    }
  });
  const members = new Map<number, CompiledCorrelation[]>();
  correlations.forEach((c, i) => {
    const root = find(i);
    members.set(root, [...(members.get(root) ?? []), c]);
  });
  const idOf = new Map<number, string>();
  const byId = new Map<string, CompiledCorrelation[]>();
  for (const [root, list] of members) {
    const id = list.map((c) => c.id).sort()[0];
    idOf.set(root, id);
    byId.set(id, list);
  }
  const feeds = new Map<string, Set<string>>();
  correlations.forEach((c, i) => {
    for (const ref of c.rules) {
      if (byKey.has(ref)) continue;
      const set = feeds.get(ref) ?? new Set<string>();
      set.add(idOf.get(find(i))!);
      feeds.set(ref, set);
    }
  });
  return {
    fedBy(refs) {
      const out = new Set<string>();
      for (const r of refs) for (const c of feeds.get(r) ?? []) out.add(c);
      return [...out];
    },
    correlations: (component) => byId.get(component) ?? [],
  };
}

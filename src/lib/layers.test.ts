import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Layers: no two top-level folders of src/ import each other, however indirectly (issue 11). Every import of
// every source file counts, tests and type-only imports included: a type import is a dependency of the
// design even when the compiler erases it, and a test that needs a higher layer belongs in test/.

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The module specifiers a TypeScript/JavaScript source imports: static, re-exported, side-effect, dynamic. */
function importSpecifiers(source: string): string[] {
  // Comments go first, so an example in a doc comment is not an import.
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const found: string[] = [];
  const statement =
    /(?:^|[;}])\s*(?:import|export)\s+(?:type\s+)?(?:[\w$*{},\s]*?\s*from\s*)?['"]([^'"\n]+)['"]|\bimport\(\s*['"]([^'"\n]+)['"]\s*\)/gm;
  for (const m of code.matchAll(statement)) found.push(m[1] ?? m[2]);
  return found;
}

/** Edges between top-level folders: `from -> to` with the files that make them. */
type FolderEdges = Map<string, Map<string, string[]>>;

/** The top-level folder of src/ a path is in (a file directly in src/ is its own node), or undefined outside. */
function folderOf(path: string): string | undefined {
  const parts = relative(SRC, path).split(sep);
  if (parts[0] === '..' || parts[0] === '') return undefined;
  return parts[0];
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : sourceFiles(path);
    return /\.(ts|mts|mjs)$/.test(e.name) ? [path] : [];
  });
}

function folderEdges(): FolderEdges {
  const edges: FolderEdges = new Map();
  for (const file of sourceFiles(SRC)) {
    const from = folderOf(file);
    if (!from) continue;
    for (const spec of importSpecifiers(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const to = folderOf(resolve(dirname(file), spec));
      if (!to || to === from) continue;
      const byTarget = edges.get(from) ?? new Map<string, string[]>();
      edges.set(from, byTarget);
      byTarget.set(to, [...(byTarget.get(to) ?? []), relative(SRC, file)]);
    }
  }
  return edges;
}

/**
 * The cycles of a graph: in each strongly connected component of more than one node, the shortest way around
 * through each of its nodes, named from its first node (by name), e.g. ['api', 'users', 'api'].
 */
function cycles(graph: ReadonlyMap<string, Iterable<string>>): string[][] {
  const next = (n: string) => [...(graph.get(n) ?? [])];
  const nodes = [...new Set([...graph.keys(), ...[...graph.values()].flatMap((t) => [...t])])].sort();
  // Tarjan's strongly connected components.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (n: string) => {
    index.set(n, index.size);
    low.set(n, index.get(n) as number);
    stack.push(n);
    onStack.add(n);
    for (const m of next(n)) {
      if (!index.has(m)) {
        visit(m);
        low.set(n, Math.min(low.get(n) as number, low.get(m) as number));
      } else if (onStack.has(m)) {
        low.set(n, Math.min(low.get(n) as number, index.get(m) as number));
      }
    }
    if (low.get(n) === index.get(n)) {
      const component: string[] = [];
      let m: string;
      do {
        m = stack.pop() as string;
        onStack.delete(m);
        component.push(m);
      } while (m !== n);
      if (component.length > 1) components.push(component.sort());
    }
  };
  for (const n of nodes) if (!index.has(n)) visit(n);
  // Around each node of a component, the shortest way back to it (breadth first); the same loop found from
  // two of its nodes is named once, from its first node by name.
  const around = (start: string, inside: Set<string>): string[] => {
    const cameFrom = new Map<string, string>();
    const queue = [start];
    while (queue.length > 0) {
      const n = queue.shift() as string;
      for (const m of next(n)
        .filter((x) => inside.has(x))
        .sort()) {
        if (m === start) {
          const path = [start];
          for (let at = n; at !== start; at = cameFrom.get(at) as string) path.splice(1, 0, at);
          return path;
        }
        if (!cameFrom.has(m)) {
          cameFrom.set(m, n);
          queue.push(m);
        }
      }
    }
    throw new Error(`no way around ${start}`);
  };
  const named = new Map<string, string[]>();
  for (const component of components) {
    const inside = new Set(component);
    for (const start of component) {
      const loop = around(start, inside);
      const first = loop.indexOf([...loop].sort()[0]);
      const rotated = [...loop.slice(first), ...loop.slice(0, first)];
      named.set(rotated.join(), [...rotated, rotated[0]]);
    }
  }
  return [...named.values()].sort((a, b) => a.join().localeCompare(b.join()));
}

test('import statements are found in every form, and not in comments', () => {
  const cases: [string, string, string[]][] = [
    ['named', "import { a, type B } from '../x/index.ts';", ['../x/index.ts']],
    ['type only', "import type { A } from './a.ts';", ['./a.ts']],
    ['default and namespace', 'import pg from \'pg\';\nimport * as fs from "node:fs";', ['pg', 'node:fs']],
    ['multi-line', "import {\n  a,\n  type B,\n} from '../y.ts';", ['../y.ts']],
    ['re-export', "export { a } from './a.ts';\nexport * from './b.ts';", ['./a.ts', './b.ts']],
    ['side effect', "import '../../src/db/pglite-worker.mjs';", ['../../src/db/pglite-worker.mjs']],
    ['dynamic', "const m = await import('../z.ts');", ['../z.ts']],
    ['after a block', "if (x) {}\nimport { c } from './c.ts';", ['./c.ts']],
    ['doc comment', "/** e.g. import { x } from '../api/auth.ts' */\nconst x = 1;", []],
    ['line comment', "// import { x } from '../api/auth.ts';\nconst x = 1;", []],
    ['a string that mentions import', "const s = 'we import from here';", []],
  ];
  for (const [name, source, want] of cases) assert.deepEqual(importSpecifiers(source), want, name);
});

test('cycles are named by the shortest way around each folder of a tangle', () => {
  const g = (edges: Record<string, string[]>) => new Map(Object.entries(edges));
  const cases: [string, Map<string, string[]>, string[][]][] = [
    ['layered', g({ api: ['users', 'lib'], users: ['db', 'lib'], db: ['lib'] }), []],
    ['two folders', g({ api: ['users'], users: ['api'] }), [['api', 'users', 'api']]],
    [
      'a loop of four',
      g({ api: ['users'], users: ['incidents'], incidents: ['notify'], notify: ['api'] }),
      [['api', 'users', 'incidents', 'notify', 'api']],
    ],
    [
      'a tangle, by the short way around each folder',
      g({ a: ['b', 'c'], b: ['c'], c: ['a'] }),
      [
        ['a', 'b', 'c', 'a'],
        ['a', 'c', 'a'],
      ],
    ],
    [
      'loops that share a folder',
      g({ api: ['users'], users: ['api', 'incidents'], incidents: ['users'] }),
      [
        ['api', 'users', 'api'],
        ['incidents', 'users', 'incidents'],
      ],
    ],
    [
      'two tangles',
      g({ a: ['b'], b: ['a'], c: ['d'], d: ['c'], e: ['a', 'c'] }),
      [
        ['a', 'b', 'a'],
        ['c', 'd', 'c'],
      ],
    ],
  ];
  for (const [name, graph, want] of cases) assert.deepEqual(cycles(graph), want, name);
});

test('no two top-level folders of src/ import each other, directly or through others', () => {
  const edges = folderEdges();
  assert.ok((edges.get('api')?.size ?? 0) > 0, 'the import scan sees the imports of src/api');
  const found = cycles(new Map([...edges].map(([from, to]) => [from, [...to.keys()]])));
  const explain = (cycle: string[]) =>
    `${cycle.join(' -> ')}\n${cycle
      .slice(1)
      .map((to, i) => {
        const files = edges.get(cycle[i])?.get(to) ?? [];
        return `    ${cycle[i]} -> ${to}: ${[...new Set(files)].slice(0, 3).join(', ')}`;
      })
      .join('\n')}`;
  assert.deepEqual(found, [], `import cycles between top-level folders of src/:\n${found.map(explain).join('\n')}`);
});

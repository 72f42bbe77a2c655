import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../config/load.ts';
import type { Component } from '../lib/component.ts';
import { buildModules, type ModuleDef, ModuleGraphError, resolveModules } from './registry.ts';
import { modulesFor } from './index.ts';

type Values = Record<string, string | undefined>;
type Def = ModuleDef<{ log: string[] }, Values>;

const component = (name: string): Component => ({
  name,
  start: async () => {},
  stop: async () => {},
  health: () => ({ ok: true }),
});

/** A module that builds a component named after it, whose value lists what it read. */
function m(name: string, opts: Partial<Def> & { reads?: string[]; finds?: string[] } = {}): Def {
  return {
    name,
    deps: opts.deps,
    optional: opts.optional,
    after: opts.after,
    refuse: opts.refuse,
    init(base, view) {
      base.log.push(name);
      const read = [
        ...(opts.reads ?? []).map((d) => `${d}=${view.get(d)}`),
        ...(opts.finds ?? []).map((d) => `${d}=${view.find(d)}`),
      ];
      return { component: component(name), value: `${name}(${read.join(',')})` };
    },
  };
}

const names = (defs: Def[]) => defs.map((d) => d.name);

test('modules are ordered after what they read or follow, and only what the targets need runs', () => {
  const defs = [
    m('api', { deps: ['db'], optional: ['store'], after: ['intake'] }),
    m('intake', { deps: ['bus'] }),
    m('store', { deps: ['bus'] }),
    m('bus'),
    m('db'),
    m('unused', { deps: ['db'] }),
    { name: 'write', deps: ['intake', 'store'] },
    { name: 'read', deps: ['api'] },
    { name: 'all', deps: ['read', 'write'] },
  ] as Def[];
  const cases: [string[], string[]][] = [
    [['all'], ['db', 'bus', 'store', 'intake', 'api', 'read', 'write', 'all']],
    [['read'], ['db', 'api', 'read']],
    [['write'], ['bus', 'intake', 'store', 'write']],
    [
      ['read', 'write'],
      ['db', 'bus', 'store', 'intake', 'api', 'read', 'write'],
    ],
    [['store'], ['bus', 'store']],
  ];
  for (const [targets, want] of cases) assert.deepEqual(names(resolveModules(defs, targets)), want, targets.join(','));
});

test('a dependency cycle is an error naming the cycle, whatever the targets', () => {
  const defs = [m('a', { deps: ['b'] }), m('b', { optional: ['c'] }), m('c', { after: ['a'] }), m('d')];
  for (const targets of [['a'], ['d']]) {
    assert.throws(
      () => resolveModules(defs, targets),
      (err: unknown) => err instanceof ModuleGraphError && /cycle: a -> b -> c -> a/.test(err.message),
    );
  }
});

test('an unknown dependency or target is an error naming both', () => {
  assert.throws(() => resolveModules([m('a', { deps: ['nope'] })], ['a']), /module a depends on unknown module nope/);
  assert.throws(() => resolveModules([m('a')], ['b']), /unknown role or module b/);
  assert.throws(() => resolveModules([m('a'), m('a')], ['a']), /module a is defined twice/);
});

test('a module reads what it declares: deps with get, optional ones with find (undefined when not running)', () => {
  const log: string[] = [];
  const defs = [m('a'), m('b'), m('c', { deps: ['a'], optional: ['b'], reads: ['a'], finds: ['a', 'b'] })];
  const graph = buildModules(defs, ['c'], { log });
  assert.deepEqual(log, ['a', 'c']);
  assert.equal(graph.values.get('c'), 'c(a=a(),a=a(),b=undefined)');
  assert.deepEqual(
    graph.components.map((c) => c.name),
    ['a', 'c'],
  );
  const both = buildModules(defs, ['b', 'c'], { log: [] });
  assert.equal(both.values.get('c'), 'c(a=a(),a=a(),b=b())');
});

test('reading an undeclared module fails when the graph is built, naming both modules', () => {
  const cases: [string, Def[], RegExp][] = [
    [
      'undeclared',
      [m('store'), m('bus', { reads: ['store'] })],
      /module bus reads module store, which it does not declare in deps/,
    ],
    [
      'optional read with get',
      [m('store'), m('bus', { optional: ['store'], reads: ['store'] })],
      /module bus reads module store, which it does not declare in deps/,
    ],
    [
      'after is not a read',
      [m('store'), m('bus', { after: ['store'], finds: ['store'] })],
      /module bus reads module store, which it does not declare in deps or optional/,
    ],
  ];
  for (const [what, defs, message] of cases) {
    assert.throws(
      () => buildModules(defs, ['store', 'bus'], { log: [] }),
      (err: unknown) => err instanceof ModuleGraphError && message.test(err.message),
      what,
    );
  }
});

test('a read after init (from a closure kept for later) fails, naming both modules', () => {
  let later: (() => unknown) | undefined;
  const defs: Def[] = [
    m('store'),
    {
      name: 'api',
      deps: ['store'],
      init(_base, view) {
        later = () => view.get('store');
        return { value: undefined };
      },
    },
  ];
  buildModules(defs, ['api'], { log: [] });
  assert.throws(() => later?.(), /module api read module store after it was built/);
});

test('every refusal of the running modules is reported at once as a configuration error, before any init', () => {
  const log: string[] = [];
  const defs: Def[] = [
    m('bus', { refuse: (_b, runs) => (runs('store') ? undefined : 'bus: nothing commits the events') }),
    m('intake', { deps: ['bus'], refuse: () => 'intake: no port' }),
    m('store', { deps: ['bus'] }),
    m('idle', { refuse: () => 'idle: never runs, never refuses' }),
  ];
  assert.throws(
    () => buildModules(defs, ['intake'], { log }),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.problems.length === 2 &&
      err.problems[0] === 'bus: nothing commits the events' &&
      err.problems[1] === 'intake: no port',
  );
  assert.deepEqual(log, [], 'nothing was built');
});

test("Vigil's roles are aliases of the modules a node of that role runs", () => {
  const cases: [string[], string[], string[]][] = [
    // roles, modules that must run, modules that must not
    [['all'], ['event-store', 'materialize', 'detector', 'alert-path', 'intake-http', 'server'], []],
    [['ingest'], ['bus', 'intake-http', 'intake-syslog', 'server'], ['event-store', 'materialize', 'detector']],
    [['store'], ['event-store', 'materialize', 'backup'], ['intake-http', 'detector', 'server']],
    [['detect'], ['detector', 'alert-path', 'incidents', 'notify'], ['intake-http', 'materialize', 'server']],
    // An api node holds no events: its searches go to a store node, never to an empty local engine.
    [['api'], ['search', 'incidents', 'users', 'server'], ['event-store', 'bus', 'intake-http', 'detector']],
  ];
  for (const [roles, present, absent] of cases) {
    const modules = modulesFor(roles);
    for (const name of present) assert.ok(modules.includes(name), `${roles} runs ${name}`);
    for (const name of absent) assert.ok(!modules.includes(name), `${roles} does not run ${name}`);
  }
  const all = modulesFor(['all']);
  const before = (a: string, b: string) => assert.ok(all.indexOf(a) < all.indexOf(b), `${a} starts before ${b}`);
  before('cluster', 'bus');
  before('materialize', 'intake-http');
  before('alert-path', 'intake-http');
  before('alert-path', 'intake-syslog');
  for (const name of all.filter((n) => !['server', 'ingest', 'api', 'all'].includes(n))) before(name, 'server');
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { FieldValue, NormalizedEvent } from '../../lib/event.ts';
import { createSigmaEngine } from './engine.ts';
import { loadSigmaText, REQUEST_LIMITS } from './load.ts';

function event(layout: string, fields: Record<string, FieldValue>): NormalizedEvent {
  return {
    id: 'e',
    timestamp: 0,
    ingested: 0,
    tenant: 't',
    source: 'http',
    layout: layout as NormalizedEvent['layout'],
    raw: JSON.stringify(fields),
    fields: Object.assign(Object.create(null), fields),
  };
}

// Found by src/detect/sigma/load.fuzz.test.ts: the mapping tables are plain objects indexed by the names a
// rule writes, so `constructor` resolved to Object's constructor and every event of a Windows layout threw a
// TypeError in the engine (a rule the API had accepted, as binding is lazy).
describe('field names of Object members in rules', () => {
  // `__proto__` is left out: the loader reads YAML maps into plain objects, where it is no key (the search is
  // refused as empty, a clear 400).
  const names = ['constructor', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf'];
  for (const layout of ['ecs', 'windows', 'evtx', 'json', 'syslog']) {
    for (const category of [undefined, 'process_creation', 'constructor']) {
      test(`are plain field names in layout ${layout}, category ${category ?? 'none'}`, () => {
        // Each name must behave as an ordinary field name (`FuzzField`) does: same matches, no exception.
        const run = (name: string) => {
          const text = `title: t
id: 0f5e1a40-0000-4000-8000-000000000001
logsource: { product: windows${category ? `, category: ${category}` : ''} }
detection:
  sel: { ${name}: fuzz }
  condition: sel
`;
          const loaded = loadSigmaText(text, 'request', { limits: REQUEST_LIMITS });
          assert.deepEqual(loaded.rejected, [], name);
          const engine = createSigmaEngine({ rules: loaded.rules, placeholders: {} });
          const base = { Channel: 'Security', EventID: 4688, 'event.code': '4688' };
          return [
            engine.match(event(layout, base)).length,
            engine.match(event(layout, { ...base, [name]: 'fuzz' })).length,
            engine.fieldValue(event(layout, base), name),
          ];
        };
        const expected = run('FuzzField');
        for (const name of names) assert.deepEqual(run(name), expected, `${name} in ${layout}`);
      });
    }
  }
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bindCondition, type EvalCtx } from './compile.ts';
import { ConditionError, MAX_CONDITION_DEPTH, parseCondition } from './condition.ts';

const IDS = ['sel', 'sel_a', 'sel_b', 'filter', 'filter_x', 'keywords', '_hidden'];

/** Evaluates a condition with each identifier set to the truth value given. */
function evaluate(cond: string, truth: Record<string, boolean>): boolean {
  const node = parseCondition(cond, IDS);
  const searches = new Map(IDS.map((id) => [id, () => truth[id] ?? false]));
  return bindCondition(node, searches)({} as EvalCtx);
}

describe('condition: operators and precedence (or < and < not < x of < parentheses)', () => {
  const cases: { cond: string; truth: Record<string, boolean>; want: boolean }[] = [
    { cond: 'sel', truth: { sel: true }, want: true },
    { cond: 'sel and filter', truth: { sel: true }, want: false },
    { cond: 'sel or filter', truth: { filter: true }, want: true },
    { cond: 'sel and not filter', truth: { sel: true, filter: true }, want: false },
    { cond: 'not sel', truth: {}, want: true },
    { cond: 'not not sel', truth: { sel: true }, want: true },
    // and binds tighter than or
    { cond: 'sel or filter and keywords', truth: { sel: true }, want: true },
    { cond: 'sel and filter or keywords', truth: { keywords: true }, want: true },
    { cond: '(sel or filter) and keywords', truth: { sel: true }, want: false },
    // not binds tighter than and
    { cond: 'not sel and filter', truth: { sel: false, filter: true }, want: true },
    { cond: 'not (sel and filter)', truth: { sel: true, filter: false }, want: true },
    { cond: '1 of sel_*', truth: { sel_b: true }, want: true },
    { cond: 'all of sel_*', truth: { sel_a: true }, want: false },
    { cond: 'all of sel_*', truth: { sel_a: true, sel_b: true }, want: true },
    { cond: 'sel and not 1 of filter*', truth: { sel: true, filter_x: true }, want: false },
    { cond: '1 of them', truth: { keywords: true }, want: true },
    // `them` leaves out identifiers starting with an underscore
    { cond: '1 of them', truth: { _hidden: true }, want: false },
    {
      cond: 'all of them',
      truth: { sel: true, sel_a: true, sel_b: true, filter: true, filter_x: true, keywords: true },
      want: true,
    },
    {
      cond: 'all of *',
      truth: { sel: true, sel_a: true, sel_b: true, filter: true, filter_x: true, keywords: true },
      want: false,
    },
    { cond: 'SEL_A AND Sel_b', truth: {}, want: false },
    { cond: 'sel_a AND sel_b', truth: { sel_a: true, sel_b: true }, want: true },
    { cond: '2 of sel*', truth: { sel: true, sel_b: true }, want: true },
    { cond: '2 of sel*', truth: { sel: true }, want: false },
  ];
  for (const c of cases) {
    if (c.cond === 'SEL_A AND Sel_b') {
      it('identifiers are case-sensitive', () => assert.throws(() => parseCondition(c.cond, IDS), ConditionError));
      continue;
    }
    it(`${c.cond} with ${JSON.stringify(c.truth)} is ${c.want}`, () => assert.equal(evaluate(c.cond, c.truth), c.want));
  }
});

describe('condition: errors', () => {
  const cases: { cond: string; legacy: boolean; message: RegExp }[] = [
    { cond: 'selection | count() by src_ip > 10', legacy: true, message: /legacy aggregation/ },
    { cond: 'sel | near filter', legacy: true, message: /near/ },
    { cond: 'unknown', legacy: false, message: /undefined search identifier 'unknown'/ },
    { cond: 'sel and', legacy: false, message: /ends unexpectedly/ },
    { cond: '(sel', legacy: false, message: /expected '\)'/ },
    { cond: 'sel)', legacy: false, message: /unexpected '\)'/ },
    { cond: '1 of nothing*', legacy: false, message: /matches no search identifier/ },
    { cond: '', legacy: false, message: /empty/ },
    { cond: 'sel filter', legacy: false, message: /unexpected 'filter'/ },
  ];
  for (const c of cases) {
    it(JSON.stringify(c.cond), () => {
      assert.throws(
        () => parseCondition(c.cond, IDS),
        (err: unknown) => err instanceof ConditionError && err.legacy === c.legacy && c.message.test(err.message),
      );
    });
  }
});

describe('condition: nesting is bounded by MAX_CONDITION_DEPTH, so no condition overflows the stack', () => {
  const cases: { name: string; cond: string; ok: boolean }[] = [
    { name: '64 parentheses', cond: `${'('.repeat(64)}sel${')'.repeat(64)}`, ok: true },
    { name: '64 nots', cond: `${'not '.repeat(64)}sel`, ok: true },
    { name: '32 nots each in parentheses', cond: `${'not ('.repeat(32)}sel${')'.repeat(32)}`, ok: true },
    { name: '65 parentheses', cond: `${'('.repeat(65)}sel${')'.repeat(65)}`, ok: false },
    { name: '65 nots', cond: `${'not '.repeat(65)}sel`, ok: false },
    { name: '3,000 parentheses', cond: `${'('.repeat(3000)}sel${')'.repeat(3000)}`, ok: false },
    { name: '5,000 nots', cond: `${'not '.repeat(5000)}sel`, ok: false },
    { name: '100,000 unclosed parentheses', cond: `${'('.repeat(100_000)}sel`, ok: false },
    // Depth counts open levels, not their total: many siblings stay fine.
    { name: '1,000 sibling groups', cond: Array(1000).fill('(sel)').join(' or '), ok: true },
  ];
  for (const c of cases) {
    it(`${c.name}: ${c.ok ? 'parsed' : 'refused naming max_condition_depth'}`, () => {
      if (c.ok) {
        assert.ok(parseCondition(c.cond, IDS));
        return;
      }
      assert.throws(
        () => parseCondition(c.cond, IDS),
        (err: unknown) =>
          err instanceof ConditionError &&
          err.limit === 'max_condition_depth' &&
          err.message.includes(`more than ${MAX_CONDITION_DEPTH} levels deep (limit max_condition_depth)`),
      );
    });
  }
});

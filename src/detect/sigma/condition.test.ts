import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bindCondition, type EvalCtx } from './compile.ts';
import { ConditionError, parseCondition } from './condition.ts';

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

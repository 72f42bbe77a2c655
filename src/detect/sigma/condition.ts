/**
 * The Sigma condition language: `and`, `or`, `not`, parentheses, `1 of pattern`, `all of pattern`, `1 of them`,
 * `all of them`. Precedence, least to most binding: or, and, not, `x of`, parentheses.
 */

import { RE2JS } from 're2js';

export type CondNode =
  | { t: 'id'; name: string }
  | { t: 'and'; items: CondNode[] }
  | { t: 'or'; items: CondNode[] }
  | { t: 'not'; item: CondNode }
  | { t: 'of'; count: number | 'all'; pattern: string; names: string[] };

/**
 * The deepest nesting of parentheses and `not`s a condition may have. The parser and every walk of the tree
 * recurse once per level, so a condition of 3,000 `(` or 5,000 `not`s overflowed the stack (a 500 on the
 * rules API, a node that would not start). The SigmaHQ corpus (2026-12) nests at most 4 levels; 64 is the
 * YAML `max_depth` of SigmaLoadLimits.
 */
export const MAX_CONDITION_DEPTH = 64;

/** A condition that cannot be parsed; `legacy` marks v1 aggregation syntax (`| count() by`, `| near`). */
export class ConditionError extends Error {
  readonly legacy: boolean;
  /** Set when the condition passes a bound rather than being malformed. */
  readonly limit?: 'max_condition_depth';
  constructor(message: string, legacy = false, limit?: 'max_condition_depth') {
    super(message);
    this.name = 'ConditionError';
    this.legacy = legacy;
    this.limit = limit;
  }
}

const KEYWORDS = new Set(['and', 'or', 'not', 'of', 'them', 'all']);

function tokenize(text: string): string[] {
  const tokens: string[] = [];
  const re = /\s*(\(|\)|\||[^\s()|]+)/y;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) {
      if (text.slice(pos).trim() === '') break;
      throw new ConditionError(`unexpected text '${text.slice(pos)}'`);
    }
    tokens.push(m[1]);
    pos = re.lastIndex;
  }
  return tokens;
}

/** RE2, so that a glob of many `*`s costs linear time against a long identifier (a RegExp backtracks). */
function globToRegExp(pattern: string): RE2JS {
  const src = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return RE2JS.compile(`^${src}$`, RE2JS.DOTALL);
}

/**
 * Parses one condition string against the search identifiers of its detection. `x of` patterns are resolved
 * here, so the tree names identifiers only; unknown identifiers and empty patterns are errors.
 */
export function parseCondition(text: string, identifiers: readonly string[]): CondNode {
  const tokens = tokenize(text);
  if (tokens.length === 0) throw new ConditionError('the condition is empty');
  const pipe = tokens.indexOf('|');
  if (pipe >= 0) {
    const what = tokens[pipe + 1] ?? '';
    throw new ConditionError(
      `legacy aggregation syntax '| ${what}' is not part of Sigma v2; express it as a correlation rule`,
      true,
    );
  }
  const known = new Set(identifiers);
  let i = 0;
  let depth = 0;
  const deeper = (): void => {
    if (++depth > MAX_CONDITION_DEPTH) {
      throw new ConditionError(
        `the condition nests parentheses and 'not' more than ${MAX_CONDITION_DEPTH} levels deep (limit max_condition_depth)`,
        false,
        'max_condition_depth',
      );
    }
  };
  const peek = (): string | undefined => tokens[i];
  const lower = (t: string | undefined): string | undefined => t?.toLowerCase();

  const parseOr = (): CondNode => {
    const items = [parseAnd()];
    while (lower(peek()) === 'or') {
      i++;
      items.push(parseAnd());
    }
    return items.length === 1 ? items[0] : { t: 'or', items };
  };
  const parseAnd = (): CondNode => {
    const items = [parseNot()];
    while (lower(peek()) === 'and') {
      i++;
      items.push(parseNot());
    }
    return items.length === 1 ? items[0] : { t: 'and', items };
  };
  const parseNot = (): CondNode => {
    if (lower(peek()) === 'not') {
      i++;
      deeper();
      const item = parseNot();
      depth--;
      return { t: 'not', item };
    }
    return parsePrimary();
  };
  const parsePrimary = (): CondNode => {
    const tok = peek();
    if (tok === undefined) throw new ConditionError('the condition ends unexpectedly');
    if (tok === '(') {
      i++;
      deeper();
      const inner = parseOr();
      if (peek() !== ')') throw new ConditionError(`expected ')' but found '${peek() ?? 'the end'}'`);
      i++;
      depth--;
      return inner;
    }
    if (tok === ')') throw new ConditionError(`unexpected ')'`);
    const lt = tok.toLowerCase();
    if ((lt === 'all' || /^\d+$/.test(lt)) && lower(tokens[i + 1]) === 'of') {
      i += 2;
      const target = peek();
      if (target === undefined || target === '(' || target === ')') {
        throw new ConditionError(`'${tok} of' must be followed by a pattern or 'them'`);
      }
      i++;
      const count = lt === 'all' ? 'all' : Number(lt);
      if (count === 0) throw new ConditionError(`'0 of' is not a valid quantifier`);
      let names: string[];
      if (target.toLowerCase() === 'them') {
        names = identifiers.filter((n) => !n.startsWith('_'));
      } else {
        const re = globToRegExp(target);
        names = identifiers.filter((n) => re.test(n));
      }
      if (names.length === 0) throw new ConditionError(`'${tok} of ${target}' matches no search identifier`);
      return { t: 'of', count, pattern: target, names };
    }
    if (KEYWORDS.has(lt)) throw new ConditionError(`unexpected keyword '${tok}'`);
    if (!known.has(tok)) throw new ConditionError(`the condition references an undefined search identifier '${tok}'`);
    i++;
    return { t: 'id', name: tok };
  };

  const node = parseOr();
  if (i < tokens.length) throw new ConditionError(`unexpected '${tokens[i]}' after the end of the expression`);
  return node;
}

/** The identifiers a condition tree refers to. */
export function conditionIdentifiers(node: CondNode, out = new Set<string>()): Set<string> {
  switch (node.t) {
    case 'id':
      out.add(node.name);
      break;
    case 'and':
    case 'or':
      for (const x of node.items) conditionIdentifiers(x, out);
      break;
    case 'not':
      conditionIdentifiers(node.item, out);
      break;
    case 'of':
      for (const n of node.names) out.add(n);
      break;
  }
  return out;
}

import { isIPv4, isIPv6 } from 'node:net';
import { lookup } from '../lib/lookup.ts';
import type {
  Aggregate,
  AggregateFn,
  Bound,
  FilterNode,
  Pipe,
  QueryAst,
  SortKey,
  Span,
  Value,
  ValuePart,
} from './ast.ts';
import { QuerySyntaxError } from './errors.ts';

/** The longest query text accepted, in characters. */
export const MAX_QUERY_LENGTH = 10_000;
/** The most leaf terms (field matches, words, ranges) a query may hold. */
export const MAX_TERMS = 200;
/** The deepest nesting of parentheses and NOTs; ClickHouse refuses deep ASTs anyway. */
export const MAX_DEPTH = 64;

/** The pipe commands, in the order the error hint lists them. */
export const PIPE_COMMANDS = ['stats', 'timechart', 'where', 'sort', 'head', 'limit', 'fields'] as const;

const AGGREGATES: Readonly<Record<string, AggregateFn>> = lookup({
  count: 'count',
  dc: 'dc',
  distinct_count: 'dc',
  sum: 'sum',
  avg: 'avg',
  min: 'min',
  max: 'max',
  values: 'values',
});

/** A field name: letters, digits, `_`, `@`, `#`, `.`, `-`, starting with a letter, `_`, `@` or `#`. */
const FIELD = /[A-Za-z_@#][A-Za-z0-9_@#.-]*/y;
const FIELD_START = /[A-Za-z_@#]/;
const FIELD_CHAR = /[A-Za-z0-9_@#.-]/;
const WORD = /[A-Za-z_]+/y;
const SPAN = /(\d{1,6})([smhd])(?![A-Za-z0-9])/y;
const SPAN_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;
const CIDR_V4 = /^\d{1,3}(?:\.\d{1,3}){3}\/\d{1,3}$/;
const CIDR_V6 = /^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\/\d{1,3}$/;

/**
 * Parses a query: a Lucene/KQL-style filter, then `|`-separated pipes. Throws QuerySyntaxError with the
 * 1-based column of the problem and a hint. Does not check field names against the store; the compiler does.
 */
export function parseQuery(text: string): QueryAst {
  return new Parser(text).parse();
}

/** Whether `name` is a valid field name (the grammar the compiler trusts to quote nothing). */
export function isFieldName(name: string): boolean {
  FIELD.lastIndex = 0;
  const m = FIELD.exec(name);
  return m !== null && m[0].length === name.length;
}

class Parser {
  private pos = 0;
  private terms = 0;
  private depth = 0;

  constructor(private readonly src: string) {}

  parse(): QueryAst {
    if (this.src.length > MAX_QUERY_LENGTH) {
      this.fail(`query is longer than ${MAX_QUERY_LENGTH} characters`, MAX_QUERY_LENGTH);
    }
    this.skipWs();
    let filter: FilterNode | null = null;
    if (!this.atEnd() && !this.atPipe()) filter = this.parseOr(undefined);
    this.expectFilterEnd();
    const pipes: Pipe[] = [];
    while (this.atPipe()) {
      this.pos++;
      pipes.push(this.parsePipe());
    }
    return { filter, pipes };
  }

  // ---- filter ----

  private parseOr(field: string | undefined): FilterNode {
    const start = this.pos;
    const children = [this.parseAnd(field)];
    for (;;) {
      this.skipWs();
      let op: string;
      if (this.keyword('OR')) op = 'OR';
      else if (this.src.startsWith('||', this.pos)) op = '||';
      else break;
      this.pos += op.length;
      this.requireTerm(op);
      children.push(this.parseAnd(field));
    }
    return children.length === 1 ? children[0] : { type: 'or', children, position: start + 1 };
  }

  private parseAnd(field: string | undefined): FilterNode {
    const start = this.pos;
    const children = [this.parseUnary(field)];
    for (;;) {
      this.skipWs();
      if (this.atTermEnd() || this.keyword('OR') || this.src.startsWith('||', this.pos)) break;
      if (this.keyword('AND')) {
        this.pos += 3;
        this.requireTerm('AND');
      } else if (this.src.startsWith('&&', this.pos)) {
        this.pos += 2;
        this.requireTerm('&&');
      }
      children.push(this.parseUnary(field));
    }
    return children.length === 1 ? children[0] : { type: 'and', children, position: start + 1 };
  }

  private parseUnary(field: string | undefined): FilterNode {
    this.skipWs();
    const start = this.pos;
    let op: string | undefined;
    if (this.keyword('NOT')) op = 'NOT';
    else if (this.peek('!') && !this.src.startsWith('!=', this.pos)) op = '!';
    else if (this.peek('-') && this.pos + 1 < this.src.length && !/\s/.test(this.src[this.pos + 1])) op = '-';
    if (op === undefined) return this.parsePrimary(field);
    this.pos += op.length;
    this.requireTerm(op);
    this.enter();
    const child = this.parseUnary(field);
    this.depth--;
    return { type: 'not', child, position: start + 1 };
  }

  private parsePrimary(field: string | undefined): FilterNode {
    if (this.peek('(')) return this.parseGroup(field);
    return this.parseTerm(field);
  }

  private parseGroup(field: string | undefined): FilterNode {
    const open = this.pos;
    this.pos++;
    this.enter();
    this.skipWs();
    if (this.peek(')')) this.fail('empty parentheses: expected a term');
    if (this.atEnd() || this.atPipe()) this.fail("unbalanced parenthesis: missing ')'", open);
    const node = this.parseOr(field);
    this.skipWs();
    if (!this.peek(')')) this.fail("unbalanced parenthesis: missing ')'", open);
    this.pos++;
    this.depth--;
    return node;
  }

  private parseTerm(field: string | undefined): FilterNode {
    const start = this.pos;
    this.countTerm(start);
    const position = start + 1;
    if (this.peek('"')) {
      const value = this.readQuoted();
      return field === undefined ? { type: 'text', value, position } : this.matchNode(field, value, start);
    }
    if (this.src.startsWith('*:*', this.pos) && this.boundaryAt(this.pos + 3)) {
      this.pos += 3;
      return { type: 'all', position };
    }
    const name = this.readFieldRef();
    if (name !== undefined) {
      if (this.peek(':')) {
        this.pos++;
        return this.parseFieldValue(name, start);
      }
      if (this.src.startsWith('!=', this.pos)) {
        this.pos += 2;
        return { type: 'not', child: this.parseFieldEquals(name, start, '!='), position };
      }
      if (this.peek('=') && !this.src.startsWith('==', this.pos)) {
        this.pos++;
        return this.parseFieldEquals(name, start, '=');
      }
      this.skipWs();
      const op = this.comparisonOperator();
      if (op !== undefined) return this.parseComparison(name, op, start);
      this.pos = start;
    }
    const value = this.readBare();
    if (value.text === '') this.fail('expected a term');
    if (field !== undefined) return this.matchNode(field, value, start);
    if (isOnlyStars(value)) return { type: 'all', position };
    return { type: 'text', value, position };
  }

  private parseFieldValue(field: string, start: number): FilterNode {
    this.skipWs();
    if (this.atTermEnd()) this.fail("expected a value after ':'");
    if (this.peek('"')) return this.matchNode(field, this.readQuoted(), start);
    if (this.peek('[') || this.peek('{')) return this.parseRange(field, start);
    if (this.peek('(')) return this.parseGroup(field);
    const op = this.comparisonOperator();
    if (op !== undefined) return this.parseComparison(field, op, start);
    const value = this.readBare();
    if (value.text === '') this.fail("expected a value after ':'");
    return this.matchNode(field, value, start);
  }

  private parseFieldEquals(field: string, start: number, op: string): FilterNode {
    if (this.atTermEnd() || /\s/.test(this.src[this.pos])) this.fail(`expected a value after '${op}'`);
    const value = this.peek('"') ? this.readQuoted() : this.readBare();
    if (value.text === '' && !value.quoted) this.fail(`expected a value after '${op}'`);
    return this.matchNode(field, value, start);
  }

  private parseComparison(field: string, op: string, start: number): FilterNode {
    this.pos += op.length;
    this.skipWs();
    if (this.atTermEnd()) this.fail(`expected a value after '${op}'`);
    const text = this.peek('"') ? this.readQuoted().text : this.readBare().text;
    if (text === '') this.fail(`expected a value after '${op}'`);
    const bound: Bound = { value: text, inclusive: op.endsWith('=') };
    const position = start + 1;
    return op.startsWith('>')
      ? { type: 'range', field, lower: bound, position }
      : { type: 'range', field, upper: bound, position };
  }

  private parseRange(field: string, start: number): FilterNode {
    const lowerInclusive = this.peek('[');
    this.pos++;
    this.skipWs();
    const low = this.readBound();
    this.skipWs();
    if (
      !(this.src.startsWith('TO', this.pos) || this.src.startsWith('to', this.pos)) ||
      !this.boundaryAt(this.pos + 2)
    ) {
      this.fail("expected 'TO' in range");
    }
    this.pos += 2;
    this.skipWs();
    const high = this.readBound();
    this.skipWs();
    if (!this.peek(']') && !this.peek('}')) this.fail("expected ']' or '}' to close the range");
    const upperInclusive = this.peek(']');
    this.pos++;
    const position = start + 1;
    if (low === undefined && high === undefined) return { type: 'exists', field, position };
    return {
      type: 'range',
      field,
      lower: low === undefined ? undefined : { value: low, inclusive: lowerInclusive },
      upper: high === undefined ? undefined : { value: high, inclusive: upperInclusive },
      position,
    };
  }

  /** A range bound; undefined for an open bound (`*`). */
  private readBound(): string | undefined {
    if (this.peek('"')) return this.readQuoted().text;
    let text = '';
    let open = true;
    while (!this.atEnd()) {
      const c = this.src[this.pos];
      if (/\s/.test(c) || c === ']' || c === '}') break;
      if (c === '\\') {
        text += this.escaped();
        open = false;
        continue;
      }
      text += c;
      this.pos++;
    }
    if (text === '') this.fail('expected a range bound');
    return open && text === '*' ? undefined : text;
  }

  private matchNode(field: string, value: Value, start: number): FilterNode {
    const position = start + 1;
    if (isOnlyStars(value)) return { type: 'exists', field, position };
    if (value.parts === undefined && (CIDR_V4.test(value.text) || CIDR_V6.test(value.text))) {
      const [ip, prefix] = value.text.split('/');
      const max = isIPv4(ip) ? 32 : isIPv6(ip) ? 128 : -1;
      if (max < 0 || Number(prefix) > max) this.fail(`invalid CIDR '${value.text}'`, start);
      return { type: 'cidr', field, cidr: value.text, position };
    }
    return { type: 'match', field, value, position };
  }

  // ---- pipes ----

  private parsePipe(): Pipe {
    this.skipWs();
    const start = this.pos;
    const position = start + 1;
    const name = this.readWord();
    if (name === undefined) this.fail("expected a pipe command after '|'");
    let pipe: Pipe;
    switch (name.toLowerCase()) {
      case 'stats': {
        const aggregates = this.parseAggregates();
        const by = this.parseBy();
        pipe = { type: 'stats', aggregates, by: by.names, byPositions: by.positions, position };
        break;
      }
      case 'timechart': {
        const span = this.parseSpan();
        const aggregates = this.parseAggregates();
        const by = this.parseBy();
        pipe = { type: 'timechart', span, aggregates, by: by.names, byPositions: by.positions, position };
        break;
      }
      case 'where': {
        this.skipWs();
        if (this.atTermEnd()) this.fail("expected a filter after 'where'");
        pipe = { type: 'where', filter: this.parseOr(undefined), position };
        break;
      }
      case 'sort':
        pipe = { type: 'sort', keys: this.parseSortKeys(), position };
        break;
      case 'head':
      case 'limit':
        pipe = { type: 'head', count: this.parseCount(name), position };
        break;
      case 'fields': {
        const list = this.parseFieldList('fields');
        pipe = { type: 'fields', fields: list.names, fieldPositions: list.positions, position };
        break;
      }
      default:
        this.fail(`unknown pipe '${name}', expected one of ${PIPE_COMMANDS.join(', ')}`, start);
    }
    this.expectFilterEnd();
    return pipe;
  }

  private parseAggregates(): Aggregate[] {
    const aggregates: Aggregate[] = [];
    for (;;) {
      this.skipWs();
      const start = this.pos;
      const word = this.readWord();
      if (word === undefined) this.fail('expected an aggregation such as count() or dc(field)');
      const spelled = word.toLowerCase();
      const fn = AGGREGATES[spelled];
      if (fn === undefined) {
        this.fail(`unknown aggregation '${word}', expected one of ${Object.keys(AGGREGATES).join(', ')}`, start);
      }
      let field: string | undefined;
      if (this.peek('(')) {
        this.pos++;
        this.skipWs();
        if (fn === 'count' && this.peek('*')) this.pos++;
        else if (!this.peek(')')) field = this.requireField(`expected a field name in ${spelled}()`);
        this.skipWs();
        if (!this.peek(')')) this.fail("expected ')' to close the aggregation");
        this.pos++;
      }
      if (field === undefined && fn !== 'count')
        this.fail(`${spelled}() needs a field, as in ${spelled}(bytes)`, start);
      let name = field === undefined ? spelled : `${spelled}(${field})`;
      this.skipWs();
      if (this.wordAhead('as')) {
        this.pos += 2;
        this.skipWs();
        name = this.requireField("expected a name after 'as'");
      }
      if (aggregates.some((a) => a.name === name)) this.fail(`duplicate column name '${name}'`, start);
      aggregates.push({ fn, field, name, position: start + 1 });
      this.skipWs();
      if (this.peek(',')) {
        this.pos++;
        continue;
      }
      const next = this.peekWord();
      if (next !== undefined && next.toLowerCase() !== 'by' && AGGREGATES[next.toLowerCase()] !== undefined) continue;
      return aggregates;
    }
  }

  private parseBy(): { names: string[]; positions: number[] } {
    this.skipWs();
    if (!this.wordAhead('by')) return { names: [], positions: [] };
    this.pos += 2;
    return this.parseFieldList('by');
  }

  private parseSpan(): Span | undefined {
    this.skipWs();
    if (!/^span\s*=/i.test(this.src.slice(this.pos, this.pos + 16))) return undefined;
    this.pos = this.src.indexOf('=', this.pos) + 1;
    this.skipWs();
    SPAN.lastIndex = this.pos;
    const m = SPAN.exec(this.src);
    const count = m === null ? 0 : Number(m[1]);
    if (m === null || count < 1)
      this.fail('invalid span, expected a positive number followed by s, m, h or d (span=5m)');
    this.pos += m[0].length;
    const unit = m[2] as Span['unit'];
    return { count, unit, seconds: count * SPAN_SECONDS[unit] };
  }

  private parseSortKeys(): SortKey[] {
    const keys: SortKey[] = [];
    for (;;) {
      this.skipWs();
      const start = this.pos;
      let descending = false;
      if (this.peek('-') || this.peek('+')) {
        descending = this.peek('-');
        this.pos++;
      }
      const field = this.requireField('expected a field to sort by');
      this.skipWs();
      if (this.wordAhead('desc')) {
        descending = true;
        this.pos += 4;
      } else if (this.wordAhead('asc')) {
        this.pos += 3;
      }
      keys.push({ field, descending, position: start + 1 });
      this.skipWs();
      if (this.peek(',')) this.pos++;
      else if (!(this.peek('-') || this.peek('+') || this.fieldAhead())) return keys;
    }
  }

  private parseCount(command: string): number {
    this.skipWs();
    if (this.atEnd() || this.atPipe()) return 10;
    const m = /\d+/y;
    m.lastIndex = this.pos;
    const digits = m.exec(this.src)?.[0];
    if (digits === undefined || !this.boundaryAt(this.pos + digits.length)) {
      this.fail(`expected a number after '${command}'`);
    }
    const count = Number(digits);
    if (count < 1 || !Number.isSafeInteger(count)) this.fail(`'${command}' needs a positive number`);
    this.pos += digits.length;
    return count;
  }

  private parseFieldList(after: string): { names: string[]; positions: number[] } {
    const names: string[] = [];
    const positions: number[] = [];
    for (;;) {
      this.skipWs();
      positions.push(this.pos + 1);
      names.push(this.requireField(`expected a field name after '${names.length === 0 ? after : ','}'`));
      this.skipWs();
      if (this.peek(',')) this.pos++;
      else if (!this.fieldAhead()) return { names, positions };
    }
  }

  // ---- lexical helpers ----

  /** A field name, or a stats column reference such as `dc(user.name)` (rejected later where a field is needed). */
  private readFieldRef(): string | undefined {
    FIELD.lastIndex = this.pos;
    const m = FIELD.exec(this.src);
    if (m === null) return undefined;
    this.pos += m[0].length;
    if (!this.peek('(')) return m[0];
    FIELD.lastIndex = this.pos + 1;
    const inner = FIELD.exec(this.src);
    const close = this.pos + 1 + (inner?.[0].length ?? 0);
    if (this.src[close] !== ')') return m[0];
    this.pos = close + 1;
    return inner === null ? m[0] : `${m[0]}(${inner[0]})`;
  }

  private requireField(hint: string): string {
    const name = this.readFieldRef();
    if (name === undefined) this.fail(hint);
    return name;
  }

  private readWord(): string | undefined {
    WORD.lastIndex = this.pos;
    const m = WORD.exec(this.src);
    if (m === null) return undefined;
    this.pos += m[0].length;
    return m[0];
  }

  private peekWord(): string | undefined {
    WORD.lastIndex = this.pos;
    return WORD.exec(this.src)?.[0];
  }

  private readQuoted(): Value {
    const open = this.pos;
    this.pos++;
    let text = '';
    for (;;) {
      if (this.atEnd()) this.fail('unterminated quoted string', open);
      const c = this.src[this.pos];
      const next = this.src[this.pos + 1];
      // Only \" and \\ escape inside quotes, so a pasted Windows path ("C:\Windows\System32") stays intact.
      if (c === '\\' && (next === '"' || next === '\\')) {
        text += next;
        this.pos += 2;
      } else if (c === '"') {
        this.pos++;
        return { text, quoted: true };
      } else {
        text += c;
        this.pos++;
      }
    }
  }

  private readBare(): Value {
    let text = '';
    let literal = '';
    const parts: ValuePart[] = [];
    let wild = false;
    while (!this.atEnd()) {
      const c = this.src[this.pos];
      if (/\s/.test(c) || c === '(' || c === ')' || c === '|') break;
      if (c === '\\') {
        const e = this.escaped();
        text += e;
        literal += e;
      } else if (c === '*' || c === '?') {
        wild = true;
        if (literal !== '') parts.push({ text: literal });
        literal = '';
        parts.push({ wildcard: c });
        text += c;
        this.pos++;
      } else {
        text += c;
        literal += c;
        this.pos++;
      }
    }
    if (literal !== '') parts.push({ text: literal });
    return wild ? { text, quoted: false, parts } : { text, quoted: false };
  }

  /** Consumes a backslash escape and returns the escaped character. */
  private escaped(): string {
    if (this.pos + 1 >= this.src.length) this.fail("nothing to escape after '\\'");
    const c = this.src[this.pos + 1];
    this.pos += 2;
    return c;
  }

  private comparisonOperator(): string | undefined {
    for (const op of ['>=', '<=', '>', '<']) if (this.src.startsWith(op, this.pos)) return op;
    return undefined;
  }

  private keyword(word: string): boolean {
    return this.src.startsWith(word, this.pos) && this.boundaryAt(this.pos + word.length, true);
  }

  private wordAhead(word: string): boolean {
    return (
      this.src.slice(this.pos, this.pos + word.length).toLowerCase() === word &&
      !FIELD_CHAR.test(this.src[this.pos + word.length] ?? '')
    );
  }

  private fieldAhead(): boolean {
    return FIELD_START.test(this.src[this.pos] ?? '');
  }

  /** Whether a word ends at `at`: end of text, whitespace, a parenthesis, a pipe (or a quote after a keyword). */
  private boundaryAt(at: number, keyword = false): boolean {
    const c = this.src[at];
    return c === undefined || /[\s()|]/.test(c) || (keyword && c === '"');
  }

  private requireTerm(after: string): void {
    this.skipWs();
    if (this.atTermEnd() || this.keyword('AND') || this.keyword('OR')) this.fail(`expected a term after '${after}'`);
  }

  private expectFilterEnd(): void {
    this.skipWs();
    if (this.peek(')')) this.fail("unbalanced parenthesis: unexpected ')'");
    if (!this.atEnd() && !this.atPipe()) this.fail(`unexpected '${this.src.slice(this.pos, this.pos + 20)}'`);
  }

  private countTerm(at: number): void {
    if (++this.terms > MAX_TERMS) this.fail(`too many terms (at most ${MAX_TERMS})`, at);
  }

  private enter(): void {
    if (++this.depth > MAX_DEPTH) this.fail(`query is nested too deeply (at most ${MAX_DEPTH} levels)`);
  }

  private skipWs(): void {
    while (this.pos < this.src.length && /\s/.test(this.src[this.pos])) this.pos++;
  }

  private peek(c: string): boolean {
    return this.src[this.pos] === c;
  }

  private atEnd(): boolean {
    return this.pos >= this.src.length;
  }

  private atPipe(): boolean {
    return this.peek('|') && this.src[this.pos + 1] !== '|';
  }

  private atTermEnd(): boolean {
    return this.atEnd() || this.peek(')') || this.atPipe();
  }

  private fail(hint: string, at = this.pos): never {
    throw new QuerySyntaxError(hint, at + 1);
  }
}

function isOnlyStars(value: Value): boolean {
  return value.parts?.every((p) => 'wildcard' in p && p.wildcard === '*') ?? false;
}

/**
 * Small, syntax-aware edits of Vigil queries done by the console: splitting the filter from the pipes,
 * adding `field:value` terms, and deriving the histogram query. The server stays the one parser: anything
 * unusual is left as written and the server's answer decides.
 */

/** Splits a query at its top-level pipes (not `||`, not inside quotes, not escaped). */
export function splitPipes(query: string): { filter: string; pipes: string[] } {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < query.length; i++) {
    const c = query[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '"') quoted = !quoted;
    else if (!quoted && c === '|') {
      if (query[i + 1] === '|') {
        i++;
        continue;
      }
      parts.push(query.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(query.slice(start));
  return { filter: parts[0].trim(), pipes: parts.slice(1).map((p) => p.trim()) };
}

/** The command of a pipe: `stats`, `timechart`, `sort`... (lowercase). */
export function pipeCommand(pipe: string): string {
  return (/^\s*([A-Za-z]+)/.exec(pipe)?.[1] ?? '').toLowerCase();
}

/** Whether the query answers a table (stats or timechart) rather than events. */
export function isTableQuery(query: string): boolean {
  return splitPipes(query).pipes.some((p) => ['stats', 'timechart'].includes(pipeCommand(p)));
}

/**
 * Whether results come newest first with their time and id, so that the next page can follow by time
 * (the API has no offset): only `where` pipes keep that.
 */
export function isTimeOrdered(query: string): boolean {
  return splitPipes(query).pipes.every((p) => pipeCommand(p) === 'where');
}

/** The histogram query: the filter and its `where` pipes, counted per time bucket. */
export function histogramQuery(query: string, span: string): string {
  const { filter, pipes } = splitPipes(query);
  const wheres = pipes.filter((p) => pipeCommand(p) === 'where');
  return [filter || '*', ...wheres, `timechart span=${span} count()`].join(' | ');
}

const FIELD_NAME = /^[A-Za-z_@#][A-Za-z0-9_@#.-]*$/;

/** Whether a field name can be written in a query (the field grammar of the query language). */
export function isQueryableField(name: string): boolean {
  return FIELD_NAME.test(name);
}

const BARE_VALUE = /^[A-Za-z0-9_.@][A-Za-z0-9_.@-]*$/;
const OPERATORS = new Set(['AND', 'OR', 'NOT', 'TO', 'and', 'or', 'not', 'to']);

/** Writes a value so it matches exactly: bare when safe, otherwise quoted (quotes are literal, no wildcards). */
export function quoteValue(value: unknown): string {
  const s = typeof value === 'string' ? value : JSON.stringify(value);
  if (BARE_VALUE.test(s) && !OPERATORS.has(s)) return s;
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** Whether the filter has a top-level OR, so that appending a term needs parentheses. */
function hasTopLevelOr(filter: string): boolean {
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < filter.length; i++) {
    const c = filter[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (quoted) continue;
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (depth === 0) {
      if (c === '|' && filter[i + 1] === '|') return true;
      if (filter.startsWith('OR', i) && /\s/.test(filter[i - 1] ?? ' ') && /\s/.test(filter[i + 2] ?? ' ')) return true;
    }
  }
  return false;
}

/** Adds `field:value` (or `NOT field:value`) to the filter part of a query, keeping its pipes. */
export function addFilterTerm(query: string, field: string, value: unknown, exclude = false): string {
  const term = `${exclude ? 'NOT ' : ''}${field}:${quoteValue(value)}`;
  const { filter, pipes } = splitPipes(query);
  let next: string;
  if (filter === '' || filter === '*' || filter === '*:*') next = term;
  else if (hasTopLevelOr(filter)) next = `(${filter}) ${term}`;
  else next = `${filter} ${term}`;
  return [next, ...pipes].join(' | ');
}

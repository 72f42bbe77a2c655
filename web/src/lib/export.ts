/** CSV and NDJSON exports of search results, made in the browser from what is loaded. */

type EventRecord = Record<string, unknown>;

/** Columns for a CSV of events: time, host and message first, then every other field by name. */
export function eventColumns(events: EventRecord[]): string[] {
  const first = ['@timestamp', 'host.name', 'message'];
  const seen = new Set<string>();
  for (const e of events) for (const k in e) seen.add(k);
  return [...first.filter((c) => seen.has(c)), ...[...seen].filter((c) => !first.includes(c)).sort()];
}

/**
 * One CSV cell. Text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR at the start)
 * gets a leading apostrophe: log data is attacker-controlled, and exports are opened in spreadsheets.
 */
export function csvCell(value: unknown): string {
  if (value === undefined || value === null) return '';
  let s =
    typeof value === 'string'
      ? value
      : typeof value === 'number' || typeof value === 'boolean'
        ? String(value)
        : JSON.stringify(value);
  if (typeof value === 'string' && isFormula(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** `@name` alone (`@timestamp`) is a plain name; `@` before anything else starts a formula in some programs. */
function isFormula(s: string): boolean {
  return /^[=+\-\t\r]/.test(s) || (s.startsWith('@') && !/^@[\w.]*$/.test(s));
}

/** A CSV document (RFC 4180, CRLF line ends) from a header and rows. */
export function toCsv(columns: string[], rows: unknown[][]): string {
  const lines = [columns.map(csvCell).join(',')];
  for (const r of rows) lines.push(r.map(csvCell).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

/** A CSV of events over the union of their fields. */
export function eventsToCsv(events: EventRecord[]): string {
  const cols = eventColumns(events);
  return toCsv(
    cols,
    events.map((e) => cols.map((c) => e[c])),
  );
}

/** One JSON object per line. */
export function toNdjson(records: unknown[]): string {
  return records.map((r) => JSON.stringify(r)).join('\n') + (records.length ? '\n' : '');
}

/** Saves text as a file through a temporary link. */
export function download(filename: string, text: string, type: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** A file name for an export: vigil-search-20261122-100405.csv */
export function exportName(kind: string, ext: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `vigil-${kind}-${stamp}.${ext}`;
}

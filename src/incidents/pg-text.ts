/**
 * Text as PostgreSQL stores it. An alert carries strings from events (host, matched values, rule titles
 * from imported YAML): a NUL or a lone UTF-16 surrogate in one of them makes PostgreSQL refuse the whole
 * statement (text cannot hold NUL; jsonb refuses `\u0000` and unpaired `\ud800`), an error no retry clears,
 * so one crafted event would stop every later alert from reaching its incident. Such characters become
 * U+FFFD before grouping, so the key computed here and the key read back are the same text. Ids too: an
 * event id with one is linked as its U+FFFD form, which the store's copy of the event does not match.
 */
import type { Alert } from '../detect/alerts/index.ts';
import type { FieldValue } from '../lib/event.ts';

/** NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one. */
const UNSTORABLE = /\0|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** `s` with every character PostgreSQL cannot store replaced by U+FFFD. */
export function pgText(s: string): string {
  UNSTORABLE.lastIndex = 0;
  return UNSTORABLE.test(s) ? s.replace(UNSTORABLE, '\uFFFD') : s;
}

function pgValue(v: FieldValue): FieldValue {
  if (typeof v === 'string') return pgText(v);
  return Array.isArray(v) ? v.map(pgValue) : v;
}

/** The alert with every string PostgreSQL stores made storable (the same object when nothing changes). */
export function pgSafeAlert(a: Alert): Alert {
  const text = [
    a.id,
    a.tenant,
    a.host,
    a.partition,
    a.rule.id,
    a.rule.title,
    a.rule.level,
    ...a.rule.tags,
    ...a.eventIds,
  ];
  const values = Object.entries(a.matched);
  const clean = (s: string) => pgText(s) === s;
  const valueClean = (v: FieldValue): boolean =>
    typeof v === 'string' ? clean(v) : Array.isArray(v) ? v.every(valueClean) : true;
  if (text.every(clean) && values.every(([k, v]) => clean(k) && valueClean(v))) return a;
  return {
    ...a,
    id: pgText(a.id),
    tenant: pgText(a.tenant),
    host: pgText(a.host),
    partition: pgText(a.partition),
    rule: {
      id: pgText(a.rule.id),
      title: pgText(a.rule.title),
      level: pgText(a.rule.level),
      tags: a.rule.tags.map(pgText),
    },
    eventIds: a.eventIds.map(pgText),
    matched: Object.fromEntries(values.map(([k, v]) => [pgText(k), pgValue(v)])),
  };
}

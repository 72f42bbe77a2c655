/**
 * Helpers for tests and measurements: turn recorded JSON (evtx_dump output, Mordor JSON lines) into
 * NormalizedEvents the way an intake would. Not used on the production path.
 */
import type { EventLayout, FieldValue, NormalizedEvent } from '../../lib/event.ts';

/** Splits concatenated (pretty-printed or not) JSON values into their texts, honouring strings and escapes. */
export function splitJsonObjects(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++;
      else if (c === 34) inString = false;
      continue;
    }
    if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (depth === 0) start = i;
      depth++;
    } else if (c === 125 || c === 93) {
      depth--;
      if (depth === 0 && start >= 0) {
        out.push(text.slice(start, i + 1));
        start = -1;
      }
    }
  }
  return out;
}

/** Flattens nested objects into dotted keys (`Event.System.Provider.#attributes.Name`); arrays stay values. */
export function flattenObject(
  value: unknown,
  prefix = '',
  out: Record<string, FieldValue> = {},
): Record<string, FieldValue> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flattenObject(v, prefix ? `${prefix}.${k}` : k, out);
    return out;
  }
  if (Array.isArray(value)) {
    if (value.every((x) => x === null || typeof x !== 'object' || Array.isArray(x))) {
      out[prefix] = value as FieldValue[];
    } else {
      value.forEach((x, i) => {
        flattenObject(x, `${prefix}.${i}`, out);
      });
    }
    return out;
  }
  out[prefix] = value as FieldValue;
  return out;
}

let counter = 0;

/** A NormalizedEvent from one parsed JSON object of the given layout. */
export function eventFromJson(raw: string, layout: EventLayout, parsed: unknown = JSON.parse(raw)): NormalizedEvent {
  const fields = flattenObject(parsed);
  const ts =
    fields['@timestamp'] ??
    fields['Event.System.TimeCreated.#attributes.SystemTime'] ??
    fields.TimeCreated ??
    undefined;
  const timestamp = typeof ts === 'string' ? Date.parse(ts) : Date.now();
  counter++;
  return {
    id: `fixture-${counter}`,
    timestamp: Number.isNaN(timestamp) ? Date.now() : timestamp,
    ingested: Date.now(),
    tenant: 'default',
    source: 'fixture',
    layout,
    raw,
    fields,
  };
}

/** A rule whose YAML is small but whose aliases expand to 9^levels strings ("billion laughs"). */
export function aliasBomb(levels = 9): string {
  const lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i <= levels; i++)
    lines.push(
      `a${i}: &a${i} [${Array(9)
        .fill(`*a${i - 1}`)
        .join(',')}]`,
    );
  return `${lines.join('\n')}
title: bomb
id: 00000000-0000-0000-0000-0000000b0b0b
logsource:
    product: test
detection:
    selection:
        CommandLine: *a${levels}
    condition: selection
`;
}

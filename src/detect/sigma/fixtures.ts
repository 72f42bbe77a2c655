/**
 * Events for tests and measurements, shaped as production shapes them: recorded JSON (evtx_dump output,
 * Mordor JSON lines) goes through the normalizer of src/parse/ as the HTTP intake hands it over, so a Sigma
 * test matches the fields, layout and added ECS fields that a running Vigil stores. Not used on the
 * production path.
 */
import type { EventLayout, NormalizedEvent } from '../../lib/event.ts';
import { createNormalizer, type NormalizeContext, splitJson } from '../../parse/index.ts';

const normalizer = createNormalizer();

const context = (): NormalizeContext => ({ source: 'http', receivedAt: Date.now(), tenant: 'default' });

/**
 * The event of one recorded JSON object, normalized by the production parser. `layout` is the layout the
 * parser must recognize: a fixture it shapes as something else is a broken fixture, and throws.
 */
export function eventFromJson(raw: string, layout: EventLayout, value: unknown = JSON.parse(raw)): NormalizedEvent {
  const event = normalizer.fromJson(value, raw, context());
  if (event.layout !== layout) {
    throw new Error(`the parser reads this fixture as ${event.layout}, not ${layout}: ${raw.slice(0, 120)}`);
  }
  return event;
}

/**
 * The events of a recorded body (NDJSON, a JSON array, or concatenated objects as evtx_dump writes them),
 * split as the HTTP intake splits it; a malformed element throws.
 */
export function eventsFromJson(text: string, layout: EventLayout): NormalizedEvent[] {
  return splitJson(text).map((element) => {
    if ('error' in element) throw new Error(`fixture element ${element.index}: ${element.error}`);
    return eventFromJson(element.raw, layout, element.value);
  });
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

import { describe, expect, test } from 'vitest';
import { chartModel } from '../components/result-chart.tsx';
import { csvCell, eventsToCsv, toNdjson } from './export.ts';
import { chooseSpan, describeRange, parseEngineTime, parseTime, resolveRange } from './time.ts';

describe('time', () => {
  const now = Date.UTC(2026, 10, 22, 12);
  test('relative and absolute times read as the server reads them', () => {
    expect(parseTime('now-15m', now)).toBe(now - 15 * 60e3);
    expect(parseTime('1767225600000', now)).toBe(1767225600000);
    expect(parseTime('2026-11-22T10:00:00Z', now)).toBe(Date.UTC(2026, 10, 22, 10));
    expect(resolveRange({ from: 'now-1h', to: 'now' }, now)).toEqual({ fromMs: now - 3600e3, toMs: now + 1 });
  });
  test.each([
    [15 * 60e3, '10s'],
    [3600e3, '1m'],
    [86400e3, '15m'],
    [7 * 86400e3, '2h'],
    [30 * 86400e3, '12h'],
  ])('a range of %d ms has bars of %s', (ms, span) => {
    expect(chooseSpan(ms).text).toBe(span);
  });
  test('engine times are UTC', () => {
    expect(parseEngineTime('2026-11-22 10:00:00.000')).toBe(Date.UTC(2026, 10, 22, 10));
  });
  test('ranges are described for people', () => {
    expect(describeRange({ from: 'now-7d', to: 'now' }, true)).toBe('Last 7 days');
    expect(describeRange({ from: '2026-11-22T10:00:00Z', to: '2026-11-22T11:00:00Z' }, true)).toBe(
      '2026-11-22 10:00:00 to 2026-11-22 11:00:00',
    );
  });
});

describe('export', () => {
  test('CSV quotes, doubles quotes, and defuses formulas in text', () => {
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('=HYPERLINK("x")')).toBe('"\'=HYPERLINK(""x"")"');
    expect(csvCell('@SUM(A1)')).toBe("'@SUM(A1)");
    expect(csvCell('@timestamp')).toBe('@timestamp');
    expect(csvCell(-3)).toBe('-3');
    expect(csvCell(['a', 'b'])).toBe('"[""a"",""b""]"');
  });
  test('events become a CSV over the union of their fields, time first', () => {
    const csv = eventsToCsv([
      { '@timestamp': 't1', b: 1 },
      { '@timestamp': 't2', a: 'x' },
    ]);
    expect(csv).toBe('@timestamp,a,b\r\nt1,,1\r\nt2,x,\r\n');
  });
  test('NDJSON is one object per line', () => {
    expect(toNdjson([{ a: 1 }, { b: 2 }])).toBe('{"a":1}\n{"b":2}\n');
  });
});

describe('charts of table answers', () => {
  test('stats by a field: bars of the first number', () => {
    const m = chartModel(
      ['host.name', 'count'],
      [
        ['a', 3],
        ['b', 1],
      ],
    );
    expect(m).toEqual({
      kind: 'bars',
      valueName: 'count',
      bars: [
        { label: 'a', value: 3 },
        { label: 'b', value: 1 },
      ],
    });
  });
  test('timechart by a field: one series per value', () => {
    const m = chartModel(
      ['_time', 'host.name', 'count'],
      [
        ['2026-01-01 00:00:00.000', 'a', 2],
        ['2026-01-01 00:00:00.000', 'b', 1],
        ['2026-01-01 00:01:00.000', 'a', 4],
      ],
    );
    expect(m.kind).toBe('time');
    if (m.kind !== 'time') return;
    expect(m.series).toEqual([
      { name: 'a', values: [2, 4] },
      { name: 'b', values: [1, 0] },
    ]);
  });
});

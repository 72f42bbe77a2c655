import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NormalizedEvent } from '../../lib/event.ts';
import { createSigmaEngine } from './engine.ts';
import { loadSigmaText } from './load.ts';
import { compileRegex, MAX_REGEX_LENGTH } from './regex.ts';

describe('compileRegex: the PCRE subset of the specification on RE2', () => {
  const cases: { re: string; flags?: string; yes: string[]; no: string[] }[] = [
    { re: '(?i)^evil', yes: ['EVIL thing'], no: ['not evil'] },
    { re: 'evil', flags: 'i', yes: ['EvIl'], no: ['evl'] },
    { re: 'a.b', flags: 's', yes: ['a\nb'], no: ['ab'] },
    { re: 'a.b', yes: ['axb'], no: ['a\nb'] },
    { re: '^x$', flags: 'm', yes: ['a\nx\nb'], no: ['ax'] },
    { re: '^x$', yes: ['x'], no: ['a\nx\nb'] },
    { re: '(?P<n>ab)+c', yes: ['ababc'], no: ['ac'] },
    { re: '(?<n>ab)+c', yes: ['ababc'], no: ['ac'] },
    { re: '\\Afoo\\Z', yes: ['foo', 'foo\n'], no: ['xfoo', 'foo\nx'] },
    { re: '\\Afoo\\z', yes: ['foo'], no: ['foo\n'] },
    { re: '[]a]+', yes: [']'], no: ['b'] },
    { re: 'Evil', yes: ['Evil'], no: ['evil'] },
    { re: 'a(?i)b', yes: ['aB'], no: ['AB'] },
    { re: 'C:\\\\Windows\\\\[^\\\\]{1,8}\\.exe$', yes: ['C:\\Windows\\cmd.exe'], no: ['C:\\Windows\\x\\cmd.exe'] },
  ];
  for (const c of cases) {
    it(`/${c.re}/${c.flags ?? ''}`, () => {
      const re = compileRegex(c.re, c.flags ?? '');
      for (const s of c.yes) assert.equal(re.test(s), true, s);
      for (const s of c.no) assert.equal(re.test(s), false, s);
    });
  }

  const refused: [string, RegExp][] = [
    ['(a)\\1', /backreference \\1/],
    ['(?<n>a)\\k<n>', /backreference \\k/],
    ['a(?=b)', /lookahead/],
    ['a(?!b)', /negative lookahead/],
    ['(?<=a)b', /lookbehind/],
    ['(?<!a)b', /negative lookbehind/],
    ['(?>a)', /atomic group/],
    ['a++', /possessive quantifier/],
    ['a{2}+', /possessive quantifier/],
    ['(a|(?R))', /recursion/],
    ['(?(1)a|b)', /conditional group/],
    ['(?x)a b', /extended-syntax flag/],
    ['(unclosed', /missing closing \)/],
    ['x'.repeat(MAX_REGEX_LENGTH + 1), /more than the limit of 1024/],
  ];
  for (const [bad, why] of refused) {
    it(`refuses ${bad.slice(0, 20)} naming the construct`, () => assert.throws(() => compileRegex(bad, ''), why));
  }
});

describe('regular expressions run in linear time', () => {
  const evil = ['^(a+)+$', '(x+x+)+y', '^(a|a)*$', '(.*a){20}', '^(([a-z])+.)+[A-Z]([a-z])+$'];
  for (const p of evil) {
    it(`/${p}/ on 32 and 10,000 characters takes milliseconds`, () => {
      const re = compileRegex(p, '');
      for (const n of [32, 10_000]) {
        const s = `${'a'.repeat(n - 1)}!`;
        const t0 = performance.now();
        re.test(s);
        const ms = performance.now() - t0;
        // A backtracking engine needs seconds for 32 characters (9.1 s measured for the first) and never
        // finishes on 10,000; RE2 takes about 3 ms on 10,000.
        assert.ok(ms < 250, `${ms.toFixed(1)} ms for ${n} characters`);
      }
    });
  }

  it('a live rule with a catastrophic pattern costs milliseconds per event', () => {
    const loaded = loadSigmaText(
      `title: redos
id: 00000000-0000-0000-0000-00000000beef
logsource:
    product: test
detection:
    selection:
        CommandLine|re: '^(a+)+$'
    condition: selection
`,
      'redos.yml',
    );
    assert.deepEqual(loaded.rejected, []);
    const engine = createSigmaEngine({ rules: loaded.rules });
    const event = (cmd: string): NormalizedEvent => ({
      id: 'e',
      timestamp: 0,
      ingested: 0,
      tenant: 't',
      source: 'test',
      layout: 'json',
      logsource: { product: 'test' },
      raw: '',
      fields: { CommandLine: cmd },
    });
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) assert.equal(engine.match(event(`${'a'.repeat(31)}!`)).length, 0);
    assert.equal(engine.match(event('a'.repeat(10_000))).length, 1);
    const ms = performance.now() - t0;
    assert.ok(ms < 500, `${ms.toFixed(1)} ms for 21 events`);
  });

  it('the re sub-modifiers i, m and s reach the engine', () => {
    const loaded = loadSigmaText(
      `title: flags
logsource:
    product: test
detection:
    a:
        A|re|i: '^evil$'
    m:
        M|re|m: '^evil$'
    s:
        S|re|s: 'a.b'
    condition: a and m and s
`,
      'f.yml',
    );
    assert.deepEqual(loaded.rejected, []);
    const engine = createSigmaEngine({ rules: loaded.rules });
    const ev = (fields: Record<string, string>): NormalizedEvent => ({
      id: 'e',
      timestamp: 0,
      ingested: 0,
      tenant: 't',
      source: 'test',
      layout: 'json',
      logsource: { product: 'test' },
      raw: '',
      fields,
    });
    assert.equal(engine.match(ev({ A: 'EVIL', M: 'x\nevil\ny', S: 'a\nb' })).length, 1);
    assert.equal(engine.match(ev({ A: 'EVIL!', M: 'x\nevil\ny', S: 'a\nb' })).length, 0);
    assert.equal(engine.match(ev({ A: 'EVIL', M: 'x evil y', S: 'a\nb' })).length, 0);
    assert.equal(engine.match(ev({ A: 'EVIL', M: 'x\nevil\ny', S: 'a\n\nb' })).length, 0);
  });

  it('a rule with a backreference is refused with the construct named', () => {
    const loaded = loadSigmaText(
      "title: br\nlogsource:\n    product: test\ndetection:\n    s:\n        A|re: '(a)\\1'\n    condition: s\n",
      'br.yml',
    );
    assert.equal(loaded.rules.length, 0);
    assert.match(loaded.rejected[0].reason, /invalid regular expression '\(a\)\\1': the backreference \\1/);
  });
});

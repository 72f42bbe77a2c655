/** Where a JSON text first goes wrong: a 0-based offset into the text and a reason a person can act on. */
export interface JsonFault {
  offset: number;
  reason: string;
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const OBJECT = 0;
const ARRAY = 1;

/**
 * Finds the first syntax error of a JSON text that JSON.parse rejected. V8's messages do not always carry a
 * position (and quote the whole input), so this walks the text once; it runs only on the error path.
 * Iterative, so deep nesting cannot overflow the stack. Returns undefined when the text is valid JSON.
 */
export function locateJsonError(s: string): JsonFault | undefined {
  const n = s.length;
  const stack: number[] = [];
  let i = 0;
  let state: 'value' | 'key' | 'after' = 'value';
  const ws = () => {
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
  };
  for (;;) {
    ws();
    if (state === 'value') {
      if (i >= n) return { offset: i, reason: 'unexpected end of input: expected a value' };
      const c = s[i];
      if (c === '{') {
        i++;
        ws();
        if (s[i] === '}') {
          i++;
          state = 'after';
        } else {
          stack.push(OBJECT);
          state = 'key';
        }
      } else if (c === '[') {
        i++;
        ws();
        if (s[i] === ']') {
          i++;
          state = 'after';
        } else {
          stack.push(ARRAY);
        }
      } else if (c === '"') {
        const fault = skipString();
        if (fault) return fault;
        state = 'after';
      } else if (c === '-' || (c >= '0' && c <= '9')) {
        NUMBER.lastIndex = i;
        if (!NUMBER.test(s)) return { offset: i, reason: 'invalid number' };
        i = NUMBER.lastIndex;
        state = 'after';
      } else if (s.startsWith('true', i) || s.startsWith('null', i)) {
        i += 4;
        state = 'after';
      } else if (s.startsWith('false', i)) {
        i += 5;
        state = 'after';
      } else if (c === 't' || c === 'f' || c === 'n') {
        return { offset: i, reason: 'invalid literal: expected true, false or null' };
      } else {
        return { offset: i, reason: `unexpected ${show(s, i)}: expected a value` };
      }
    } else if (state === 'key') {
      if (s[i] !== '"') {
        return { offset: i, reason: `unexpected ${show(s, i)}: expected a property name in double quotes` };
      }
      const fault = skipString();
      if (fault) return fault;
      ws();
      if (s[i] !== ':') return { offset: i, reason: `unexpected ${show(s, i)}: expected ':' after the property name` };
      i++;
      state = 'value';
    } else {
      if (stack.length === 0) {
        return i < n ? { offset: i, reason: `unexpected ${show(s, i)} after the end of the JSON value` } : undefined;
      }
      const top = stack[stack.length - 1];
      const c = s[i];
      if (c === ',') {
        i++;
        state = top === OBJECT ? 'key' : 'value';
      } else if ((top === OBJECT && c === '}') || (top === ARRAY && c === ']')) {
        stack.pop();
        i++;
      } else if (i >= n) {
        return { offset: i, reason: `unexpected end of input: unclosed ${top === OBJECT ? 'object' : 'array'}` };
      } else {
        const close = top === OBJECT ? "'}' after a property value" : "']' after an array element";
        return { offset: i, reason: `unexpected ${show(s, i)}: expected ',' or ${close}` };
      }
    }
  }

  function skipString(): JsonFault | undefined {
    const start = i;
    i++;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return undefined;
      }
      if (c === 0x5c) {
        const e = s[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(s.slice(i + 2, i + 6))) return { offset: i, reason: 'invalid \\u escape' };
          i += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) return { offset: i, reason: 'invalid escape in string' };
        i += 2;
        continue;
      }
      if (c < 0x20) return { offset: i, reason: 'unescaped control character in string' };
      i++;
    }
    return { offset: start, reason: 'unterminated string' };
  }
}

function show(s: string, i: number): string {
  if (i >= s.length) return 'end of input';
  const cp = s.codePointAt(i) ?? 0;
  return JSON.stringify(String.fromCodePoint(cp));
}

/** IPv4 and IPv6 CIDR matching for the `cidr` modifier, without allocation on the hot path for IPv4. */

/** Parses a dotted IPv4 address into an unsigned 32-bit number; undefined when it is not one. */
export function parseIPv4(s: string): number | undefined {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      digits++;
      if (part > 255 || digits > 3) return undefined;
    } else if (c === 46) {
      if (digits === 0 || dots === 3) return undefined;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else {
      return undefined;
    }
  }
  if (dots !== 3 || digits === 0) return undefined;
  return n * 256 + part;
}

/** Parses an IPv6 address (with `::`, an embedded IPv4 tail and an optional `%zone`) into a 128-bit bigint. */
export function parseIPv6(input: string): bigint | undefined {
  let s = input;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (!s.includes(':')) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parse = (h: string): number[] | undefined => {
    if (h === '') return [];
    const groups: number[] = [];
    const items = h.split(':');
    for (let i = 0; i < items.length; i++) {
      const g = items[i];
      if (i === items.length - 1 && g.includes('.')) {
        const v4 = parseIPv4(g);
        if (v4 === undefined) return undefined;
        groups.push(v4 >>> 16, v4 & 0xffff);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
        groups.push(Number.parseInt(g, 16));
      }
    }
    return groups;
  };
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  if (!head || !tail) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - tail.length;
    if (fill < 1) return undefined;
    groups = [...head, ...new Array<number>(fill).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return undefined;
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(g);
  return n;
}

/** A compiled CIDR network; `test` takes the address as text. */
export interface CidrNet {
  readonly text: string;
  test(address: string): boolean;
}

/** Compiles `10.0.0.0/8`, `fe80::/10` or a bare address (a /32 or /128); throws on malformed input. */
export function compileCidr(spec: string): CidrNet {
  const slash = spec.indexOf('/');
  const addr = (slash >= 0 ? spec.slice(0, slash) : spec).trim();
  const bitsText = slash >= 0 ? spec.slice(slash + 1).trim() : undefined;
  const v4 = parseIPv4(addr);
  if (v4 !== undefined) {
    const bits = bitsText === undefined ? 32 : Number(bitsText);
    if (!Number.isInteger(bits) || bits < 0 || bits > 32) throw new Error(`invalid CIDR prefix length in '${spec}'`);
    const size = 2 ** (32 - bits);
    const lo = Math.floor(v4 / size) * size;
    const hi = lo + size - 1;
    return {
      text: spec,
      test(address) {
        const a = parseIPv4(address);
        if (a !== undefined) return a >= lo && a <= hi;
        // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) belongs to the IPv4 network too.
        const b = address.includes(':') ? parseIPv6(address) : undefined;
        if (b === undefined || b >> 32n !== 0xffffn) return false;
        const low = Number(b & 0xffffffffn);
        return low >= lo && low <= hi;
      },
    };
  }
  const v6 = parseIPv6(addr);
  if (v6 === undefined) throw new Error(`'${spec}' is not an IPv4 or IPv6 network`);
  const bits = bitsText === undefined ? 128 : Number(bitsText);
  if (!Number.isInteger(bits) || bits < 0 || bits > 128) throw new Error(`invalid CIDR prefix length in '${spec}'`);
  const shift = BigInt(128 - bits);
  const net = v6 >> shift;
  return {
    text: spec,
    test(address) {
      if (!address.includes(':')) return false;
      const a = parseIPv6(address);
      return a !== undefined && a >> shift === net;
    },
  };
}

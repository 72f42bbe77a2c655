/**
 * Multi-needle substring search: finds which of many needles (three characters or more) occur in a text in one
 * pass. Needles are indexed by a hash of three-character windows; the text is sampled every `step` positions
 * where `step` is the shortest needle length minus two, so long needles make the scan proportionally faster
 * (the sampling idea of Wu-Manber). Each occurrence of a needle is found once and confirmed by comparison.
 */

interface Slot<T> {
  readonly text: string;
  readonly offset: number;
  readonly value: T;
}

/**
 * ASCII case folding: an uppercase letter becomes lowercase; everything else is kept. Hashes use the cheaper
 * `c | 32`, which also merges a few punctuation pairs (`\\` and `|`): that only adds candidates, and every
 * candidate is confirmed with this exact folding.
 */
function fold(c: number): number {
  return c >= 65 && c <= 90 ? c + 32 : c;
}

function hash(a: number, b: number, c: number): number {
  return ((a << 20) ^ (b << 10) ^ c) & 0x3fffffff;
}

/** The bloom slot of a hash: all three characters mixed into 16 bits. */
function bloomIndex(k: number): number {
  return (k ^ (k >>> 14)) & 0xffff;
}

export class MultiSearch<T> {
  /** Positions of the text looked at: every `step`-th. */
  readonly step: number;
  readonly size: number;
  private readonly bloom = new Uint8Array(65536);
  private readonly slots = new Map<number, Slot<T>[]>();
  private readonly folded: boolean;

  /**
   * `needles`: lowercased when `folded` (the texts searched are then compared ASCII-case-insensitively, so they
   * need not be lowercased first; use it only for ASCII needles). Needles shorter than three characters are
   * not accepted.
   */
  constructor(needles: readonly { text: string; value: T }[], folded = false) {
    this.folded = folded;
    this.size = needles.length;
    let min = Number.POSITIVE_INFINITY;
    for (const n of needles) {
      if (n.text.length < 3) throw new Error(`needle '${n.text}' is shorter than three characters`);
      min = Math.min(min, n.text.length);
    }
    this.step = needles.length ? Math.max(1, min - 2) : 1;
    for (const n of needles) {
      // Exactly one sampled position falls in the first `step` windows of any occurrence.
      for (let offset = 0; offset < this.step; offset++) {
        const t = n.text;
        const k = folded
          ? hash(t.charCodeAt(offset) | 32, t.charCodeAt(offset + 1) | 32, t.charCodeAt(offset + 2) | 32)
          : hash(t.charCodeAt(offset), t.charCodeAt(offset + 1), t.charCodeAt(offset + 2));
        this.bloom[bloomIndex(k)] = 1;
        const list = this.slots.get(k);
        const slot = { text: t, offset, value: n.value };
        if (list) list.push(slot);
        else this.slots.set(k, [slot]);
      }
    }
  }

  /** Calls `found` for each needle occurrence in `s` (a needle found twice is reported twice). */
  forEach(s: string, found: (value: T) => void): void {
    if (this.size === 0) return;
    const { bloom, slots, step, folded } = this;
    for (let p = 0; p + 2 < s.length; p += step) {
      const k = folded
        ? hash(s.charCodeAt(p) | 32, s.charCodeAt(p + 1) | 32, s.charCodeAt(p + 2) | 32)
        : hash(s.charCodeAt(p), s.charCodeAt(p + 1), s.charCodeAt(p + 2));
      if (bloom[bloomIndex(k)] === 0) continue;
      const list = slots.get(k);
      if (!list) continue;
      for (let i = 0; i < list.length; i++) {
        const slot = list[i];
        const q = p - slot.offset;
        if (q >= 0 && (folded ? startsWithFolded(s, slot.text, q) : s.startsWith(slot.text, q))) found(slot.value);
      }
    }
  }

  /** Whether any needle occurs in `s`. */
  some(s: string): boolean {
    if (this.size === 0) return false;
    return this.folded ? this.someFolded(s) : this.somePlain(s);
  }

  private somePlain(s: string): boolean {
    const { bloom, slots, step } = this;
    for (let p = 0; p + 2 < s.length; p += step) {
      const k = hash(s.charCodeAt(p), s.charCodeAt(p + 1), s.charCodeAt(p + 2));
      if (bloom[bloomIndex(k)] === 0) continue;
      const list = slots.get(k);
      if (!list) continue;
      for (let i = 0; i < list.length; i++) {
        const slot = list[i];
        const q = p - slot.offset;
        if (q >= 0 && s.startsWith(slot.text, q)) return true;
      }
    }
    return false;
  }

  private someFolded(s: string): boolean {
    const { bloom, slots, step } = this;
    for (let p = 0; p + 2 < s.length; p += step) {
      const k = hash(s.charCodeAt(p) | 32, s.charCodeAt(p + 1) | 32, s.charCodeAt(p + 2) | 32);
      if (bloom[bloomIndex(k)] === 0) continue;
      const list = slots.get(k);
      if (!list) continue;
      for (let i = 0; i < list.length; i++) {
        const slot = list[i];
        const q = p - slot.offset;
        if (q >= 0 && startsWithFolded(s, slot.text, q)) return true;
      }
    }
    return false;
  }
}

/** `s.startsWith(lowerNeedle, at)` comparing ASCII letters case-insensitively. */
function startsWithFolded(s: string, lowerNeedle: string, at: number): boolean {
  if (at + lowerNeedle.length > s.length) return false;
  for (let i = 0; i < lowerNeedle.length; i++) {
    if (fold(s.charCodeAt(at + i)) !== lowerNeedle.charCodeAt(i)) return false;
  }
  return true;
}

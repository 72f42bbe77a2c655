const EMPTY = Buffer.alloc(0);

/**
 * Bytes read from a stream and not consumed yet: `bytes[offset..]`. A frame arriving in pieces is gathered
 * in a buffer of our own that grows geometrically, so that a frame sent one byte at a time costs linear
 * time, not a copy of everything so far per piece (a 1 MiB RELP frame sent byte by byte took 60 s so).
 */
export class ByteQueue {
  /** Either the last chunk pushed or a view of `#store`. */
  #buf: Buffer = EMPTY;
  #store: Buffer | undefined;
  #off = 0;

  /** The buffer whose bytes from `offset` on are unread; a view valid until the next `push()`. */
  get bytes(): Buffer {
    return this.#buf;
  }

  /** Where the unread bytes start in `bytes`. */
  get offset(): number {
    return this.#off;
  }

  /** Unread bytes. */
  get length(): number {
    return this.#buf.length - this.#off;
  }

  /** Marks the bytes of `bytes` before `offset` as consumed. */
  consumeTo(offset: number): void {
    this.#off = offset;
  }

  /**
   * Appends a chunk. Returns how far positions in `bytes` moved down (the unread bytes may be moved to the
   * start of a buffer): a caller's own position `p` is `p - shift` afterwards.
   */
  push(chunk: Buffer): number {
    if (chunk.length === 0) return 0;
    const rest = this.#buf.length - this.#off;
    const shift = this.#off;
    if (rest === 0) {
      this.#buf = chunk;
      this.#store = undefined;
      this.#off = 0;
      return shift;
    }
    let store = this.#store;
    if (store === undefined || rest + chunk.length > store.length) {
      store = Buffer.allocUnsafe(Math.max(4096, 2 * (rest + chunk.length)));
      this.#buf.copy(store, 0, this.#off);
    } else if (this.#buf.length + chunk.length > store.length) {
      store.copyWithin(0, this.#off, this.#buf.length);
    } else {
      chunk.copy(store, this.#buf.length);
      this.#buf = store.subarray(0, this.#buf.length + chunk.length);
      return 0;
    }
    this.#store = store;
    this.#off = 0;
    chunk.copy(store, rest);
    this.#buf = store.subarray(0, rest + chunk.length);
    return shift;
  }

  /** Drops every unread byte. */
  clear(): void {
    this.#buf = EMPTY;
    this.#store = undefined;
    this.#off = 0;
  }
}

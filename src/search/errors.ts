import { VigilError } from '../lib/errors.ts';

/** One shard call failed: the replica was unreachable, too slow, or answered an error of its own. */
export class ShardCallError extends VigilError {
  constructor(node: string, shard: number, why: string, opts: { status?: number; cause?: unknown } = {}) {
    super('shard_call_failed', `shard ${shard} on node ${node}: ${why}`, {
      status: opts.status ?? 502,
      retryable: (opts.status ?? 502) >= 500,
      cause: opts.cause,
      details: { node, shard },
    });
    this.name = 'ShardCallError';
  }
}

/** The shards' answers of one search passed search.max_gathered_bytes. */
export class SearchTooLargeError extends VigilError {
  constructor(limit: number) {
    super(
      'search_too_large',
      `the shards' answers to this search exceed ${limit} bytes (search.max_gathered_bytes); ask for fewer events or narrow it`,
      { status: 400, details: { limit } },
    );
    this.name = 'SearchTooLargeError';
  }
}

/** No shard of the search had a reachable replica. */
export class NoShardAnsweredError extends VigilError {
  constructor(missing: number[], cause?: unknown) {
    const why = cause instanceof Error ? `; the last failure: ${cause.message}` : '';
    super('no_replica', `no replica of any shard answered (shards ${missing.join(', ')})${why}`, {
      status: 503,
      retryable: true,
      cause,
      details: { missing_shards: missing },
    });
    this.name = 'NoShardAnsweredError';
  }
}

/**
 * Node to node: this node does not serve the shard a search part asked for (it does not hold it, holds it
 * still catching up, or began dropping it while reading). The asking node's map was older than this
 * node's: it asks the shard's next replica.
 */
export class ShardNotServedError extends VigilError {
  constructor(node: string, shard: number, why: string) {
    super('shard_not_served', `node ${node} does not serve shard ${shard}: ${why}`, {
      status: 503,
      retryable: true,
      details: { node, shard },
    });
    this.name = 'ShardNotServedError';
  }
}

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { errorMessage, VigilError } from '../lib/errors.ts';
import type { ByteBudget, ShardRequest, ShardResponse, ShardTransport } from './coordinator.ts';
import { SearchTooLargeError, ShardCallError } from './errors.ts';

/** The node-to-node route a shard replica answers its part of a search on (see api/routes/search.ts). */
export const SHARD_SEARCH_PATH = '/internal/v1/search/shard';

/**
 * Shard calls over HTTP to other nodes' API, authenticated with the cluster's peer token (which no client
 * holds: only `/internal/` routes accept it, and they accept nothing else).
 */
export function createHttpShardTransport(deps: {
  /** Base URL (`http://host:port`) of a node, from cluster membership; undefined when it is not known. */
  addressOf: (node: string) => string | undefined;
  /** The cluster's peer token. */
  peerToken: () => string;
}): ShardTransport {
  return {
    async call(node, request, { signal, budget }) {
      const base = deps.addressOf(node);
      if (base === undefined)
        throw new ShardCallError(node, request.shard, 'its address is not known', { status: 503 });
      let res: Response;
      try {
        res = await fetch(`${base}${SHARD_SEARCH_PATH}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${deps.peerToken()}`, 'content-type': 'application/json' },
          body: JSON.stringify(request),
          signal,
        });
      } catch (err) {
        throw new ShardCallError(node, request.shard, `unreachable (${errorMessage(signal.reason ?? err)})`, {
          status: 503,
          cause: err,
        });
      }
      const { text, bytes } = await readWithin(res, budget, signal, node, request);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (err) {
        throw new ShardCallError(node, request.shard, `answered ${res.status} with a body that is not JSON`, {
          cause: err,
        });
      }
      if (res.status >= 400) {
        const e = ((body ?? {}) as { error?: { code?: unknown; message?: unknown; details?: unknown } }).error ?? {};
        const code = typeof e.code === 'string' ? e.code : String(res.status);
        const message = typeof e.message === 'string' ? e.message : '';
        // A query error (400) is the query's, the same on every replica: passed on to the client as it is.
        // Any other refusal (401 peer token, 429, 5xx) is this replica's: the next one is asked.
        if (res.status === 400) {
          const details =
            typeof e.details === 'object' && e.details !== null ? (e.details as Record<string, unknown>) : undefined;
          throw new VigilError(code, message, { status: 400, details });
        }
        throw new ShardCallError(node, request.shard, `answered ${res.status} ${code}: ${message}`, { status: 502 });
      }
      return { ...checkAnswer(body, node, request.shard), bytes };
    },
  };
}

/**
 * The base URL of each node for shard calls: the address it last registered in the membership, kept when its
 * registration lapses. A node whose etcd lease expired for a moment (etcd slow, this node's session down) is
 * often still serving; forgetting it made every search on such a node partial though every replica was up
 * (the grow fault test, at load average 45). Asking a node that is really gone costs a refused connection or
 * the hedge delay, and then the next replica is asked.
 */
export function lastKnownAddresses(
  nodes: () => readonly { id: string; address?: string }[],
): (node: string) => string | undefined {
  const known = new Map<string, string>();
  return (node) => {
    for (const n of nodes()) if (n.address) known.set(n.id, n.address);
    const address = known.get(node);
    return address === undefined ? undefined : `http://${address}`;
  };
}

/** Reads a response body within the budget: a body past it is cut and the search refused. */
async function readWithin(
  res: Response,
  budget: ByteBudget,
  signal: AbortSignal,
  node: string,
  request: ShardRequest,
): Promise<{ text: string; bytes: number }> {
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  try {
    if (res.body) {
      for await (const chunk of res.body) {
        // Leaving the loop cancels the body (the stream is locked to the loop: no cancel() here).
        if (!budget.take(chunk.byteLength)) throw new SearchTooLargeError(budget.limit);
        bytes += chunk.byteLength;
        chunks.push(chunk);
      }
    }
  } catch (err) {
    if (err instanceof SearchTooLargeError) throw err;
    throw new ShardCallError(node, request.shard, `its answer was cut (${errorMessage(signal.reason ?? err)})`, {
      status: 503,
      cause: err,
    });
  }
  return { text: Buffer.concat(chunks).toString('utf8'), bytes };
}

function checkAnswer(body: unknown, node: string, shard: number): Omit<ShardResponse, 'bytes'> {
  const b = body as Partial<ShardResponse> | null;
  if (
    b === null ||
    typeof b !== 'object' ||
    !Array.isArray(b.rows) ||
    typeof b.node !== 'string' ||
    typeof b.lag_messages !== 'number' ||
    (b.count !== undefined && typeof b.count !== 'number')
  ) {
    throw new ShardCallError(node, shard, 'answered a body that is not a shard answer');
  }
  return { rows: b.rows, count: b.count, node: b.node, lag_messages: b.lag_messages };
}

/** Checks `Authorization: Bearer <peer token>` in constant time (digests of equal length compared). */
export function peerTokenCheck(token: string): (authorization: string | undefined) => boolean {
  const want = createHash('sha256').update(`Bearer ${token}`).digest();
  return (authorization) =>
    authorization !== undefined && timingSafeEqual(createHash('sha256').update(authorization).digest(), want);
}

/** Shortest peer token accepted: it guards every node's `/internal/` routes. */
export const MIN_PEER_TOKEN_CHARS = 32;

/** Reads the peer token from `cluster.peer_token_file` (trimmed); a missing, unreadable or short one fails the start. */
export function readPeerToken(file: string): string {
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new VigilError('peer_token_invalid', `cannot read cluster.peer_token_file ${file}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  if (token.length < MIN_PEER_TOKEN_CHARS) {
    throw new VigilError(
      'peer_token_invalid',
      `the peer token in ${file} (cluster.peer_token_file) has ${token.length} characters; at least ${MIN_PEER_TOKEN_CHARS} are needed`,
    );
  }
  return token;
}

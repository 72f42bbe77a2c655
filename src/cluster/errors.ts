import { VigilError } from '../lib/errors.ts';

/** Stable codes of cluster failures (see docs/errors.md). */
export type ClusterErrorCode = 'etcd_unavailable' | 'cluster_not_started' | 'shards_mismatch';

/** A cluster coordination failure: etcd unreachable, or the cluster used outside its lifecycle. */
export class ClusterError extends VigilError {
  constructor(code: ClusterErrorCode, message: string, opts: { cause?: unknown; retryable?: boolean } = {}) {
    super(code, message, { status: 503, retryable: opts.retryable ?? true, cause: opts.cause });
    this.name = 'ClusterError';
  }
}

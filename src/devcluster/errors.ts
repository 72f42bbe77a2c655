import { VigilError } from '../lib/errors.ts';

/**
 * A failure of the dev cluster tool: a missing binary, a member that does not become ready, a state file
 * that does not match. `code` is stable (`binary_missing`, `not_ready`, `unknown_member`, `state_invalid`,
 * `already_up`, `spawn_failed`, `signal_failed`, `stop_failed`, `not_vigil`, `bad_link`; add: `bad_count`,
 * `too_many_nodes`, `site_required`, `unknown_site`, `no_template`, `config_invalid`; the balancer:
 * `lb_config_invalid`, `lb_reload_failed`, `no_balancer`).
 */
export class DevClusterError extends VigilError {
  constructor(code: string, message: string, opts: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(code, message, { ...opts, status: 500 });
    this.name = 'DevClusterError';
  }
}
